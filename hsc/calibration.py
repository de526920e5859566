"""Thresholds with hierarchical-accuracy guarantees for Climbing (and Selective), and the DARTS baseline
(hsc.md §4–§6).

- :func:`tight_thresholds`: θ_i, the smallest θ at which the rule is correct on sample i, so that
  correct_i(θ) ⇔ θ >= θ_i for every θ (exact: ``np.nextafter`` of the highest wrong node's probability).
- :func:`calibrate`: θ̂ for target accuracy 1 − α from calibration scores θ_i. ``conformal``: the k-th smallest
  score, k = ⌈(n+1)(1−α)⌉ (exact rational arithmetic on α's decimal string), so E[acc] >= 1 − α;
  ``pac``: k = min{k : BinomCDF(k−1; n, 1−α) >= 1−δ}, so P[acc >= 1 − α] >= 1 − δ; ``quantile``: the
  reference's np.quantile(θ, 1−α) (no guarantee). θ̂ = +inf ("always the root") whenever k > n.
- :func:`darts`: Deng et al.'s "hedging your bets" λ by the reference's 25-step bisection with a plug-in
  binomial lower bound, on float32 node probabilities.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import stats

from hsc.hierarchy import Hierarchy
from hsc.rules import StepTable, _leaf_count_classes, _table_chunk, check_scores, node_prob_chunks, step_table

METHODS = ("quantile", "conformal", "pac")
MONOTONE_RULES = ("selective", "climbing")
DARTS_STEPS = 25


def tight_thresholds(H: Hierarchy, probs: np.ndarray, labels: np.ndarray, rule: str = "climbing") -> np.ndarray:
    """(N,) float64 θ_i: the rule is correct on sample i at θ ⇔ θ >= θ_i (0 when ŷ = y).

    probs: (N, L) leaf or (N, V) node probabilities; labels: (N,) leaf indices; rule: "climbing" or
    "selective" (the rules whose correctness is monotone in θ). θ_i = nextafter(t, +inf) where t is the
    largest breakpoint among the wrong predictions (for Climbing: p(c), c the highest wrong node on ŷ's
    path); θ_i > 1 only when that probability is exactly 1, where the root fallback is correct.
    """
    if rule not in MONOTONE_RULES:
        raise ValueError(f"rule: expected one of {', '.join(MONOTONE_RULES)} (monotone correctness), found {rule!r}")
    table = step_table(H, probs, rule)
    return tight_from_table(H, table, labels)


def tight_from_table(H: Hierarchy, table, labels: np.ndarray) -> np.ndarray:
    """Tight thresholds from a precomputed :class:`hsc.rules.StepTable` of a monotone rule."""
    labels = H.check_labels(labels, table.states.shape[0])
    correct = H.is_correct(table.states, labels)
    first = np.argmax(correct, axis=1)  # the root (last state) is always correct
    wrong_top = np.take_along_axis(table.thresholds, np.maximum(first - 1, 0)[:, None], axis=1)[:, 0]
    return np.where(first == 0, 0.0, np.nextafter(wrong_top, np.inf))


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Validate a level in the open interval (0, 1)."""
    value = float(alpha)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name}: expected a value in the open interval (0, 1), found {alpha}")
    return value


def conformal_rank(n: int, alpha: float) -> int:
    """k = ⌈(n+1)(1−α)⌉ computed exactly from α's decimal string (1-based rank; may exceed n)."""
    a = Fraction(str(check_alpha(alpha)))
    return math.ceil((n + 1) * (1 - a))


def pac_rank(n: int, alpha: float, delta: float) -> int:
    """k = min{k : BinomCDF(k−1; n, 1−α) >= 1−δ} (1-based rank; n+1 when no k <= n qualifies)."""
    alpha, delta = check_alpha(alpha), check_alpha(delta, "delta")
    k = int(stats.binom.ppf(1 - delta, n, 1 - alpha)) + 1
    cdf = stats.binom.cdf
    # Guard the floating-point ppf: CDF(k−1) >= 1−δ > CDF(k−2).
    while k > 1 and cdf(k - 2, n, 1 - alpha) >= 1 - delta:
        k -= 1
    while k <= n and cdf(k - 1, n, 1 - alpha) < 1 - delta:
        k += 1
    return k


