"""hsc.ordering.stable_order against numpy's merge sort (the oracle), in both directions."""

from __future__ import annotations

import numpy as np
import pytest

from hsc.ordering import stable_order


def _tricky(n: int, seed: int) -> np.ndarray:
    """Exact ties, ±0.0, subnormals, infinities, negative values and clusters a few ulps apart (which share the
    truncated key and take the re-sort path)."""
    rng = np.random.default_rng(seed)
    base = rng.choice([0.999999, 0.5, -0.25, 1e-300, 0.0, -0.0, 5e-324, -5e-324, np.inf, -np.inf, 123.0], n)
    values = base.copy()
    ulps = rng.integers(0, 4, n)
    for _ in range(3):
        step = ulps > 0
        with np.errstate(over="ignore"):  # the largest finite value may step to infinity
            values[step] = np.nextafter(values[step], np.where(rng.random(int(step.sum())) < 0.5, -np.inf, np.inf))
        ulps -= 1
    return values


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 200, 70_000])
def test_stable_order_equals_numpys_merge_sort(n, descending):
    for values in (_tricky(n, n), np.random.default_rng(n).random(n), np.round(np.random.default_rng(n).random(n), 2)):
        want = np.argsort(-values if descending else values, kind="stable")
        got = stable_order(values, descending=descending)
        assert got.dtype == np.int64
        assert np.array_equal(got, want)


def test_integer_and_float32_input_is_ordered_as_float64():
    values = np.array([3, 1, 2, 1, 3], dtype=np.int32)
    assert np.array_equal(stable_order(values), [1, 3, 2, 0, 4])
    assert np.array_equal(stable_order(values.astype(np.float32), descending=True), [0, 4, 2, 1, 3])
