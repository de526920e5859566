"""Tight thresholds, calibrated thresholds and their guarantees, DARTS and the threshold study (hsc.md §4–§7)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from test_hsc_hierarchy import random_case, random_probs

from hsc import calibration, rules, study


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("rule", ["climbing", "selective"])
def test_tight_thresholds_exact_at_breakpoints_and_one_ulp(seed, rule):
    H, _, _, _ = random_case(seed)
    rng = np.random.default_rng(4000 + seed)
    probs = random_probs(rng, 60, H.num_leaves)
    probs[:10, : H.num_leaves // 2] = 0.0  # zero-probability siblings: p(c) == p(LCA) ties
    probs /= probs.sum(1, keepdims=True)
    labels = rng.integers(0, H.num_leaves, 60)
    P = H.node_probs(probs)
    tight = calibration.tight_thresholds(H, probs, labels, rule)
    values = np.unique(np.concatenate([[0.0, 1.0], P.ravel(), tight]))
    thetas = np.unique(np.concatenate([values, np.nextafter(values, -np.inf), np.nextafter(values, np.inf)]))
    thetas = thetas[thetas >= 0]
    fn = getattr(rules, rule)
    for theta in thetas:
        correct = H.is_correct(fn(H, P, theta), labels)
        np.testing.assert_array_equal(correct, theta >= tight, err_msg=f"theta={theta!r}")
    assert (tight[np.argmax(probs, 1) == labels] == 0).all()


def test_order_statistics_table_for_n_5000():
    table = {  # hsc.md §5: alpha -> (quantile position, conformal k, pac k δ=0.1, pac k δ=0.05)
        0.30: (3499.3, 3501, 3542, 3554),
        0.20: (3999.2, 4001, 4037, 4047),
        0.15: (4249.15, 4251, 4283, 4292),
        0.10: (4499.1, 4501, 4528, 4536),
        0.05: (4749.05, 4751, 4771, 4776),
        0.01: (4949.01, 4951, 4960, 4962),
        0.005: (4974.005, 4976, 4982, 4984),
    }
    scores = np.arange(5000, dtype=np.float64)  # θ_(k) = k − 1, so quantile == its 0-based position
    for alpha, (position, k_conf, k_pac10, k_pac05) in table.items():
        assert calibration.conformal_rank(5000, alpha) == k_conf
        assert calibration.pac_rank(5000, alpha, 0.1) == k_pac10
        assert calibration.pac_rank(5000, alpha, 0.05) == k_pac05
        assert calibration.threshold_from_scores(scores, alpha, method="conformal") == k_conf - 1
        assert calibration.threshold_from_scores(scores, alpha, 0.1, "pac") == k_pac10 - 1
        assert calibration.threshold_from_scores(scores, alpha, method="quantile") == pytest.approx(position)
        # pac rank is the smallest k with BinomCDF(k−1; n, 1−α) >= 1−δ
        assert stats.binom.cdf(k_pac10 - 1, 5000, 1 - alpha) >= 0.9 > stats.binom.cdf(k_pac10 - 2, 5000, 1 - alpha)


def test_quantile_method_equals_numpy_and_rank_overflow_is_root():
    H, _, _, _ = random_case(1)
    rng = np.random.default_rng(9)
    probs = random_probs(rng, 200, H.num_leaves)
    labels = rng.integers(0, H.num_leaves, 200)
    tight = calibration.tight_thresholds(H, probs, labels)
    for alpha in (0.3, 0.1, 0.05):
        got = calibration.calibrate(H, probs, labels, alpha, method="quantile")
        assert got == np.quantile(tight, 1 - alpha)
    # n = 10, α = 0.01: k = ⌈11·0.99⌉ = 11 > n -> +inf (always the root, which is always correct).
    assert calibration.calibrate(H, probs[:10], labels[:10], 0.01) == math.inf
    # pac, α = 0.05, δ = 0.1: BinomCDF(9; 10, 0.95) = 1 − 0.95^10 ≈ 0.40 < 0.9, so k = 11 > n.
    assert calibration.calibrate(H, probs[:10], labels[:10], 0.05, 0.1, "pac") == math.inf
    assert (rules.climbing(H, probs, math.inf) == H.root).all()


def test_calibrate_bad_arguments():
    H, _, _, _ = random_case(0)
    probs = random_probs(np.random.default_rng(0), 20, H.num_leaves)
    labels = np.zeros(20, int)
    for alpha in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="alpha: expected a value in the open interval"):
            calibration.calibrate(H, probs, labels, alpha)
    with pytest.raises(ValueError, match="delta: method 'pac' needs delta"):
        calibration.calibrate(H, probs, labels, 0.1, method="pac")
    with pytest.raises(ValueError, match="delta: expected a value"):
        calibration.calibrate(H, probs, labels, 0.1, delta=2.0, method="pac")
    with pytest.raises(ValueError, match="method: expected one of"):
        calibration.calibrate(H, probs, labels, 0.1, method="bonferroni")
    with pytest.raises(ValueError, match="rule: expected one of selective, climbing"):
        calibration.tight_thresholds(H, probs, labels, "jumping")


# ---- the threshold study -----------------------------------------------------------------------------------
def synthetic_model(seed: int, n: int, num_leaves: int = 30):
    """A random tree and exchangeable (probs, labels): labels drawn from the model's own probabilities."""
    H, _, _, _ = random_case(seed, num_leaves=num_leaves, num_internal=20, extra=3)
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, n, H.num_leaves, ties=False)
    cum = np.cumsum(probs, axis=1)
    labels = np.minimum((cum < rng.random((n, 1))).sum(axis=1), H.num_leaves - 1)
    return H, probs, labels


