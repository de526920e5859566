"""hsc.selective metrics against independent oracles: brute-force pair counts, per-prefix loops, explicit bin
loops, scikit-learn, exhaustive tie orders, and the facts of selective.md §9."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hsc import selective as S
from hsc.softmax import softmax_stats

# ----------------------------------------------------------------------------------------------- data


def _data(n: int, seed: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.random(n)
    correct = rng.random(n) < 0.15 + 0.8 * conf
    if ties:
        conf = np.round(conf * 6) / 6  # 7 distinct values: heavy ties
    return conf, correct


CASES = [(n, seed, ties) for n, seed in ((7, 2), (60, 3), (400, 4), (300, 11)) for ties in (False, True)]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _stable_desc(conf: np.ndarray) -> np.ndarray:
    return np.array(sorted(range(len(conf)), key=lambda i: -conf[i]))  # Python's sort is stable


# ----------------------------------------------------------------------------------------------- oracles


def _auroc_pairs(conf, correct, ties: str) -> float:
    order = list(_stable_desc(conf))
    pos = {i: p for p, i in enumerate(order)}
    num = den = 0.0
    for i in range(len(conf)):
        if not correct[i]:
            continue
        for j in range(len(conf)):
            if correct[j]:
                continue
            den += 1
            if ties == "midrank":
                num += 1.0 if conf[i] > conf[j] else 0.5 if conf[i] == conf[j] else 0.0
            else:
                num += 1.0 if pos[i] < pos[j] else 0.0
    return num / den


def _prefix_risks(conf, correct) -> list[float]:
    errors, out = 0, []
    for k, i in enumerate(_stable_desc(conf), start=1):
        errors += not correct[i]
        out.append(errors / k)
    return out


def _aurc_loop(conf, correct) -> float:
    risks = _prefix_risks(conf, correct)
    return sum(risks) / len(risks)


def _augrc_tu_loop(conf, correct) -> float:
    n = len(conf)
    errors, gr = 0, []
    for i in _stable_desc(conf):
        errors += not correct[i]
        gr.append(errors / n)
    area = sum((gr[k - 1] + gr[k]) / 2 / n for k in range(1, n))
    return area / (1 - 1 / n)


def _augrc_per_sample_loop(conf, correct) -> float:
    """Trapezoid of (k/n, errors among first k / n) from (0, 0), on the stable order."""
    n = len(conf)
    errors, area, prev = 0, 0.0, 0.0
    for i in _stable_desc(conf):
        errors += not correct[i]
        area += (prev + errors / n) / 2 / n
        prev = errors / n
    return area


def _tie_order_average(conf, correct, fn) -> float:
    """Exact expectation of fn over uniformly random orders inside tie blocks (all n! tie-breakings)."""
    n = len(conf)
    total = count = 0
    for perm in itertools.permutations(range(n)):
        key = np.array(perm, dtype=float)
        order = np.lexsort((key, -conf))
        total += fn(conf[order] * 0 + np.arange(n, 0, -1), correct[order])
        count += 1
    return total / count


def _block_ends(sorted_conf) -> list[int]:
    n = len(sorted_conf)
    return [k for k in range(1, n + 1) if k == n or sorted_conf[k - 1] != sorted_conf[k]]


def _sac_loop(conf, correct, a, forgive, semantics) -> float:
    """selective.md §2.6 default mode, written as a plain loop over checked prefixes."""
    order = _stable_desc(conf)
    cs = conf[order]
    n = len(conf)
    ends = _block_ends(cs)
    starts = [0, *ends[:-1]]
    acc = {}
    good = 0
    for k, i in enumerate(order, start=1):
        good += bool(correct[i])
        acc[k] = good / k
    if semantics == "max":
        ok = [k for k in ends if acc[k] >= a]
        return max(ok) / n if ok else math.nan
    strict = 1.0
    for s, k in zip(starts, ends, strict=True):
        if acc[k] < a:
            strict = s / n
            break
    if forgive == 0:
        return strict
    for s, k in zip(starts, ends, strict=True):
        if k > forgive and acc[k] < a:
            return s / n if s > forgive else strict
    return 1.0


def _sac_reference_loop(conf, correct, a, forgive) -> float:
    """The paper's coverage_for_desired_accuracy on the stable order: first violation / (n + 1)."""
    order = _stable_desc(conf)
    n = len(conf)
    good, acc = 0, []
    for k, i in enumerate(order, start=1):
        good += bool(correct[i])
        acc.append(good / k)
    strict = next((i for i, v in enumerate(acc) if v < a), 0)
    later = next((i for i, v in enumerate(acc[forgive:]) if v < a), 0)
    idx = forgive + later
    return (idx if idx > forgive else strict) / (n + 1)


