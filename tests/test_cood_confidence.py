"""cood.confidence: each κ against scipy's definitions, and compute() against the single functions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from cood import confidence


def _logits(n: int = 500, c: int = 30, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * rng.uniform(0.1, 8.0, size=(n, 1))
    z[:5] += 40.0  # shifted rows: the κ must not depend on a common offset except max logit and energy
    return z.astype(np.float32)


def test_each_kappa_matches_scipys_definition():
    z = _logits()
    z64 = z.astype(np.float64)
    p = special.softmax(z64, axis=1)
    np.testing.assert_allclose(confidence.msp(z), p.max(axis=1), rtol=1e-13)
    # entropy: absolute float64 error ≈ 1e-15 per nat of the terms, so compare absolutely
    np.testing.assert_allclose(confidence.neg_entropy(z), -special.entr(p).sum(axis=1), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(confidence.energy(z), special.logsumexp(z64, axis=1), rtol=1e-14)
    np.testing.assert_array_equal(confidence.max_logit(z), z64.max(axis=1))
    np.testing.assert_allclose(confidence.log_msp(z), np.log(p.max(axis=1)), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(confidence.softmax(z), p, rtol=1e-12, atol=1e-300)
    top2 = np.sort(z64, axis=1)[:, -2:]
    np.testing.assert_array_equal(confidence.margin(z), top2[:, 1] - top2[:, 0])


def test_log_msp_keeps_precision_where_softmax_saturates():
    """Gaps of 40-46 nats: MSP rounds to 1.0 in float32 and float64, log MSP = −log1p(r) does not. Oracle:
    −r to first order, r = Σ_{j≠top} exp(z_j − max z)."""
    z = np.array([[0.0, -40.0, -41.0], [0.0, -45.0, -46.0], [3.0, 3.0, -50.0]], dtype=np.float32)
    assert (special.softmax(z[:2].astype(np.float64), axis=1).max(axis=1) == 1.0).all()
    r = np.exp(z.astype(np.float64)[:2, 1:]).sum(axis=1)
    log_msp = confidence.log_msp(z)
    np.testing.assert_allclose(log_msp[:2], -r, rtol=1e-12)
    assert log_msp[0] < log_msp[1] < 0.0  # ranked, never tied at 0
    assert log_msp[2] == pytest.approx(np.log(0.5))  # a tie for the top class: MSP = 1/2


@pytest.mark.parametrize(
    "names",
    [
        ["msp", "neg_entropy", "max_logit", "energy"],
        ["energy", "margin", "msp"],
        ["max_logit"],
        ["neg_entropy", "neg_entropy"],
        [],
    ],
)
def test_compute_equals_calling_each_function(names):
    """Oracle: the registered functions one by one; chunk borders are crossed (5,000 rows > 2,048)."""
    z = _logits(n=5000, c=12, seed=1)
    got = confidence.compute(z, names)
    assert list(got) == list(dict.fromkeys(names))
    for name in names:
        np.testing.assert_array_equal(got[name], confidence.REGISTRY[name](z))
        assert got[name].dtype == np.float64 and got[name].shape == (5000,)


def test_compute_rejects_unknown_names_and_bad_logits():
    z = _logits(n=10)
    with pytest.raises(ValueError, match="unknown confidence function 'odin'; registered: "):
        confidence.compute(z, ["msp", "odin"])
    bad = z.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="logits contain NaN or infinite values"):
        confidence.compute(bad, ["msp"])
    with pytest.raises(ValueError, match=r"logits must have shape \(N, C\)"):
        confidence.compute(z[:, :1], ["energy"])


def test_softmax_blocks_and_out_array():
    # more rows than one block (a ragged last block), written into a given array
    rng = np.random.default_rng(8)
    z = rng.normal(0, 3, (5000, 7)).astype(np.float32)
    out = np.full(z.shape, np.nan)
    assert confidence.softmax(z, out=out) is out
    np.testing.assert_allclose(out, special.softmax(z.astype(np.float64), axis=1), rtol=1e-14, atol=1e-300)
    with pytest.raises(ValueError, match="out must be a float64 array"):
        confidence.softmax(z, out=np.empty(z.shape, dtype=np.float32))
    z[4500, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        confidence.softmax(z)
    with pytest.raises(ValueError, match="real numbers"):
        confidence.softmax(np.ones((3, 4), dtype=complex))
