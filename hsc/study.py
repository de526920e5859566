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

from hsc.calibration import (
    METHODS,
    check_alpha,
    conformal_rank,
    pac_rank,
    tight_from_table,
)
from hsc.curves import events
from hsc.hierarchy import Hierarchy
from hsc.rules import step_table

DEFAULT_ALPHAS = (0.3, 0.2, 0.15, 0.1, 0.05, 0.01, 0.005)


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
    """Seeded stratified calibration/test splits of ``labels: (N,)`` with n_cal calibration samples."""

    def __init__(self, labels: np.ndarray, n_cal: int, seed: int, num_classes: int):
        labels = np.asarray(labels, dtype=np.int64)
        if not 0 < n_cal < labels.size:
            raise ValueError(f"n_cal: expected 0 < n_cal < N = {labels.size}, found {n_cal}")
        self.labels, self.n_cal, self.seed = labels, int(n_cal), int(seed)
        alloc = class_allocation(labels, n_cal, num_classes)
        sorted_labels = np.sort(labels)
        start = np.searchsorted(sorted_labels, np.arange(num_classes), side="left")
        rank = np.arange(labels.size) - start[sorted_labels]
        self._take = rank < alloc[sorted_labels]

    def calibration_indices(self, repetition: int) -> np.ndarray:
        """(n_cal,) int64 calibration sample indices of split ``repetition`` (the rest is the test part)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(repetition)]))
        keys = self.labels + rng.random(self.labels.size)
        return np.argsort(keys)[self._take]


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
    methods ⊆ {"conformal", "pac", "quantile"}; delta: δ of "pac"; n_cal: calibration size (default
    min(5000, N // 2)); rule: "climbing" or "selective".
    Row keys: method, rule, alpha, delta (None unless pac), n_cal, repetitions, seed, theta_mean,
    accuracy_mean, accuracy_std, accuracy_error (points), coverage_mean, coverage_std, violation_rate.
    """
    alphas = [check_alpha(a) for a in alphas]
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"methods: expected a subset of {', '.join(METHODS)}, found {method!r}")
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

    theta = tight_from_table(H, table, labels)
    theta_sorted = np.sort(theta)
    ev = events(H, table, labels)
    cov0 = np.asarray(H.coverage)[table.states[:, 0]]
    cov_csum_all = np.concatenate([[0.0], np.cumsum(ev.d_coverage)])

    # Per (method, α): how θ̂ is read from the sorted calibration scores.
    combos: list[tuple[str, float]] = [(meth, a) for meth in methods for a in alphas]
    ranks = np.array([
        conformal_rank(n, a) if meth == "conformal" else pac_rank(n, a, delta) if meth == "pac" else 0
        for meth, a in combos
    ])
    is_quantile = np.array([meth == "quantile" for meth, _ in combos])
    quantile_levels = np.array([1 - a for _, a in combos])
    # acc < 1 − α ⇔ correct count < ⌈(1 − α)·m⌉ (exact rational arithmetic).
    needed = np.array([math.ceil((1 - Fraction(str(a))) * m) for _, a in combos])

    thetas = np.empty((repetitions, len(combos)))
    correct = np.empty((repetitions, len(combos)), dtype=np.int64)
    coverage_sum = np.empty((repetitions, len(combos)))
    for r in range(repetitions):
        cal = splitter.calibration_indices(r)
        scores = np.sort(theta[cal])
        hat = np.where(ranks <= n, scores[np.clip(ranks - 1, 0, n - 1)], np.inf)
        if is_quantile.any():
            hat[is_quantile] = np.quantile(scores, quantile_levels[is_quantile])
        thetas[r] = hat
        correct[r] = np.searchsorted(theta_sorted, hat, side="right") - np.searchsorted(scores, hat, "right")
        applied = np.searchsorted(ev.t, hat, side="left")
        in_cal = np.zeros(N, dtype=bool)
        in_cal[cal] = True
        cal_csum = np.concatenate([[0.0], np.cumsum(np.where(in_cal[ev.sample], ev.d_coverage, 0.0))])
        all_cov = ev.base_coverage + cov_csum_all[applied]
        cal_cov = cov0[cal].sum() + cal_csum[applied]
        coverage_sum[r] = all_cov - cal_cov

    accuracy = correct / m
    coverage = coverage_sum / m
    rows = []
    for c, (method, alpha) in enumerate(combos):
        acc_mean = float(accuracy[:, c].mean())
        rows.append({
            "method": method,
            "rule": rule,
            "alpha": alpha,
            "delta": float(delta) if method == "pac" else None,
            "n_cal": n,
            "repetitions": int(repetitions),
            "seed": int(seed),
            "theta_mean": float(thetas[:, c].mean()),
            "accuracy_mean": acc_mean,
            "accuracy_std": float(accuracy[:, c].std()),
            "accuracy_error": abs(100.0 * (1 - alpha) - 100.0 * acc_mean),
            "coverage_mean": float(coverage[:, c].mean()),
            "coverage_std": float(coverage[:, c].std()),
            "violation_rate": float((correct[:, c] < needed[c]).mean()),
        })
    return rows