def _ece_loop(conf, correct, bins, convention, norm):
    edges = np.linspace(0, 1, bins + 1, dtype=np.float32)
    total, worst = 0.0, -1.0
    for j in range(bins):
        lo, hi = edges[j], edges[j + 1]
        members = []
        for c, y in zip(conf, correct, strict=True):
            c32 = np.float32(c)
            if convention == "(lo,hi]":
                inside = lo < c32 <= hi
            else:
                inside = lo <= c32 < hi or (j == bins - 1 and c32 == hi)
            if inside:
                members.append((c, y))
        if members:
            gap = abs(sum(c for c, _ in members) / len(members) - sum(y for _, y in members) / len(members))
            total += gap * len(members) / len(conf)
            worst = max(worst, gap)
    return total if norm == "l1" else worst


def _aece_reference_loop(conf, correct, bins=15):
    s = sorted(conf)
    step = len(s) // (bins - 1)
    edges = [s[i] for i in range(0, len(s), step)]
    edges[0], edges[-1] = 0.0, s[-1]
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        members = [(c, y) for c, y in zip(conf, correct, strict=True) if lo < c <= hi]
        if members:
            total += abs(sum(c for c, _ in members) - sum(y for _, y in members)) / len(conf)
    return total


def _aece_default_loop(conf, correct, bins=15):
    """Equal-mass bins by sorted position p -> floor(p·bins/n); a tie group joins the bin of its first member."""
    order = sorted(range(len(conf)), key=lambda i: conf[i])
    n = len(conf)
    sums: dict[int, list[float]] = {}
    group_bin = None
    for p, i in enumerate(order):
        if p == 0 or conf[order[p - 1]] != conf[i]:
            group_bin = p * bins // n
        acc = sums.setdefault(group_bin, [0.0, 0.0])
        acc[0] += conf[i]
        acc[1] += correct[i]
    return sum(abs(a - b) for a, b in sums.values()) / n


# ----------------------------------------------------------------------------------------------- AUROC, gamma


@pytest.mark.parametrize(("n", "seed", "ties"), CASES)
def test_auroc_matches_brute_force_pairs_and_sklearn(n, seed, ties):
    conf, correct = _data(n, seed, ties)
    if correct.all() or not correct.any():
        pytest.skip("single class")
    mid = S.auroc(conf, correct)
    assert mid == pytest.approx(_auroc_pairs(conf, correct, "midrank"), abs=1e-12)
    assert mid == pytest.approx(roc_auc_score(correct, conf), abs=1e-12)
    assert S.auroc(conf, correct, ties="reference") == pytest.approx(
        _auroc_pairs(conf, correct, "reference"), abs=1e-12
    )


@pytest.mark.parametrize(
    ("n_pos", "n_neg", "values", "seed"),
    [(0, 5, 6, 0), (4, 0, 6, 1), (1, 1, 2, 2), (9, 13, 6, 3), (40, 25, 6, 4), (60, 50, 400, 5), (30, 80, 10**6, 6)],
)
def test_pair_counts_match_a_double_loop(n_pos, n_neg, values, seed):
    """Oracle: every (positive, negative) pair compared in an O(n·m) Python loop; heavy ties (few distinct
    values), a few ties, none, and empty sides."""
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.integers(0, values, n_pos).astype(np.float64))
    neg = np.sort(rng.integers(0, values, n_neg).astype(np.float64))
    greater = sum(p > q for p in pos.tolist() for q in neg.tolist())
    tied = sum(p == q for p in pos.tolist() for q in neg.tolist())
    less = sum(p < q for p in pos.tolist() for q in neg.tolist())
    counts = S.pair_counts(pos, neg)
    assert (counts.greater, counts.tied, counts.less) == (greater, tied, less)
    assert counts.pairs == n_pos * n_neg
    if n_pos and n_neg:
        assert counts.auroc == (greater + 0.5 * tied) / (n_pos * n_neg)
    else:
        assert math.isnan(counts.auroc)


def test_auroc_ties_differ_only_with_ties():
    conf, correct = _data(2000, 5, ties=False)
    assert S.auroc(conf, correct) == S.auroc(conf, correct, ties="reference")
    rounded = np.round(conf, 2)
    gap = abs(S.auroc(rounded, correct) - S.auroc(rounded, correct, ties="reference"))
    assert 1e-6 < gap < 5e-3


def test_gamma_variants():
    conf, correct = _data(300, 6, ties=True)
    assert S.gamma(conf, correct, ties="reference") == pytest.approx(
        2 * _auroc_pairs(conf, correct, "reference") - 1, abs=1e-12
    )
    assert S.gamma(conf, correct) == pytest.approx(2 * roc_auc_score(correct, conf) - 1, abs=1e-12)
    conc = disc = 0
    for i in np.flatnonzero(correct):
        for j in np.flatnonzero(~correct):
            conc += conf[i] > conf[j]
            disc += conf[i] < conf[j]
    assert S.gamma(conf, correct, ties="goodman_kruskal") == pytest.approx((conc - disc) / (conc + disc), abs=1e-12)