def test_stratified_splits_are_seeded_and_stratified():
    labels = np.repeat(np.arange(7), [30, 20, 10, 25, 5, 60, 50])
    alloc = study.class_allocation(labels, 40, 7)
    assert alloc.sum() == 40
    assert (np.abs(alloc - 40 * np.bincount(labels) / labels.size) < 1).all()
    split = study.StratifiedSplitter(labels, 40, seed=3, num_classes=7)
    a, b = split.calibration_indices(0), split.calibration_indices(1)
    assert len(a) == 40 and len(np.unique(a)) == 40
    np.testing.assert_array_equal(np.bincount(labels[a], minlength=7), alloc)
    np.testing.assert_array_equal(a, study.StratifiedSplitter(labels, 40, 3, 7).calibration_indices(0))
    assert set(a.tolist()) != set(b.tolist())
    with pytest.raises(ValueError, match="n_cal"):
        study.StratifiedSplitter(labels, 200, 0, 7)


def test_study_matches_direct_per_repetition_evaluation():
    H, probs, labels = synthetic_model(11, 1500)
    alphas = (0.3, 0.1, 0.02)
    reps = 6
    rows = study.threshold_study(H, probs, labels, alphas, repetitions=reps, n_cal=300, seed=5)
    split = study.StratifiedSplitter(labels, 300, 5, H.num_leaves)
    P = H.node_probs(probs)
    for row in rows:
        thetas, accs, covs = [], [], []
        for r in range(reps):
            cal = split.calibration_indices(r)
            test = np.setdiff1d(np.arange(len(labels)), cal)
            theta = calibration.calibrate(H, P[cal], labels[cal], row["alpha"], row["delta"], row["method"])
            pred = rules.climbing(H, P[test], theta)
            thetas.append(theta)
            accs.append(H.is_correct(pred, labels[test]).mean())
            covs.append(H.coverage[pred].mean())
        accs = np.array(accs)
        assert row["theta_mean"] == pytest.approx(np.mean(thetas), rel=1e-12)
        assert row["accuracy_mean"] == pytest.approx(accs.mean(), abs=1e-12)
        assert row["coverage_mean"] == pytest.approx(np.mean(covs), abs=1e-12)
        assert row["violation_rate"] == np.mean(accs < 1 - row["alpha"])
        assert row["accuracy_error"] == pytest.approx(abs(100 * (1 - row["alpha"]) - 100 * accs.mean()))
    assert [(r["method"], r["alpha"]) for r in rows][:3] == [("conformal", a) for a in alphas]


def test_guarantees_over_1000_repetitions():
    H, probs, labels = synthetic_model(21, 6000)
    reps, delta = 1000, 0.1
    rows = study.threshold_study(
        H,
        probs,
        labels,
        (0.3, 0.15, 0.05),
        methods=("conformal", "pac"),
        delta=delta,
        repetitions=reps,
        n_cal=1000,
        seed=0,
    )
    for row in rows:
        if row["method"] == "conformal":
            sem = row["accuracy_std"] / math.sqrt(reps)
            assert row["accuracy_mean"] >= 1 - row["alpha"] - 3 * sem, row
        else:
            assert row["violation_rate"] <= delta + 3 * math.sqrt(delta * (1 - delta) / reps), row