def threshold_from_scores(
    scores: np.ndarray, alpha: float, delta: float | None = None, method: str = "conformal"
) -> float:
    """θ̂ from calibration scores ``scores: (n,)`` (tight thresholds); +inf when the rank exceeds n."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, found {method!r}")
    alpha = check_alpha(alpha)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"scores: expected a non-empty (n,) array, found shape {scores.shape}")
    n = scores.size
    if method == "quantile":
        return float(np.quantile(scores, 1 - alpha))
    if method == "pac":
        if delta is None:
            raise ValueError("delta: method 'pac' needs delta in (0, 1), found None")
        k = pac_rank(n, alpha, delta)
    else:
        k = conformal_rank(n, alpha)
    if k > n:
        return float("inf")
    return float(np.partition(scores, k - 1)[k - 1])


def calibrate(
    H: Hierarchy,
    probs: np.ndarray,
    labels: np.ndarray,
    alpha: float,
    delta: float | None = None,
    method: str = "conformal",
    rule: str = "climbing",
) -> float:
    """θ̂ for target hierarchical accuracy 1 − α on calibration data; predict with ``rule`` at θ̂.

    probs: (n, L) leaf or (n, V) node probabilities; labels: (n,) leaf indices; alpha in (0, 1);
    delta in (0, 1), required by method="pac"; method in {"quantile", "conformal", "pac"}.
    Returns +inf (always predict the root) when the required order statistic exceeds n.
    """
    check_alpha(alpha)
    if method == "pac" and delta is None:
        raise ValueError("delta: method 'pac' needs delta in (0, 1), found None")
    if delta is not None:
        check_alpha(delta, "delta")
    return threshold_from_scores(tight_thresholds(H, probs, labels, rule), alpha, delta, method)


def darts_gains(H: Hierarchy) -> np.ndarray:
    """(V,) float32 rewards r_v = φ(v)·log2 L (bits of information; 0 at the root)."""
    return (np.asarray(H.coverage) * np.log2(H.num_leaves)).astype(np.float32)


def darts_predict(H: Hierarchy, probs: np.ndarray, lam: float) -> np.ndarray:
    """DARTS prediction argmax_v (r_v + λ)·p(v) on float32 node probabilities (ties to the lowest id).

    probs: (N, L) leaf or (N, V) node probabilities; lam >= 0 -> (N,) node indices.
    """
    gains = darts_gains(H) + np.float32(lam)
    parts = [np.argmax(_unclipped32(P) * gains, axis=1) for _, P in node_prob_chunks(H, probs)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _unclipped32(P: np.ndarray) -> np.ndarray:
    """Validated float32 copy of a (n, V) node-probability chunk (DARTS compares every node)."""
    check_scores(P)
    return P.astype(np.float32)


def darts_table(H: Hierarchy, probs: np.ndarray) -> StepTable:
    """DARTS predictions of every sample as a step function of λ >= 0, in float64 (hsc.md §10).

    pred(λ) = argmax_v (r_v + λ)·p(v) is the upper envelope of the lines p(v)·λ + r_v·p(v). Only the max-p
    node of each leaf-count class (equal r_v; lowest id on ties) can win, so the envelope is walked over those
    K+1 candidates: from the λ = 0 winner, repeatedly to the steeper line met first (steepest on ties).
    Returns StepTable(states (N, K+1), thresholds (N, K) = λ breakpoints, +inf padded) with
    pred(λ) = states[i, #{k : thresholds[i, k] < λ}]; at a breakpoint itself ties are not resolved by id.
    """
    table_parts, break_parts = [], []
    classes = _leaf_count_classes(H)
    reward = np.array([H.coverage[lo] for lo, _ in classes]) * np.log2(H.num_leaves)
    for _, P in node_prob_chunks(H, probs):
        nodes, slope = _table_chunk(H, P, "max_coverage")  # class maxima: (n, K+1), checked
        n, width = slope.shape
        rows = np.arange(n)
        intercept = slope * reward
        cur = np.argmax(intercept, axis=1)
        states = np.empty((n, width), dtype=np.int64)
        breaks = np.full((n, width - 1), np.inf)
        states[:, 0] = nodes[rows, cur]
        for k in range(1, width):
            s_cur = slope[rows, cur][:, None]
            steeper = slope > s_cur
            with np.errstate(divide="ignore", invalid="ignore"):
                meet = np.where(steeper, (intercept[rows, cur][:, None] - intercept) / (slope - s_cur), np.inf)
            first = meet.min(axis=1)
            nxt = np.argmax(np.where(meet == first[:, None], slope, -np.inf), axis=1)
            moved = np.isfinite(first)
            cur = np.where(moved, nxt, cur)
            floor = 0.0 if k == 1 else breaks[:, k - 2]
            breaks[:, k - 1] = np.where(moved, np.maximum(first, floor), np.inf)
            states[:, k] = nodes[rows, cur]
            if not moved.any():
                states[:, k + 1 :] = states[:, k : k + 1]
                break
        table_parts.append(states)
        break_parts.append(breaks)
    return StepTable(np.concatenate(table_parts), np.concatenate(break_parts))


def darts(H: Hierarchy, probs: np.ndarray, labels: np.ndarray, epsilon: float, confidence: float = 0.9) -> float:
    """DARTS λ for target accuracy 1 − ε on calibration data, exactly as the reference (hsc.md §6).

    probs: (n, L) leaf or (n, V) node probabilities; labels: (n,) leaf indices; epsilon in (0, 1);
    confidence in (0, 1): the two-sided plug-in binomial interval whose lower end must exceed 1 − ε.
    Returns 0.0 when the plain gain-maximising predictor already reaches 1 − ε on the calibration set,
    otherwise the upper end of 25 bisection steps on [0, (log2 L·(1−ε) − 0)/ε].
    """
    epsilon = check_alpha(epsilon, "epsilon")
    confidence = check_alpha(confidence, "confidence")
    P32 = np.concatenate([_unclipped32(P) for _, P in node_prob_chunks(H, probs)])
    labels = H.check_labels(labels, P32.shape[0])
    n = P32.shape[0]
    gains = darts_gains(H)

    def accuracy(lam: float) -> float:
        pred = np.argmax(P32 * (gains + np.float32(lam)), axis=1)
        return float(H.is_correct(pred, labels).mean())

    if accuracy(0.0) >= 1 - epsilon:
        return 0.0
    lower_q = (1 - confidence) / 2
    lo, hi = 0.0, (np.log2(H.num_leaves) * (1 - epsilon) - 0.0) / epsilon
    for _ in range(DARTS_STEPS):
        mid = (lo + hi) / 2
        bound = stats.binom.ppf(lower_q, n, accuracy(mid)) / n
        if bound > 1 - epsilon:
            hi = mid
        else:
            lo = mid
    return float(hi)