def test_midrank_auroc_is_the_tie_order_expectation():
    conf = np.array([0.9, 0.5, 0.5, 0.5, 0.2, 0.2, 0.1])
    correct = np.array([True, False, True, True, False, True, False])
    expected = _tie_order_average(conf, correct, lambda c, y: S.auroc(c, y, ties="reference"))
    assert S.auroc(conf, correct) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------------------------- risk–coverage


@pytest.mark.parametrize(("n", "seed", "ties"), CASES)
def test_aurc_reference_matches_prefix_loop(n, seed, ties):
    conf, correct = _data(n, seed, ties)
    assert S.aurc(conf, correct, ties="reference") == pytest.approx(_aurc_loop(conf, correct), abs=1e-12)
    if not ties:
        assert S.aurc(conf, correct) == S.aurc(conf, correct, ties="reference")


def test_tie_aware_curve_metrics_are_tie_order_expectations():
    conf = np.array([0.9, 0.5, 0.5, 0.5, 0.2, 0.2, 0.1])
    correct = np.array([True, False, True, False, False, True, True])
    exp_aurc = _tie_order_average(conf, correct, lambda c, y: S.aurc(c, y, ties="reference"))
    assert S.aurc(conf, correct) == pytest.approx(exp_aurc, abs=1e-12)
    exp_augrc = _tie_order_average(conf, correct, _augrc_per_sample_loop)
    assert S.augrc(conf, correct) == pytest.approx(exp_augrc, abs=1e-12)
    for cov in (0.3, 0.5, 4 / 7):
        exp_risk = _tie_order_average(conf, correct, lambda c, y, cov=cov: S.risk_at_coverage(c, y, cov))
        assert S.risk_at_coverage(conf, correct, cov) == pytest.approx(exp_risk, abs=1e-12)


def test_aurc_with_rounded_ties_differs_slightly():
    conf, correct = _data(5000, 7, ties=False)
    rounded = np.round(conf, 2)
    gap = abs(S.aurc(rounded, correct) - S.aurc(rounded, correct, ties="reference"))
    assert 1e-7 < gap < 2e-3


@pytest.mark.parametrize(("n", "seed", "ties"), CASES)
def test_augrc_conventions_match_loops(n, seed, ties):
    conf, correct = _data(n, seed, ties)
    assert S.augrc(conf, correct, reference="torch-uncertainty") == pytest.approx(
        _augrc_tu_loop(conf, correct), abs=1e-12
    )
    # fd-shifts points at distinct thresholds plus (0, 0)
    order = _stable_desc(conf)
    cs = conf[order]
    pts = [(0.0, 0.0)] + [(k / n, sum(not correct[i] for i in order[:k]) / n) for k in _block_ends(cs)]
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(pts))
    assert S.augrc(conf, correct) == pytest.approx(area, abs=1e-12)
    assert S.augrc(conf, correct, reference="fd-shifts") == S.augrc(conf, correct)


def test_selective_risk_curve_points():
    conf, correct = _data(200, 8, ties=True)
    cov, risk, thr = S.selective_risk_curve(conf, correct)
    for c, r, t in zip(cov, risk, thr, strict=True):
        accepted = conf >= t
        assert c == pytest.approx(accepted.mean(), abs=1e-15)
        assert r == pytest.approx((~correct[accepted]).mean(), abs=1e-15)
    assert len(thr) == len(np.unique(conf))
    cov, risk, _ = S.selective_risk_curve(conf, correct, ties="reference")
    assert np.allclose(risk, _prefix_risks(conf, correct), atol=1e-15) and cov[-1] == 1.0


def test_risk_at_coverage_reference_is_prefix_risk():
    conf, correct = _data(400, 9, ties=True)
    risks = _prefix_risks(conf, correct)
    for c in (0.1, 0.5, 0.8, 0.95, 1.0):
        assert S.risk_at_coverage(conf, correct, c, ties="reference") == risks[math.ceil(c * 400) - 1]


def test_eaurc_closed_form_and_exact_oracle():
    conf, correct = _data(3000, 10, ties=False)
    n, m = 3000, int((~correct).sum())
    r = m / n
    aurc = S.aurc(conf, correct)
    assert S.eaurc(conf, correct) == pytest.approx(aurc - (r + (1 - r) * math.log(1 - r)), abs=1e-12)
    # exact oracle: AURC of the perfect ranking, by a loop
    perfect = np.where(correct, 1.0, 0.0) + conf * 1e-3
    oracle = _aurc_loop(perfect, correct)
    assert S.eaurc_exact(conf, correct) == pytest.approx(aurc - oracle, abs=1e-12)
    assert abs(S.eaurc_exact(perfect, correct)) < 1e-12  # perfect ranking scores 0 (issue: within 1e-4)
    # selective.md §9.4: at n = 3,000 (top-1 error 20%) the exact optimum exceeds the continuous one by ≈ 3e-5
    ok = np.arange(3000) >= 600
    ranked = np.arange(3000, dtype=float)
    gap = S.eaurc(ranked, ok) - S.eaurc_exact(ranked, ok)
    assert gap == pytest.approx(3.33e-5, rel=0.01)