# ---- DARTS -------------------------------------------------------------------------------------------------
def test_darts_properties():
    H, probs, labels = synthetic_model(31, 800)
    P32 = H.node_probs(probs).astype(np.float32)
    gains = (H.coverage * np.log2(H.num_leaves)).astype(np.float32)

    def accuracy(lam):
        return H.is_correct(np.argmax(P32 * (gains + np.float32(lam)), axis=1), labels).mean()

    easy = accuracy(0.0) - 0.01
    assert calibration.darts(H, probs, labels, 1 - easy) == 0.0  # plain predictor already meets the target
    eps = 0.05
    lam = calibration.darts(H, probs, labels, eps)
    upper = np.log2(H.num_leaves) * (1 - eps) / eps
    assert 0 < lam <= upper
    n = len(labels)

    def passes(value):
        return stats.binom.ppf(0.05, n, accuracy(value)) / n > 1 - eps

    assert lam == upper or passes(lam)
    assert not passes(lam - upper / 2**25 * 1.0000001) or lam - upper / 2**25 <= 0
    pred = calibration.darts_predict(H, probs, lam)
    np.testing.assert_array_equal(pred, np.argmax(P32 * (gains + np.float32(lam)), axis=1))
    with pytest.raises(ValueError, match="epsilon"):
        calibration.darts(H, probs, labels, 1.2)


def brute_darts_predict(H, P64, lam):
    """argmax_v (r_v + λ)·p(v) over all V nodes in float64, lowest id on ties."""
    gains = H.coverage * np.log2(H.num_leaves)
    return np.argmax(P64 * (gains + lam), axis=1)


@pytest.mark.parametrize("seed", range(4))
def test_darts_table_is_the_argmax_envelope(seed):
    H, probs, _ = synthetic_model(40 + seed, 300)
    P = H.node_probs(probs)
    table = calibration.darts_table(H, P)
    assert (table.thresholds[:, 1:] >= table.thresholds[:, :-1]).all()
    breaks = table.thresholds[np.isfinite(table.thresholds)]
    lams = np.unique(np.concatenate([[0.0], breaks, breaks * (1 + 1e-9) + 1e-12, [0.5, 3.0, 50.0, 1e6]]))
    for lam in lams:
        if np.any(np.isclose(breaks, lam, rtol=0, atol=0)):
            continue  # exactly at a breakpoint the envelope has a tie
        np.testing.assert_array_equal(table.predict(lam), brute_darts_predict(H, P, lam), err_msg=str(lam))


def test_study_darts_matches_direct_bisection():
    H, probs, labels = synthetic_model(12, 1500)
    P = H.node_probs(probs)
    reps, alphas = 4, (0.3, 0.1)
    rows = study.threshold_study(H, P, labels, alphas, methods=("darts",), repetitions=reps, n_cal=300, seed=2)
    split = study.StratifiedSplitter(labels, 300, 2, H.num_leaves)
    for row in rows:
        eps = row["alpha"]
        lams, accs, covs = [], [], []
        for r in range(reps):
            cal = split.calibration_indices(r)
            test = np.setdiff1d(np.arange(len(labels)), cal)
            n = cal.size

            def accuracy(lam, cal=cal):
                return H.is_correct(brute_darts_predict(H, P[cal], lam), labels[cal]).mean()

            if accuracy(0.0) >= 1 - eps:
                lam = 0.0
            else:
                lo, hi = 0.0, np.log2(H.num_leaves) * (1 - eps) / eps
                for _ in range(25):
                    mid = (lo + hi) / 2
                    if stats.binom.ppf(0.05, n, accuracy(mid)) / n > 1 - eps:
                        hi = mid
                    else:
                        lo = mid
                lam = hi
            pred = brute_darts_predict(H, P[test], lam)
            lams.append(lam)
            accs.append(H.is_correct(pred, labels[test]).mean())
            covs.append(H.coverage[pred].mean())
        assert row["method"] == "darts" and row["rule"] == "darts"
        assert row["theta_mean"] == pytest.approx(np.mean(lams), rel=1e-12)
        assert row["accuracy_mean"] == pytest.approx(np.mean(accs), abs=1e-12)
        assert row["coverage_mean"] == pytest.approx(np.mean(covs), abs=1e-12)
        assert row["violation_rate"] == np.mean(np.array(accs) < 1 - eps)
