"""The threshold study for one model (hsc.md §7.2, §10): how well each calibration method hits its target.

For R repetitions of a seeded stratified calibration/test split and every α of a list, each method's θ̂ is
computed on the calibration part and the rule (Climbing by default) is evaluated on the test part. Reported
per (method, α): mean θ̂, mean test hierarchical accuracy and its error |target − mean| in points, mean test
coverage, and the violation rate P(test accuracy < 1 − α).

Vectorised: the tight thresholds θ_i, the rule's step table and its coverage events are computed once over
all N samples; a test metric is then (whole-set metric at θ̂ − calibration-part metric at θ̂)/(N − n), which
costs O(n log n + E) per repetition (E = number of coverage events, ≈ N × mean depth).

Splits: repetition r draws from ``np.random.default_rng(np.random.SeedSequence([seed, r]))``, so split r
is the same for every model. Each class contributes n·N_c/N calibration samples rounded by largest
remainder (ties to the lower class index): 5 per class for ImageNet val with n = 5,000.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from scipy import stats

from hsc.calibration import (
    DARTS_STEPS,
    METHODS,
    check_alpha,
    conformal_rank,
    darts_table,
    pac_rank,
    tight_from_table,
)
from hsc.curves import Events, events
from hsc.hierarchy import Hierarchy
from hsc.ordering import stable_order
from hsc.rules import step_table

DEFAULT_ALPHAS = (0.3, 0.2, 0.15, 0.1, 0.05, 0.01, 0.005)
STUDY_METHODS = (*METHODS, "darts")
DARTS_CONFIDENCE = 0.9


def class_allocation(labels: np.ndarray, n_cal: int, num_classes: int) -> np.ndarray:
    """(num_classes,) int64 calibration samples per class: n_cal·N_c/N by largest remainder."""
    counts = np.bincount(labels, minlength=num_classes)
    quota = [Fraction(n_cal * int(c), labels.size) for c in counts]
    alloc = np.array([math.floor(q) for q in quota], dtype=np.int64)
    remainders = np.array([float(q - math.floor(q)) for q in quota])
    missing = n_cal - int(alloc.sum())
    order = np.lexsort((np.arange(num_classes), -remainders))
    alloc[order[:missing]] += 1
    return alloc


class StratifiedSplitter:
    """Seeded stratified calibration/test splits of ``labels: (N,)`` (class indices in [0, num_classes)).

    Class c contributes ``alloc[c]`` calibration samples: by default :func:`class_allocation` of n_cal; a caller
    with its own allocation rule passes ``alloc: (num_classes,)`` int (summing to n_cal, ``alloc[c]`` ≤ N_c).
    Inside a class the samples with the smallest random keys are taken (:meth:`select`); split r draws its keys
    from ``np.random.default_rng(np.random.SeedSequence([seed, r]))`` (:meth:`calibration_indices`).
    """

    def __init__(self, labels: np.ndarray, n_cal: int, seed: int, num_classes: int, *, alloc: np.ndarray | None = None):
        labels = np.asarray(labels, dtype=np.int64)
        if not 0 < n_cal < labels.size:
            raise ValueError(f"n_cal: expected 0 < n_cal < N = {labels.size}, found {n_cal}")
        self.labels, self.n_cal, self.seed = labels, int(n_cal), int(seed)
        if alloc is None:
            alloc = class_allocation(labels, n_cal, num_classes)
        else:
            alloc = np.asarray(alloc, dtype=np.int64)
            counts = np.bincount(labels, minlength=num_classes)
            if alloc.shape != (num_classes,) or alloc.sum() != n_cal or np.any((alloc < 0) | (alloc > counts)):
                raise ValueError(
                    f"alloc: expected {num_classes} per-class counts in [0, N_c] summing to n_cal = {n_cal}"
                )
        sorted_labels = np.sort(labels)
        start = np.searchsorted(sorted_labels, np.arange(num_classes), side="left")
        rank = np.arange(labels.size) - start[sorted_labels]
        self._take = rank < alloc[sorted_labels]

    def select(self, keys: np.ndarray) -> np.ndarray:
        """(n_cal,) int64 calibration sample indices for ``keys: (N,)`` floats in [0, 1): per class c, the
        alloc[c] samples with the smallest keys (ties to the lower index), ordered by (class, key)."""
        return stable_order(self.labels + keys)[self._take]

    def calibration_indices(self, repetition: int) -> np.ndarray:
        """(n_cal,) int64 calibration sample indices of split ``repetition`` (the rest is the test part)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(repetition)]))
        return self.select(rng.random(self.labels.size))