def test_eaurc_edge_cases():
    conf = np.linspace(0, 1, 10)
    assert S.eaurc(conf, np.ones(10, dtype=bool)) == 0.0
    with pytest.warns(RuntimeWarning, match="wrong"):
        assert math.isnan(S.eaurc(conf, np.zeros(10, dtype=bool)))


def test_augrc_oracle_and_random_rankings():
    rng = np.random.default_rng(13)
    n = 20000
    correct = rng.random(n) < 0.7
    r = (~correct).mean()
    perfect = correct + rng.random(n) * 1e-3
    assert S.augrc(perfect, correct) == pytest.approx(r * r / 2, abs=1 / n)
    assert S.augrc(rng.random(n), correct) == pytest.approx(r / 2, abs=0.01)


# ----------------------------------------------------------------------------------------------- SAC


@pytest.mark.parametrize(("n", "seed", "ties"), [*CASES, (900, 14, False), (900, 15, True)])
@pytest.mark.parametrize("a", [0.8, 0.9, 0.95])
def test_sac_matches_loops(n, seed, ties, a):
    conf, correct = _data(n, seed, ties)
    for forgive in (0, 5, 200):
        got = S.coverage_at_accuracy(conf, correct, a, forgive=forgive)
        assert got == _sac_loop(conf, correct, a, forgive, "first")
        assert S.coverage_at_accuracy(conf, correct, a, forgive=forgive, reference=True) == pytest.approx(
            _sac_reference_loop(conf, correct, a, forgive), abs=1e-15
        )
    want_max = _sac_loop(conf, correct, a, 0, "max")
    assert _same(S.coverage_at_accuracy(conf, correct, a, semantics="max"), want_max)
    assert _same(S.coverage_at_accuracy(conf, correct, a, semantics="max_coverage"), want_max)
    assert S.coverage_at_accuracy(conf, correct, a, semantics="first_violation", forgive=0) == _sac_loop(
        conf, correct, a, 0, "first"
    )


def test_sac_forgiveness_and_defects():
    # the most confident sample is wrong, then 300 correct: strict 0, non-strict forgives it
    conf = np.linspace(1, 0, 301)
    correct = np.ones(301, dtype=bool)
    correct[0] = False
    assert S.coverage_at_accuracy(conf, correct, 0.99, forgive=0) == 0.0
    assert S.coverage_at_accuracy(conf, correct, 0.99, forgive=200) == 1.0
    # reference: never violated after 200 -> argmax 0 -> falls back to strict; denominators n + 1
    assert S.coverage_at_accuracy(conf, correct, 0.99, forgive=200, reference=True) == 0.0
    ok = np.ones(301, dtype=bool)
    assert S.coverage_at_accuracy(conf, ok, 0.99) == 1.0
    assert S.coverage_at_accuracy(conf, ok, 0.99, semantics="max") == 1.0
    assert S.coverage_at_accuracy(conf, ok, 0.99, reference=True) == 0.0  # the reference's defect
    # reference coverages are multiples of 1/(n + 1) (selective.md §9.3)
    c, y = _data(777, 16, ties=False)
    v = S.coverage_at_accuracy(c, y, 0.9, reference=True) * 778
    assert abs(v - round(v)) < 1e-9


def test_sac_semantics_differ_on_a_dip():
    # overall accuracy 0.9 ≥ 0.85, but the top-10 prefix has accuracy 0.8: "max" gives 1.0, "first" stops
    conf = np.linspace(1, 0, 100)
    correct = np.ones(100, dtype=bool)
    correct[[1, 3]] = False
    correct[20:28] = False
    assert S.coverage_at_accuracy(conf, correct, 0.85, semantics="max") == 1.0
    assert S.coverage_at_accuracy(conf, correct, 0.85, forgive=0) == _sac_loop(conf, correct, 0.85, 0, "first")
    assert S.coverage_at_accuracy(conf, correct, 0.85, forgive=0) < 1.0


def test_summarize_rejects_values_with_another_ranking():
    conf, correct = _data(50, 22, ties=False)
    with pytest.raises(ValueError, match="values must be a non-decreasing"):
        S.summarize(conf, correct, values=1 - conf, probability=True)


def test_sac_max_nan_when_never_met():
    conf = np.linspace(1, 0, 50)
    assert math.isnan(S.coverage_at_accuracy(conf, np.zeros(50, dtype=bool), 0.5, semantics="max"))


def test_sac_ties_checked_only_at_block_ends():
    # a tie block whose first member is wrong: the per-sample rule would stop at 0, the tie-aware rule does not
    conf = np.array([0.9, 0.9, 0.9, 0.9, 0.1])
    correct = np.array([False, True, True, True, False])
    assert S.coverage_at_accuracy(conf, correct, 0.75, forgive=0) == 0.8
    assert _sac_loop(conf, correct, 0.75, 0, "first") == 0.8
    assert S.coverage_at_accuracy(conf, correct, 0.75, forgive=0, reference=True) == 0.0


