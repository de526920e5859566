"""Severity scores and levels (cood.md §2) against a direct re-derivation from the definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cood.severity import class_severity, level_starts, severity_levels


def levels_by_definition(scores: list[float], num_levels: int, window: int):
    """Plain-Python oracle: sort (score, index), average every window, pick int(q·L) starts."""
    order = [i for _, i in sorted((s, i) for i, s in enumerate(scores))]
    num_windows = len(scores) - window + 1
    means = [math.fsum(scores[c] for c in order[j : j + window]) / window for j in range(num_windows)]
    starts = [int(q * num_windows) for q in np.linspace(0, 1, num_levels).tolist()]
    starts[-1] -= 1
    classes = [order[s : s + window] for s in starts]
    return order, starts, classes, [means[s] for s in starts]


@pytest.mark.parametrize(
    ("num_classes", "window", "num_levels"),
    [(10, 10, 11), (11, 10, 11), (57, 13, 11), (200, 50, 5), (301, 7, 21), (64, 1, 3), (500, 100, 2)],
)
def test_levels_match_definition(num_classes: int, window: int, num_levels: int) -> None:
    rng = np.random.default_rng(num_classes * 1000 + window)
    scores = np.round(rng.normal(size=num_classes), 1)  # rounding creates exact ties
    order, starts, classes, means = levels_by_definition(scores.tolist(), num_levels, window)
    levels = severity_levels(scores, num_levels=num_levels, window=window)
    assert levels.order.tolist() == order
    assert levels.starts.tolist() == starts
    assert levels.classes.tolist() == classes
    np.testing.assert_allclose(levels.scores, means, rtol=0, atol=1e-12)
    assert levels.classes.shape == (num_levels, window)
    assert levels.num_classes == num_classes
    assert levels.percentiles.tolist() == [i / (num_levels - 1) for i in range(num_levels)]


def test_k_equal_window_gives_one_window_everywhere() -> None:
    scores = np.arange(10, 0, -1, dtype=float)
    levels = severity_levels(scores, num_levels=11, window=10)
    assert levels.starts.tolist() == [0] * 11
    assert all(sorted(row) == list(range(10)) for row in levels.classes.tolist())
    np.testing.assert_allclose(levels.scores, 5.5)


def test_paper_example_starts_for_ten_thousand_classes() -> None:
    levels = severity_levels(np.random.default_rng(0).random(10_000), num_levels=11, window=1000)
    assert levels.starts.tolist() == [0, 900, 1800, 2700, 3600, 4500, 5400, 6300, 7200, 8100, 9000]
    assert levels.percentiles[3] == 0.3  # exact, not linspace's 0.30000000000000004


def test_float_and_integer_start_formulas_agree_up_to_20000() -> None:
    num_windows = np.arange(1, 20_001)
    starts = np.stack([level_starts(int(n), 11) for n in num_windows])
    expected = (np.arange(11)[None, :] * num_windows[:, None]) // 10
    expected[:, -1] = num_windows - 1
    np.testing.assert_array_equal(starts, expected)


def test_levels_are_ordered_by_severity() -> None:
    scores = np.random.default_rng(3).normal(size=2_000)
    levels = severity_levels(scores, num_levels=11, window=300)
    assert np.all(np.diff(levels.scores) >= 0)
    np.testing.assert_allclose(levels.scores, scores[levels.classes].mean(axis=1), atol=1e-12)
    assert scores[levels.classes[0]].max() <= scores[levels.classes[-1]].min()


def test_too_few_classes_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"need at least window=1000 OOD classes.*K=999"):
        severity_levels(np.zeros(999), window=1000)


@pytest.mark.parametrize(
    ("scores", "kwargs", "message"),
    [
        (np.zeros((4, 2)), {}, "1-D"),
        (np.array([0.0, np.nan, 1.0]), {"window": 2}, "NaN"),
        (np.zeros(5), {"window": 0}, "window must be >= 1"),
        (np.zeros(5), {"window": 2, "num_levels": 1}, "num_levels must be >= 2"),
    ],
)
def test_bad_severity_input(scores: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        severity_levels(scores, **kwargs)


def test_class_severity_is_the_per_class_mean() -> None:
    rng = np.random.default_rng(7)
    labels = np.concatenate([np.arange(40), rng.integers(0, 40, size=500)])
    conf = rng.normal(size=labels.size)
    expected = [conf[labels == c].mean() for c in range(40)]
    result = class_severity(conf, labels, 40)
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, expected, rtol=1e-13)


def test_class_severity_fails_loudly_on_missing_class() -> None:
    with pytest.raises(ValueError, match=r"1 of 4 classes have no estimation sample \(class indices 2\)"):
        class_severity(np.ones(3), np.array([0, 1, 3]), 4)


@pytest.mark.parametrize(
    ("conf", "labels", "message"),
    [
        (np.ones(3), np.array([0, 1]), "equal length"),
        (np.ones(2), np.array([0.0, 1.0]), "integers"),
        (np.ones(2), np.array([0, 5]), r"\[0, 3\)"),
        (np.array([1.0, np.inf]), np.array([0, 1]), "NaN or infinite"),
    ],
)
def test_bad_class_severity_input(conf: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        class_severity(conf, labels, 3)
