"""Temperature scaling, NLL, Brier and the shared float64 softmax pass, against independent oracles
(scipy's log-softmax, explicit per-row loops, torch's own LBFGS for the reference recipe)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import log_softmax

import hsc.softmax as sm
import hsc.temperature as ts
from cood import confidence
from hsc import selective as S


def _calibrated(n: int, c: int, seed: int, spread: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a model that is calibrated at T = 1: labels are drawn from softmax(logits)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * spread
    p = np.exp(log_softmax(z, axis=1))
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z, labels


@pytest.mark.parametrize("factor", [0.4, 0.8, 1.0, 1.7, 3.0])
def test_fit_recovers_known_temperature(factor):
    z, y = _calibrated(20000, 10, seed=1)
    fit = S.fit_temperature_result(z * factor, y)
    assert fit.temperature == pytest.approx(factor, rel=0.02)
    assert fit.nll_after <= fit.nll_before
    assert S.fit_temperature(z * factor, y) == fit.temperature
    assert fit.method == "newton"
    # the search reaches the minimum (NLL is convex in 1/T): both neighbours are worse
    for t in (fit.temperature * 0.995, fit.temperature * 1.005):
        assert fit.nll_after < np.mean(-log_softmax(z * factor / t, axis=1)[np.arange(20000), y])


def test_nll_derivatives_match_finite_differences():
    z, y = _calibrated(3000, 12, seed=5)
    obj = ts._ShiftedLogits(z * 1.9, y)
    h = 1e-4
    for beta in (0.2, 0.7, 1.0, 2.5):
        nll, grad, curvature = obj.nll_derivatives(beta)
        assert nll == pytest.approx(obj.mean_nll(beta), rel=1e-12)
        assert grad == pytest.approx((obj.mean_nll(beta + h) - obj.mean_nll(beta - h)) / (2 * h), rel=1e-6)
        grad_up, grad_down = obj.nll_derivatives(beta + h)[1], obj.nll_derivatives(beta - h)[1]
        assert curvature == pytest.approx((grad_up - grad_down) / (2 * h), rel=1e-5)
        assert curvature >= 0


@pytest.mark.parametrize(("scale", "bound"), [(1.0, ts.T_BOUNDS[1]), (200.0, ts.T_BOUNDS[0])])
def test_newton_ends_at_the_bound_when_the_optimum_lies_beyond(scale, bound):
    """Labels unrelated to the logits want T → ∞; a (nearly) separable set with tiny logits wants T → 0."""
    rng = np.random.default_rng(9)
    if scale == 1.0:
        z = rng.normal(size=(4000, 5)) * 3.0
        y = rng.integers(0, 5, 4000)
    else:
        y = rng.integers(0, 5, 4000)
        z = np.eye(5)[y] * 0.001 * scale  # right class always on top, margin 0.2 at T = 1
    t, _, _, passes = ts._fit_newton(ts._ShiftedLogits(z, y))
    assert t == pytest.approx(bound, rel=1e-6)
    assert passes <= 100


def test_fit_never_increases_nll_and_is_order_invariant():
    rng = np.random.default_rng(2)
    for seed in range(4):
        z = rng.normal(size=(500, 7)) * rng.uniform(0.1, 10)
        y = rng.integers(0, 7, 500)  # labels unrelated to the logits: T runs to the bound
        fit = S.fit_temperature_result(z, y)
        assert fit.nll_after <= fit.nll_before
        assert ts.T_BOUNDS[0] <= fit.temperature <= ts.T_BOUNDS[1]
        perm = np.random.default_rng(seed).permutation(500)
        assert S.fit_temperature(z[perm], y[perm]) == pytest.approx(fit.temperature, rel=1e-6)
        nll_t = np.mean(-log_softmax(z / fit.temperature, axis=1)[np.arange(500), y])
        assert fit.nll_after == pytest.approx(nll_t, rel=1e-12)
        nll_1 = np.mean(-log_softmax(z, axis=1)[np.arange(500), y])
        assert fit.nll_before == pytest.approx(nll_1, rel=1e-12)


def test_fit_falls_back_to_one_when_the_search_is_worse(monkeypatch):
    z, y = _calibrated(400, 5, seed=3)
    def failed_search(obj):  # (T, NLL at T, NLL at T = 1, passes) of a search that ended worse than T = 1
        return 19.0, obj.mean_nll(1 / 19.0), obj.mean_nll(1.0), 3

    monkeypatch.setattr(ts, "_fit_newton", failed_search)
    fit = S.fit_temperature_result(z, y)
    assert fit.temperature == 1.0 and fit.method == "fallback_t1" and fit.nll_after == fit.nll_before


def test_reference_fit_replays_torch_lbfgs():
    torch = pytest.importorskip("torch")
    z, y = _calibrated(120, 4, seed=4)
    z = z * 1.6
    t = torch.tensor([1.5], dtype=torch.float64, requires_grad=True)
    logits, labels = torch.tensor(z), torch.tensor(y)
    opt = torch.optim.LBFGS([t], lr=0.01, max_iter=5000)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / t, labels)
        loss.backward()
        return loss

    opt.step(closure)
    fit = S.fit_temperature_result(z, y, reference=True)
    assert fit.method == "lbfgs_reference"
    assert fit.temperature == pytest.approx(float(t.detach()), rel=1e-6)
    assert fit.temperature == pytest.approx(S.fit_temperature(z, y), rel=2e-3)


def test_softmax_stats_match_scipy_and_cood():
    rng = np.random.default_rng(5)
    z = (rng.normal(size=(700, 13)) * 4).astype(np.float32)
    y = rng.integers(0, 13, 700)
    for beta in (1.0, 0.6, 2.5):
        st = sm.softmax_stats(z, y, beta=beta)
        logp = log_softmax(z.astype(np.float64) * beta, axis=1)
        p = np.exp(logp)
        assert np.allclose(st.msp, p.max(axis=1), rtol=1e-13, atol=0)
        assert np.allclose(st.neg_entropy, (p * logp).sum(axis=1), rtol=1e-12, atol=1e-13)
        assert np.allclose(st.nll, -logp[np.arange(700), y], rtol=1e-12, atol=1e-13)
        onehot = np.eye(13)[y]
        assert np.allclose(st.brier, ((p - onehot) ** 2).sum(axis=1), rtol=1e-12, atol=1e-13)
        assert np.array_equal(st.max_scaled, z.astype(np.float64).max(axis=1) * beta)
        assert np.array_equal(st.top_class, z.argmax(axis=1))
    st = sm.softmax_stats(z)
    assert np.allclose(st.msp, confidence.msp(z), rtol=1e-14, atol=0)
    assert np.allclose(st.neg_entropy, confidence.neg_entropy(z), rtol=1e-12, atol=1e-13)
    rows = np.array([5, 1, 699, 5])
    sub = sm.softmax_stats(z, y, beta=0.6, rows=rows)
    full = sm.softmax_stats(z, y, beta=0.6)
    assert np.array_equal(sub.nll, full.nll[rows]) and np.array_equal(sub.msp, full.msp[rows])


def test_msp_does_not_saturate_for_confident_samples():
    z = np.zeros((3, 10))
    z[:, 0] = [40.0, 41.0, 42.0]  # MSP rounds to exactly 1.0 for all three, even in float64
    st = sm.softmax_stats(z)
    assert np.all(st.msp == 1.0)
    assert st.log_msp[0] < st.log_msp[1] < st.log_msp[2] < 0.0  # the ranking key keeps them apart
    assert st.log_msp == pytest.approx(-9 * np.exp(-z[:, 0]), rel=1e-12)


def test_nll_and_brier_functions():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(50, 4)) * 2
    y = rng.integers(0, 4, 50)
    total_nll = total_brier = 0.0
    for row, label in zip(z / 1.3, y, strict=True):
        e = [math.exp(v) for v in row]
        p = [v / sum(e) for v in e]
        total_nll -= math.log(p[label])
        total_brier += sum((pj - (j == label)) ** 2 for j, pj in enumerate(p))
    assert S.nll(z, y, temperature=1.3) == pytest.approx(total_nll / 50, rel=1e-12)
    assert S.brier(z, y, temperature=1.3) == pytest.approx(total_brier / 50, rel=1e-12)


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (np.zeros((3, 1)), np.zeros(3, dtype=int), "logits must have shape"),
        (np.array([[0.0, np.nan]]), np.array([0]), "logits must be finite"),
        (np.array([[0.0, -np.inf]]), np.array([0]), "logits must be finite"),
        (np.zeros((2, 3)), np.array([0, 3]), "labels must lie in"),
        (np.zeros((2, 3)), np.array([0.0, 1.0]), "labels must be integer"),
        (np.zeros((2, 3)), np.array([0, 1, 2]), "labels must have shape"),
        (np.zeros((2, 3), dtype=int), np.array([0, 1]), "logits must be a float array"),
    ],
)
def test_bad_logits_raise(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        S.fit_temperature(logits, labels)
    with pytest.raises(ValueError, match=match):
        S.nll(logits, labels)


def test_bad_temperature_raises():
    with pytest.raises(ValueError, match="temperature must be"):
        S.nll(np.zeros((2, 3)), np.array([0, 1]), temperature=0.0)


def test_the_pipelines_torch_exp_kernel_gives_numpys_results():
    """Oracle: hsc's default numpy kernel. torch's vectorised float64 exp is within 1 ulp per element, so every
    row statistic and the fitted T agree to ~1e-14 relative (and the kernel writes in place when out is x)."""
    from pipelines.analyses.selective import torch_exp

    rng = np.random.default_rng(11)
    x = rng.normal(size=(64, 300)) * 20
    np.testing.assert_allclose(torch_exp(x.copy(), np.empty_like(x)), np.exp(x), rtol=4e-16, atol=0)
    inplace = x.copy()
    assert torch_exp(inplace, inplace) is inplace
    np.testing.assert_allclose(inplace, np.exp(x), rtol=4e-16, atol=0)
    z, y = _calibrated(3000, 40, seed=12)
    z = z * 1.7
    fast, plain = sm.softmax_stats(z, y, beta=0.8, exp=torch_exp), sm.softmax_stats(z, y, beta=0.8)
    for field in ("max_scaled", "log_norm", "mean_shifted", "sum_sq_prob", "label_scaled"):
        np.testing.assert_allclose(getattr(fast, field), getattr(plain, field), rtol=1e-13, atol=1e-15)
    assert S.fit_temperature(z, y, exp=torch_exp) == pytest.approx(S.fit_temperature(z, y), rel=1e-10)