# ----------------------------------------------------------------------------------------------- calibration


@pytest.mark.parametrize(("n", "seed", "ties"), CASES)
@pytest.mark.parametrize("convention", ["(lo,hi]", "[lo,hi)"])
@pytest.mark.parametrize("bins", [1, 10, 15])
def test_ece_mce_match_bin_loops(n, seed, ties, convention, bins):
    conf, correct = _data(n, seed, ties)
    conf[0] = 1.0
    conf[-1] = 0.0  # both ends of [0, 1], where the conventions differ
    assert S.ece(conf, correct, bins, convention=convention) == pytest.approx(
        _ece_loop(conf, correct, bins, convention, "l1"), abs=1e-12
    )
    assert S.mce(conf, correct, bins, convention=convention) == pytest.approx(
        _ece_loop(conf, correct, bins, convention, "max"), abs=1e-12
    )


@pytest.mark.parametrize("bins", [15, 63, 64, 100])
@pytest.mark.parametrize("convention", ["(lo,hi]", "[lo,hi)"])
def test_ece_values_on_bin_edges_match_bin_loops(bins, convention):
    # every κ sits exactly on a float32 edge or one float32 step beside it, where (lo,hi] and [lo,hi) differ;
    # 64 edges and more take the searchsorted path of the edge counting, fewer the edge-by-edge comparison
    edges = np.linspace(0, 1, bins + 1, dtype=np.float32)
    conf = np.concatenate([edges, np.nextafter(edges, 2), np.nextafter(edges, -1)]).astype(np.float64)
    conf = np.clip(conf, 0.0, 1.0)
    correct = np.random.default_rng(bins).random(conf.size) < 0.6
    for norm, fn in (("l1", S.ece), ("max", S.mce)):
        assert fn(conf, correct, bins, convention=convention) == pytest.approx(
            _ece_loop(conf, correct, bins, convention, norm), abs=1e-12
        )


@pytest.mark.parametrize("n_edges", [2, 16, 64, 65, 200])
@pytest.mark.parametrize("side", ["left", "right"])
def test_edge_counting_equals_searchsorted(n_edges, side):
    rng = np.random.default_rng(n_edges)
    edges = np.sort(rng.random(n_edges))
    values = np.concatenate([rng.random(500), edges, edges[:3], [-1.0, 2.0]])
    assert np.array_equal(S._edges_below(values, edges, side), np.searchsorted(edges, values, side=side))


@pytest.mark.parametrize(("n", "seed", "ties"), [c for c in CASES if c[0] >= 14])
def test_adaptive_ece_matches_loops(n, seed, ties):
    conf, correct = _data(n, seed, ties)
    conf = np.clip(conf, 1e-3, 1.0)
    assert S.adaptive_ece(conf, correct, reference=True) == pytest.approx(
        _aece_reference_loop(conf, correct), abs=1e-12
    )
    assert S.adaptive_ece(conf, correct) == pytest.approx(_aece_default_loop(conf, correct), abs=1e-12)


def test_adaptive_bins_step_facts():
    # selective.md §9.7: 15 edges, step 3,571 at n = 50,000 and 3,214 at n = 45,000
    for n, step in ((50000, 3571), (45000, 3214)):
        conf = np.arange(1, n + 1) / n
        edges = S.adaptive_bin_edges(conf, reference=True)
        assert edges.size == 15
        assert edges[1] == conf[step] and edges[2] == conf[2 * step]
        default = S.adaptive_bin_edges(conf)
        assert default.size == 16
        counts = np.bincount(np.searchsorted(default, conf, side="left") - 1, minlength=15)
        assert counts.size == 15 and counts.max() - counts.min() <= 1


def test_ece_identity_when_all_bins_share_a_sign():
    rng = np.random.default_rng(17)
    conf = rng.uniform(0.5, 1.0, 5000)
    correct = rng.random(5000) < conf - 0.3  # over-confident everywhere
    assert S.ece(conf, correct) == pytest.approx(conf.mean() - correct.mean(), abs=1e-12)


def test_calibration_rejects_non_probabilities():
    with pytest.raises(ValueError, match="conf must be probabilities"):
        S.ece(np.array([0.2, 3.0]), np.array([True, False]))


# ----------------------------------------------------------------------------------------------- stats