class _CalibrationSums:
    """Sums of per-sample step functions over all samples and over one calibration part.

    ev: events of a step table (sorted by breakpoint); x: query points (thresholds or λ). A sample's value at
    x is its state-0 value plus its events with t < x. The events are also grouped by sample, so that a
    calibration part's events are gathered directly (about a tenth of them) instead of masking all of them.
    """

    def __init__(self, ev: Events, correct0: np.ndarray, coverage0: np.ndarray):
        self.ev = ev
        self.correct0 = correct0.astype(np.int64)
        self.coverage0 = coverage0
        self.correct_all = np.concatenate([[0], np.cumsum(ev.d_correct)])
        self.coverage_all = np.concatenate([[0.0], np.cumsum(ev.d_coverage)])
        self._by_sample = stable_order(ev.sample)  # event indices grouped by sample, ascending within a sample
        self._count = np.bincount(ev.sample, minlength=ev.num_samples)
        self._first = np.concatenate([[0], np.cumsum(self._count)[:-1]])

    def set_calibration(self, cal: np.ndarray) -> None:
        """Take ``cal: (n,)`` sample indices as the calibration part."""
        counts = self._count[cal]
        ends = np.cumsum(counts)
        slots = np.repeat(self._first[cal] - (ends - counts), counts) + np.arange(int(ends[-1]) if ends.size else 0)
        self.cal_events = np.sort(self._by_sample[slots])  # ascending event index = ascending breakpoint
        # the same running sums as over all events with the others' steps set to 0 (adding 0 is exact)
        self.correct_cal = np.concatenate([[0], np.cumsum(self.ev.d_correct[self.cal_events])])
        self.coverage_cal = np.concatenate([[0.0], np.cumsum(self.ev.d_coverage[self.cal_events])])
        self.base_correct_cal = int(self.correct0[cal].sum())
        self.base_coverage_cal = float(self.coverage0[cal].sum())

    def _prefix(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query point: events with t < x (all samples), and how many of those are calibration events."""
        at = np.searchsorted(self.ev.t, x, side="left")
        return at, np.searchsorted(self.cal_events, at, side="left")

    def calibration_correct(self, x: np.ndarray) -> np.ndarray:
        return self.base_correct_cal + self.correct_cal[self._prefix(x)[1]]

    def test_sums(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(correct count, coverage sum) over the samples outside the calibration part, at x."""
        at, k = self._prefix(x)
        correct = self.ev.base_correct + self.correct_all[at] - self.base_correct_cal - self.correct_cal[k]
        coverage = self.ev.base_coverage + self.coverage_all[at] - self.base_coverage_cal - self.coverage_cal[k]
        return correct, coverage


def threshold_study(
    H: Hierarchy,
    probs: np.ndarray,
    labels: np.ndarray,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    *,
    methods: Sequence[str] = ("conformal", "pac", "quantile"),
    delta: float = 0.1,
    repetitions: int = 1000,
    n_cal: int | None = None,
    seed: int = 0,
    rule: str = "climbing",
) -> list[dict[str, float | int | str | None]]:
    """Run the threshold study; one result row per (method, α), in methods-then-alphas order.

    probs: (N, L) leaf or (N, V) node probabilities; labels: (N,) leaf indices; alphas in (0, 1);
    methods ⊆ {"conformal", "pac", "quantile", "darts"}; delta: δ of "pac"; n_cal: calibration size
    (default min(5000, N // 2)); rule: "climbing" or "selective" (the rule of the threshold methods).
    "darts" (ε = α) runs the reference's 25-step bisection on each calibration part with a float64 envelope
    of the DARTS predictions (:func:`hsc.calibration.darts_table`); its θ is λ.
    Row keys: method, rule, alpha, delta (None unless pac), n_cal, repetitions, seed, theta_mean,
    accuracy_mean, accuracy_std, accuracy_error (points), coverage_mean, coverage_std, violation_rate.
    """
    alphas = [check_alpha(a) for a in alphas]
    for method in methods:
        if method not in STUDY_METHODS:
            raise ValueError(f"methods: expected a subset of {', '.join(STUDY_METHODS)}, found {method!r}")
    if "pac" in methods:
        check_alpha(delta, "delta")
    if repetitions < 1:
        raise ValueError(f"repetitions: expected a positive integer, found {repetitions}")
    if rule not in ("climbing", "selective"):
        raise ValueError(f"rule: expected 'climbing' or 'selective', found {rule!r}")
    table = step_table(H, probs, rule)
    labels = H.check_labels(labels, table.states.shape[0])
    N = labels.size
    n = min(5000, N // 2) if n_cal is None else int(n_cal)
    splitter = StratifiedSplitter(labels, n, seed, H.num_leaves)
    m = N - n
    coverage = np.asarray(H.coverage)

    theta = tight_from_table(H, table, labels)
    sums = _CalibrationSums(events(H, table, labels), theta == 0, coverage[table.states[:, 0]])

    combos: list[tuple[str, float]] = [(meth, a) for meth in methods for a in alphas]
    threshold_cols = np.array([c for c, (meth, _) in enumerate(combos) if meth != "darts"], dtype=np.int64)
    darts_cols = np.array([c for c, (meth, _) in enumerate(combos) if meth == "darts"], dtype=np.int64)
    ranks = np.array(
        [
            conformal_rank(n, a) if meth == "conformal" else pac_rank(n, a, delta) if meth == "pac" else 0
            for meth, a in (combos[c] for c in threshold_cols)
        ],
        dtype=np.int64,
    )
    is_quantile = np.array([combos[c][0] == "quantile" for c in threshold_cols], dtype=bool)
    quantile_levels = np.array([1 - combos[c][1] for c in threshold_cols])
    # acc < 1 − α ⇔ correct count < ⌈(1 − α)·m⌉ (exact rational arithmetic).
    needed = np.array([math.ceil((1 - Fraction(str(a))) * m) for _, a in combos])

    if darts_cols.size:
        dtable = darts_table(H, probs)
        dsums = _CalibrationSums(
            events(H, dtable, labels), H.is_correct(dtable.states[:, 0], labels), coverage[dtable.states[:, 0]]
        )
        eps = np.array([combos[c][1] for c in darts_cols])
        # Bisection acceptance per calibration count c: binom.ppf(0.05, n, c/n)/n > 1 − ε (plug-in bound).
        lower = stats.binom.ppf((1 - DARTS_CONFIDENCE) / 2, n, np.arange(n + 1) / n) / n
        accept = lower[None, :] > (1 - eps)[:, None]
        lam_max = np.log2(H.num_leaves) * (1 - eps) / eps
        eps_rows = np.arange(eps.size)

    thetas = np.empty((repetitions, len(combos)))
    correct = np.empty((repetitions, len(combos)), dtype=np.int64)
    coverage_sum = np.empty((repetitions, len(combos)))
    for r in range(repetitions):
        cal = splitter.calibration_indices(r)
        if threshold_cols.size:
            scores = np.sort(theta[cal])
            hat = np.where(ranks <= n, scores[np.clip(ranks - 1, 0, n - 1)], np.inf)
            if is_quantile.any():
                hat[is_quantile] = np.quantile(scores, quantile_levels[is_quantile])
            sums.set_calibration(cal)
            thetas[r, threshold_cols] = hat
            correct[r, threshold_cols], coverage_sum[r, threshold_cols] = sums.test_sums(hat)
        if darts_cols.size:
            dsums.set_calibration(cal)
            lo, hi = np.zeros(eps.size), lam_max.copy()
            for _ in range(DARTS_STEPS):
                mid = (lo + hi) / 2
                ok = accept[eps_rows, dsums.calibration_correct(mid)]
                hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
            lam = np.where(dsums.base_correct_cal / n >= 1 - eps, 0.0, hi)
            thetas[r, darts_cols] = lam
            correct[r, darts_cols], coverage_sum[r, darts_cols] = dsums.test_sums(lam)

    accuracy = correct / m
    mean_coverage = coverage_sum / m
    rows = []
    for c, (method, alpha) in enumerate(combos):
        acc_mean = float(accuracy[:, c].mean())
        rows.append(
            {
                "method": method,
                "rule": "darts" if method == "darts" else rule,
                "alpha": alpha,
                "delta": float(delta) if method == "pac" else None,
                "n_cal": n,
                "repetitions": int(repetitions),
                "seed": int(seed),
                "theta_mean": float(thetas[:, c].mean()),
                "accuracy_mean": acc_mean,
                "accuracy_std": float(accuracy[:, c].std()),
                "accuracy_error": abs(100.0 * (1 - alpha) - 100.0 * acc_mean),
                "coverage_mean": float(mean_coverage[:, c].mean()),
                "coverage_std": float(mean_coverage[:, c].std()),
                "violation_rate": float((correct[:, c] < needed[c]).mean()),
            }
        )
    return rows