def test_confidence_stats_match_definitions():
    rng = np.random.default_rng(18)
    for conf in (rng.random(100), rng.normal(size=101)):
        before = conf.copy()
        st = S.confidence_stats(conf)
        assert np.array_equal(conf, before)  # never mutated
        s = np.sort(conf)
        assert st["conf_median"] == s[(len(s) - 1) // 2]
        assert st["conf_mean"] == pytest.approx(conf.mean(), abs=1e-15)
        assert st["conf_variance"] == pytest.approx(np.var(conf, ddof=1), rel=1e-12)
        x = s - min(0.0, s[0]) + 1e-7
        n = len(x)
        gini = sum((2 * i - n - 1) * x[i - 1] for i in range(1, n + 1)) / (n * x.sum())
        assert st["conf_gini"] == pytest.approx(gini, abs=1e-12)
    assert S.confidence_stats(np.full(10, 0.3))["conf_gini"] == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------------------------- properties


def _ranking_metrics(conf, correct) -> list[float]:
    out = [
        S.auroc(conf, correct),
        S.auroc(conf, correct, ties="reference"),
        S.gamma(conf, correct, ties="goodman_kruskal"),
        S.aurc(conf, correct),
        S.aurc(conf, correct, ties="reference"),
        S.eaurc(conf, correct),
        S.eaurc_exact(conf, correct),
        S.augrc(conf, correct),
        S.augrc(conf, correct, reference="torch-uncertainty"),
        S.risk_at_coverage(conf, correct, 0.8),
        S.risk_at_coverage(conf, correct, 0.8, ties="reference"),
    ]
    for semantics in ("first", "max"):
        for reference in (False, True):
            out.append(
                S.coverage_at_accuracy(conf, correct, 0.85, forgive=20, semantics=semantics, reference=reference)
            )
    return out


@pytest.mark.parametrize("ties", [False, True])
def test_ranking_metrics_invariant_to_monotone_transforms(ties):
    conf, correct = _data(500, 19, ties)
    base = _ranking_metrics(conf, correct)
    for transform in (lambda x: x**3 + 5.0, lambda x: np.log(x + 0.01), lambda x: -1.0 / (x + 0.5)):
        assert _ranking_metrics(transform(conf), correct) == pytest.approx(base, abs=1e-12, nan_ok=True)


def test_summarize_agrees_with_single_metrics():
    conf, correct = _data(1000, 20, ties=True)
    out = S.summarize(conf, correct, probability=True)
    assert out["auroc"] == S.auroc(conf, correct)
    assert out["auroc_ref"] == S.auroc(conf, correct, ties="reference")
    assert out["aurc"] == pytest.approx(S.aurc(conf, correct), abs=1e-15)
    assert out["eaurc_exact"] == pytest.approx(S.eaurc_exact(conf, correct), abs=1e-15)
    assert out["augrc"] == S.augrc(conf, correct)
    assert out["sac95"] == S.coverage_at_accuracy(conf, correct, 0.95)
    assert _same(out["sac99_max"], S.coverage_at_accuracy(conf, correct, 0.99, semantics="max"))
    assert out["ece15"] == pytest.approx(S.ece(conf, correct), abs=1e-15)
    assert out["mce15"] == pytest.approx(S.mce(conf, correct), abs=1e-15)
    assert out["aece"] == pytest.approx(S.adaptive_ece(conf, correct), abs=1e-15)
    assert out["aece_ref"] == pytest.approx(S.adaptive_ece(conf, correct, reference=True), abs=1e-15)
    assert out["gamma_ref"] == pytest.approx(2 * out["auroc_ref"] - 1, abs=1e-15)
    assert out["risk_at_90"] == S.risk_at_coverage(conf, correct, 0.9)
    no_prob = S.summarize(conf * 7, correct, probability=False)
    assert math.isnan(no_prob["ece15"]) and no_prob["auroc"] == out["auroc"]


# ----------------------------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("value", [True, False])
def test_single_class_is_nan_with_warning(value):
    conf = np.linspace(0, 1, 20)
    correct = np.full(20, value)
    for fn in (S.auroc, S.gamma):
        with pytest.warns(RuntimeWarning, match="returning NaN"):
            assert math.isnan(fn(conf, correct))
    with pytest.warns(RuntimeWarning):
        out = S.summarize(conf, correct, probability=True)
    assert math.isnan(out["auroc"]) and out["accuracy"] == float(value)


@pytest.mark.parametrize(
    ("conf", "correct", "match"),
    [
        (np.array([0.1, 0.2]), np.array([True]), "correct must have shape"),
        (np.array([0.1, np.nan]), np.array([True, False]), "conf must be finite"),
        (np.array([0.1, 0.2]), np.array([1, 0]), "correct must be a boolean"),
        (np.array([]), np.array([], dtype=bool), "conf must be a non-empty"),
        (np.ones((2, 2)), np.ones(2, dtype=bool), "conf must be a non-empty 1-D"),
        (np.array(["a", "b"]), np.array([True, False]), "conf must be a real-valued"),
    ],
)
def test_bad_input_raises_naming_the_argument(conf, correct, match):
    for fn in (S.auroc, S.aurc, S.augrc, S.ece, S.coverage_at_accuracy):
        with pytest.raises(ValueError, match=match):
            fn(conf, correct)


def test_bad_options_raise():
    conf, correct = _data(50, 21, ties=False)
    with pytest.raises(ValueError, match="ties must be"):
        S.auroc(conf, correct, ties="average")
    with pytest.raises(ValueError, match="semantics must be"):
        S.coverage_at_accuracy(conf, correct, semantics="last")
    with pytest.raises(ValueError, match="forgive must be"):
        S.coverage_at_accuracy(conf, correct, forgive=-1)
    with pytest.raises(ValueError, match="accuracy must be"):
        S.coverage_at_accuracy(conf, correct, accuracy=99)
    with pytest.raises(ValueError, match="coverage must be"):
        S.risk_at_coverage(conf, correct, coverage=0.0)
    with pytest.raises(ValueError, match="convention must be"):
        S.ece(conf, correct, convention="[lo,hi]")
    with pytest.raises(ValueError, match="reference must be"):
        S.augrc(conf, correct, reference="sklearn")


def test_augrc_equals_hsc_exact_haurc_of_the_selective_rule():
    # selective.md §9.5: hsc's exact-mode hAURC_selective_01 is the AUGRC of MSP
    from hsc import curves, load_imagenet_hierarchy

    rng = np.random.default_rng(23)
    n = 1500
    z = rng.normal(size=(n, 1000)) * 2
    y = rng.integers(0, 1000, n)
    z[np.arange(n), y] += rng.normal(4, 2, n)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    h = curves.haurc(load_imagenet_hierarchy(), p, y, rule="selective", risk="01")
    assert S.augrc(p.max(axis=1), p.argmax(axis=1) == y) == pytest.approx(h, abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_order_hint_is_used_only_when_it_is_the_stable_order(ties):
    conf, correct = _data(400, 24, ties)
    plain = S.summarize(conf, correct, probability=True)
    stable = np.argsort(-conf, kind="stable")
    wrong_ties = np.lexsort((-np.arange(400), -conf))  # same values order, ties reversed
    for hint in (stable, stable[::-1], wrong_ties, stable[:-1], np.zeros(400, dtype=np.int64), stable * 1.0):
        assert S.summarize(conf, correct, probability=True, order_hint=hint) == pytest.approx(plain, nan_ok=True)
    r = S.rank_scores(conf, correct, order_hint=wrong_ties)
    assert np.array_equal(r.order, stable)
    # a superset's stable order restricted to a subset is the subset's stable order
    subset = np.sort(np.random.default_rng(25).choice(400, 250, replace=False))
    position = np.full(400, -1)
    position[subset] = np.arange(250)
    restricted = position[stable]
    restricted = restricted[restricted >= 0]
    assert np.array_equal(S.rank_scores(conf[subset], correct[subset], order_hint=restricted).order, restricted)
    assert np.array_equal(restricted, np.argsort(-conf[subset], kind="stable"))


@pytest.mark.parametrize("n", [0, 1, 2, 17, 5000])
@pytest.mark.parametrize("levels", [None, 1, 3, 40])
def test_stable_descending_order_is_numpys_stable_argsort(n, levels):
    """Oracle: numpy's merge sort. ``levels`` = number of distinct values (None: continuous, no ties);
    ±0.0 are mixed in, which compare equal and must stay in index order."""
    rng = np.random.default_rng(n + (levels or 0))
    conf = rng.random(n) if levels is None else rng.integers(0, levels, n).astype(np.float64)
    if levels is not None and n:
        conf[conf == 0] = rng.choice([0.0, -0.0], int((conf == 0).sum()))
    order = S.stable_descending_order(conf)
    assert order.dtype == np.int64
    assert np.array_equal(order, np.argsort(-conf, kind="stable"))


# ------------------------------------------------------------------------ stored curves and calibration bins


def _brute_curve(conf: np.ndarray, correct: np.ndarray) -> list[tuple[int, float, float]]:
    """(accepted, coverage, risk) at every distinct threshold t (accept κ ≥ t), coverage increasing."""
    points = []
    for t in sorted(set(conf.tolist()), reverse=True):
        accepted = conf >= t
        k = int(accepted.sum())
        points.append((k, k / conf.size, float((~correct[accepted]).sum()) / k))
    return points


@pytest.mark.parametrize(("n", "seed", "ties"), CASES)
def test_risk_coverage_points_are_the_tie_aware_curve(n, seed, ties):
    conf, correct = _data(n, seed, ties)
    full = S.risk_coverage_points(conf, correct, max_points=10_000)
    brute = _brute_curve(conf, correct)
    assert full.accepted.tolist() == [k for k, _, _ in brute]
    assert full.coverage.tolist() == pytest.approx([c for _, c, _ in brute], abs=1e-15)
    assert full.risk.tolist() == pytest.approx([r for _, _, r in brute], abs=1e-15)
    assert full.threshold.tolist() == sorted(set(conf.tolist()), reverse=True)
    # it is selective_risk_curve (midrank) itself
    coverage, risk, threshold = S.selective_risk_curve(conf, correct)
    assert np.array_equal(full.coverage, coverage) and np.array_equal(full.risk, risk)
    assert np.array_equal(full.threshold, threshold)


@pytest.mark.parametrize("max_points", [2, 3, 7, 50])
def test_thinned_curve_keeps_exact_points_at_even_coverages(max_points):
    conf, correct = _data(400, 31, ties=False)
    full = S.risk_coverage_points(conf, correct, max_points=10_000)
    thin = S.risk_coverage_points(conf, correct, max_points=max_points)
    assert 2 <= thin.coverage.size <= max_points
    assert thin.coverage[0] == full.coverage[0] and thin.coverage[-1] == 1.0
    assert thin.risk[-1] == pytest.approx(1 - correct.mean(), abs=1e-15)
    index = {k: i for i, k in enumerate(full.accepted.tolist())}
    for k, cov, risk in zip(thin.accepted, thin.coverage, thin.risk, strict=True):
        assert full.risk[index[int(k)]] == risk and full.coverage[index[int(k)]] == cov  # a point of the curve
    # brute force: the first curve point at or above each target j/(max_points − 1), without repeats
    expected = []
    for target in np.linspace(0.0, 1.0, max_points):
        first = next(i for i, c in enumerate(full.coverage) if c >= target)
        if first not in expected:
            expected.append(first)
    assert thin.accepted.tolist() == [int(full.accepted[i]) for i in expected]
    with pytest.raises(ValueError, match="max_points must be an integer >= 2"):
        S.risk_coverage_points(conf, correct, max_points=1)


@pytest.mark.parametrize("convention", ["(lo,hi]", "[lo,hi)"])
@pytest.mark.parametrize(("n", "seed", "ties"), CASES)
def test_reliability_table_matches_a_loop_over_bins(convention, n, seed, ties):
    conf, correct = _data(n, seed, ties)
    conf = np.concatenate([conf, [0.0, 1.0, 1 / 15, 2 / 15]])  # edges and both ends
    correct = np.concatenate([correct, [False, True, True, False]])
    table = S.reliability_table(conf, correct, 15, convention=convention)
    edges = np.linspace(0, 1, 16, dtype=np.float32)
    c32 = conf.astype(np.float32)
    for j in range(15):
        if convention == "(lo,hi]":
            inside = (c32 > edges[j]) & (c32 <= edges[j + 1])
        else:
            inside = (c32 >= edges[j]) & ((c32 < edges[j + 1]) if j < 14 else (c32 <= edges[j + 1]))
        assert table.count[j] == inside.sum()
        assert (table.lo[j], table.hi[j]) == (float(edges[j]), float(edges[j + 1]))
        if inside.any():
            assert table.mean_conf[j] == pytest.approx(conf[inside].mean(), rel=1e-12)
            assert table.accuracy[j] == pytest.approx(correct[inside].mean(), rel=1e-12)
        else:
            assert math.isnan(table.mean_conf[j]) and math.isnan(table.accuracy[j])
    assert table.n == conf.size and table.convention == convention
    in_no_bin = int((c32 == 0).sum()) if convention == "(lo,hi]" else 0  # κ = 0 is in no (lo,hi] bin
    assert table.count.sum() == conf.size - in_no_bin and (in_no_bin >= 1 or convention == "[lo,hi)")
    # the stored-bins identity: Σ count·|mean κ − acc| / n is ECE, bit for bit, and the max gap is MCE
    assert table.ece == S.ece(conf, correct, convention=convention)
    assert table.mce == S.mce(conf, correct, convention=convention)
    filled = table.count > 0
    gaps = table.count[filled] * np.abs(table.mean_conf[filled] - table.accuracy[filled])
    assert float(np.sum(gaps)) / table.n == pytest.approx(table.ece, rel=1e-12, abs=1e-15)
    with pytest.raises(ValueError, match="probabilities"):
        S.reliability_table(conf * 2, correct)


def test_selective_summary_is_summarize_plus_its_curve_and_bins():
    rng = np.random.default_rng(41)
    logits = rng.normal(size=(600, 5)) * 3
    labels = rng.integers(0, 5, 600)
    logits[np.arange(600), labels] += 2.0
    stats = softmax_stats(logits, labels)
    correct = stats.top_class == labels
    out = S.selective_summary(stats.log_msp, correct, values=stats.msp, probability=True, max_points=40)
    assert out.metrics == pytest.approx(S.summarize(stats.log_msp, correct, values=stats.msp, probability=True),
                                        nan_ok=True)  # fmt: skip
    curve = S.risk_coverage_points(stats.log_msp, correct, 40, values=stats.msp)
    for name in ("accepted", "coverage", "risk", "threshold"):
        assert np.array_equal(getattr(out.curve, name), getattr(curve, name))
    assert out.reliability.ece == out.metrics["ece15"] and out.reliability.mce == out.metrics["mce15"]
    # ranked by log-MSP, reported in MSP: the thresholds are MSP values, non-increasing
    assert np.all(np.diff(out.curve.threshold) <= 0) and out.curve.threshold.max() <= 1.0
    assert S.selective_summary(stats.log_msp, correct, probability=False).reliability is None
