"""Flat selective-prediction and calibration metrics (selective.md), vectorised numpy, float64.

Inputs are ``conf: (N,) float`` (higher = more confident) and ``correct: (N,) bool`` (top-1 prediction
correct). Every ranking metric is computed from one stable descending sort, held by :class:`RankedScores`;
:func:`summarize` computes the whole bundle of one (model, κ) from that single sort, and
:func:`selective_summary` adds what a report draws from the same sort and bins: the risk–coverage points
(:func:`risk_coverage_points`) and the calibration bins of ECE (:func:`reliability_table`).

Conventions (docs/metrics.md has the full table):
- Every quantity is a fraction (accuracy too); nothing is ×1000 or percent.
- ``ties="midrank"`` (default) is tie-aware: mid-rank AUROC (≡ scikit-learn), expected selective risk over
  random orders inside a tie block, curves evaluated only at distinct thresholds. ``ties="reference"``
  reproduces the reference pair count / per-prefix sums on the stable order. Without ties both agree.
- Ranking metrics of single-class input (all correct or all wrong) are NaN with a warning, never 0 or 0.5.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from hsc.ordering import stable_order
from hsc.softmax import softmax_stats
from hsc.temperature import TemperatureFit, fit_temperature, fit_temperature_result

__all__ = [
    "CURVE_POINTS",
    "PairCounts",
    "RankedScores",
    "ReliabilityTable",
    "RiskCoveragePoints",
    "SelectiveSummary",
    "TemperatureFit",
    "adaptive_bin_edges",
    "adaptive_ece",
    "adaptive_mce",
    "augrc",
    "aurc",
    "auroc",
    "brier",
    "confidence_stats",
    "coverage_at_accuracy",
    "eaurc",
    "eaurc_exact",
    "ece",
    "fit_temperature",
    "fit_temperature_result",
    "gamma",
    "mce",
    "nll",
    "pair_counts",
    "rank_scores",
    "reliability_table",
    "risk_at_coverage",
    "risk_coverage_points",
    "selective_risk_curve",
    "selective_summary",
    "summarize",
]

Ties = Literal["midrank", "reference"]
BIN_CONVENTIONS = ("(lo,hi]", "[lo,hi)")
_FEW_EDGES = 64  # up to this many bin edges, _edges_below compares edge by edge
CURVE_POINTS = 200  # stored points per risk–coverage curve (risk_coverage_points)
_SEMANTICS = {"first": "first", "first_violation": "first", "max": "max", "max_coverage": "max"}


# --------------------------------------------------------------------------------------------------
# input checks and the shared sorted view


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product of two (n,) arrays (einsum: no BLAS thread start-up for these short vectors)."""
    return float(np.einsum("i,i->", a, b))


def _check_inputs(conf: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``conf`` as (N,) float64 and ``correct`` as (N,) bool."""
    c = np.asarray(conf)
    y = np.asarray(correct)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"conf must be a non-empty 1-D array of shape (N,), got shape {c.shape}")
    if not (np.issubdtype(c.dtype, np.floating) or np.issubdtype(c.dtype, np.integer)):
        raise ValueError(f"conf must be a real-valued array, got dtype {c.dtype}")
    c = c.astype(np.float64, copy=False)
    if not np.isfinite(c).all():
        raise ValueError(f"conf must be finite, found {int((~np.isfinite(c)).sum())} NaN/infinite values")
    if y.ndim != 1 or y.shape[0] != c.shape[0]:
        raise ValueError(f"correct must have shape ({c.shape[0]},) to match conf, got shape {y.shape}")
    if y.dtype != np.bool_:
        raise ValueError(f"correct must be a boolean array (top-1 correct), got dtype {y.dtype}")
    return c, y


def _check_ties(ties: str) -> None:
    if ties not in ("midrank", "reference"):
        raise ValueError(f"ties must be 'midrank' or 'reference', got {ties!r}")


@dataclass(frozen=True)
class RankedScores:
    """Samples in stable descending order of confidence, with prefix counts and tie blocks.

    ``conf``: (n,) float64 sorted descending; ``correct``: (n,) bool in that order; ``errors_before``:
    (n+1,) int64, errors among the k most confident (k = 0..n); ``block_start`` / ``block_end``: (B,) int64,
    each tie block covers sorted positions block_start..block_end−1 (so block_end is a prefix length k);
    ``order``: (n,) int64, the sort permutation (``conf = input[order]``).
    """

    conf: np.ndarray
    correct: np.ndarray
    errors_before: np.ndarray
    block_start: np.ndarray
    block_end: np.ndarray
    order: np.ndarray

    @property
    def n(self) -> int:
        return int(self.conf.size)

    @property
    def m(self) -> int:
        """Number of errors."""
        return int(self.errors_before[-1])

    @cached_property
    def block_errors(self) -> np.ndarray:
        """(B,) errors inside each tie block."""
        return self.errors_before[self.block_end] - self.errors_before[self.block_start]

    def block_sizes(self) -> np.ndarray:
        """(B,) samples in each tie block."""
        return self.block_end - self.block_start

    def expected_errors(self, k: np.ndarray) -> np.ndarray:
        """Expected errors among the k most confident (k ≥ 1) over random orders inside tie blocks."""
        b = np.searchsorted(self.block_end, k, side="left")
        k0 = self.block_start[b]
        rho = self.block_errors[b] / self.block_sizes()[b]
        return self.errors_before[k0] + (k - k0) * rho

    @cached_property
    def expected_risk(self) -> np.ndarray:
        """(n,) float64 expected selective risk of each prefix k = 1..n over random orders in tie blocks."""
        k = np.arange(1, self.n + 1, dtype=np.float64)
        if self.block_end.size == self.n:  # no ties: the stable order is the only order
            return self.errors_before[1:] / k
        sizes = self.block_sizes()
        base = np.repeat(self.errors_before[self.block_start], sizes)
        start = np.repeat(self.block_start, sizes)
        rho = np.repeat(self.block_errors / sizes, sizes)
        return (base + (k - start) * rho) / k

    @cached_property
    def ascending(self) -> np.ndarray:
        """(n,) float64 confidences sorted ascending (contiguous)."""
        return np.ascontiguousarray(self.conf[::-1])

    @cached_property
    def pair_counts(self) -> PairCounts:
        """(correct, wrong) :class:`PairCounts`: ``greater`` = the correct sample strictly more confident."""
        ascending_correct = self.correct[::-1]
        return pair_counts(self.ascending[ascending_correct], self.ascending[~ascending_correct])


def _is_stable_descending(c: np.ndarray, order: np.ndarray) -> bool:
    """Whether ``order`` is exactly the stable descending sort permutation of ``c`` (O(n) check)."""
    if order.shape != c.shape or not np.issubdtype(order.dtype, np.integer):
        return False
    if c.size and (order.min() < 0 or order.max() >= c.size or np.bincount(order).max() > 1):
        return False
    cs = c[order]
    step = cs[1:] - cs[:-1]
    return not (np.any(step > 0) or np.any((step == 0) & (order[1:] < order[:-1])))


def stable_descending_order(conf: np.ndarray) -> np.ndarray:
    """``conf: (N,)`` float64 without NaN -> ``(N,) int64`` permutation sorting it descending, tied values in
    index order: exactly ``np.argsort(-conf, kind="stable")``, at about half of its cost
    (:func:`hsc.ordering.stable_order`)."""
    return stable_order(conf, descending=True)


def rank_scores(conf: np.ndarray, correct: np.ndarray, order_hint: np.ndarray | None = None) -> RankedScores:
    """Validate ``conf: (N,)`` / ``correct: (N,) bool`` and sort once (stable, descending confidence).

    ``order_hint``: (N,) int, a candidate for the sort permutation (e.g. a superset's order restricted to
    this subset). It is used when an O(n) check confirms it is the stable descending order; otherwise the
    scores are sorted as usual.
    """
    c, y = _check_inputs(conf, correct)
    hint_ok = order_hint is not None and _is_stable_descending(c, np.asarray(order_hint))
    order = np.asarray(order_hint) if hint_ok else stable_descending_order(c)
    cs, ys = c[order], y[order]
    errors_before = np.zeros(cs.size + 1, dtype=np.int64)
    np.cumsum(~ys, out=errors_before[1:])
    block_end = np.append(np.flatnonzero(cs[1:] != cs[:-1]) + 1, cs.size).astype(np.int64)
    block_start = np.concatenate(([0], block_end[:-1])).astype(np.int64)
    return RankedScores(cs, ys, errors_before, block_start, block_end, order)


def _single_class_nan(r: RankedScores, metric: str) -> bool:
    if r.m == 0 or r.m == r.n:
        kind = "correct" if r.m == 0 else "wrong"
        warnings.warn(f"{metric}: all {r.n} samples are {kind}; returning NaN", RuntimeWarning, stacklevel=3)
        return True
    return False


# --------------------------------------------------------------------------------------------------
# AUROC and gamma


@dataclass(frozen=True)
class PairCounts:
    """Counts of (positive, negative) pairs by score: ``greater`` (positive scored higher), ``tied``, ``less``.

    Exact Python ints; every pair is in exactly one of them, so their sum is n_pos·n_neg.
    """

    greater: int
    tied: int
    less: int

    @property
    def pairs(self) -> int:
        """n_pos·n_neg."""
        return self.greater + self.tied + self.less

    @property
    def auroc(self) -> float:
        """Mid-rank AUROC (greater + ½·tied)/pairs, a fraction (= Mann–Whitney U/pairs); NaN without pairs."""
        return (self.greater + 0.5 * self.tied) / self.pairs if self.pairs else math.nan


def pair_counts(pos_sorted: np.ndarray, neg_sorted: np.ndarray) -> PairCounts:
    """:class:`PairCounts` of positives vs negatives: ``pos_sorted: (n,)`` and ``neg_sorted: (m,)``, each
    sorted ascending (float64, no NaN; either may be empty).

    One ``np.searchsorted`` of the negatives into the positives, O(m log n), plus a second one for the negatives
    that tie with a positive: a caller evaluating many negative sets against one positive set (C-OOD levels)
    sorts the positives once.
    """
    n, m = int(pos_sorted.shape[0]), int(neg_sorted.shape[0])
    if n == 0 or m == 0:
        return PairCounts(greater=0, tied=0, less=0)
    left = np.searchsorted(pos_sorted, neg_sorted, side="left")  # #{pos < x} per negative x
    below = int(left.sum(dtype=np.int64))
    tie = np.flatnonzero(pos_sorted[np.minimum(left, n - 1)] == neg_sorted)  # negatives equal to some positive
    if 4 * tie.size > m:  # many ties: one full search is cheaper than gathering them
        at_or_below = int(np.searchsorted(pos_sorted, neg_sorted, side="right").sum(dtype=np.int64))
    else:
        at_or_below = below + int((np.searchsorted(pos_sorted, neg_sorted[tie], side="right") - left[tie]).sum())
    return PairCounts(greater=n * m - at_or_below, tied=at_or_below - below, less=below)


def _auroc(r: RankedScores, ties: str) -> float:
    _check_ties(ties)
    if _single_class_nan(r, "auroc"):
        return math.nan
    if ties == "reference":
        # each correct sample is concordant with every error that comes after it in the stable order
        inc_after = r.m - r.errors_before[1:][r.correct]
        return float(inc_after.sum()) / (float(r.n - r.m) * r.m)
    return r.pair_counts.auroc


def auroc(conf: np.ndarray, correct: np.ndarray, *, ties: Ties = "midrank") -> float:
    """Misclassification-detection AUROC: P(κ_correct > κ_wrong), a fraction in [0, 1].

    ``ties="midrank"``: tied pairs count ½ (Mann–Whitney, equals ``sklearn.metrics.roc_auc_score(correct,
    conf)``); ``ties="reference"``: pair count on the stable descending order (a tied pair counts 1 or 0 by
    position). NaN with a warning when only one class is present.
    """
    return _auroc(rank_scores(conf, correct), ties)


def _gamma(r: RankedScores, ties: str) -> float:
    if ties == "goodman_kruskal":
        if _single_class_nan(r, "gamma"):
            return math.nan
        counts = r.pair_counts
        concordant, discordant = counts.greater, counts.less
        if concordant + discordant == 0:
            warnings.warn("gamma: every (correct, wrong) pair is tied; returning NaN", RuntimeWarning, stacklevel=3)
            return math.nan
        return (concordant - discordant) / (concordant + discordant)
    return 2.0 * _auroc(r, ties) - 1.0


def gamma(
    conf: np.ndarray,
    correct: np.ndarray,
    *,
    ties: Literal["midrank", "reference", "goodman_kruskal"] = "midrank",
) -> float:
    """Rank correlation of κ with correctness, in [−1, 1].

    ``"reference"``: 2·AUROC_ref − 1 (the CSV's "Gamma Correlation"); ``"midrank"``: 2·AUROC − 1 (tied
    pairs count 0, Somers' D); ``"goodman_kruskal"``: (concordant − discordant)/(concordant + discordant),
    tied pairs dropped. NaN with a warning for single-class input.
    """
    if ties not in ("midrank", "reference", "goodman_kruskal"):
        raise ValueError(f"ties must be 'midrank', 'reference' or 'goodman_kruskal', got {ties!r}")
    return _gamma(rank_scores(conf, correct), ties)


# --------------------------------------------------------------------------------------------------
# risk–coverage: curve, AURC, E-AURC, AUGRC, risk at coverage


def _risk_curve(r: RankedScores, ties: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _check_ties(ties)
    k = r.block_end if ties == "midrank" else np.arange(1, r.n + 1)
    return k / r.n, r.errors_before[k] / k, r.conf[k - 1]


def selective_risk_curve(
    conf: np.ndarray, correct: np.ndarray, *, ties: Ties = "midrank"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Risk–coverage curve ``(coverage, risk, threshold)``, each (P,) float64, coverage increasing.

    ``"midrank"``: one point per distinct threshold t: coverage #{κ ≥ t}/n, risk = error rate among them.
    ``"reference"``: one point per prefix k of the stable order: (k/n, errors among first k / k, κ_(k)).
    """
    return _risk_curve(rank_scores(conf, correct), ties)


@dataclass(frozen=True)
class RiskCoveragePoints:
    """Points of the tie-aware risk–coverage curve, each (P,), coverage increasing.

    ``accepted``: int64 k, the samples accepted (a tie-block end, so the point is one threshold);
    ``coverage``: k/n; ``risk``: errors among the k most confident / k, exact (no interpolation);
    ``threshold``: float64 κ of the k-th most confident sample (accept κ ≥ threshold).
    """

    accepted: np.ndarray
    coverage: np.ndarray
    risk: np.ndarray
    threshold: np.ndarray


def _thin(coverage: np.ndarray, max_points: int) -> np.ndarray:
    """Indices into the increasing ``coverage: (B,)`` of at most ``max_points`` points: for each of the
    ``max_points`` evenly spaced targets j/(max_points − 1) the first point at or above it (so the first and
    the last point are always kept), without repeats."""
    if not (isinstance(max_points, int | np.integer) and max_points >= 2):
        raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
    if coverage.size <= max_points:
        return np.arange(coverage.size)
    targets = np.linspace(0.0, 1.0, int(max_points))
    return np.unique(np.minimum(np.searchsorted(coverage, targets, side="left"), coverage.size - 1))


def _risk_coverage_points(r: RankedScores, max_points: int, kappa: np.ndarray) -> RiskCoveragePoints:
    k = r.block_end
    coverage = k / r.n
    keep = _thin(coverage, max_points)
    k = k[keep]
    return RiskCoveragePoints(k, coverage[keep], r.errors_before[k] / k, kappa[k - 1])


def risk_coverage_points(
    conf: np.ndarray, correct: np.ndarray, max_points: int = CURVE_POINTS, *, values: np.ndarray | None = None
) -> RiskCoveragePoints:
    """At most ``max_points`` (≥ 2) points of the tie-aware risk–coverage curve of ``conf: (N,)`` /
    ``correct: (N,) bool`` (:func:`selective_risk_curve` with ``ties="midrank"``), as stored in the
    ``selective_curves`` table.

    The curve has one point per distinct threshold (a tie-block end k: coverage k/n, risk = errors among the k
    most confident / k). When it has more than ``max_points`` points, it is thinned to the first point at or
    above each of ``max_points`` evenly spaced coverages j/(max_points − 1), repeats dropped: the first and
    last points (coverage 1, risk = error rate) are always kept, and every kept point is an exact curve point.
    ``values: (N,)``: the κ values reported as ``threshold`` when ``conf`` is a finer ranking key of them (as in
    :func:`summarize`); default ``conf``.
    """
    r = rank_scores(conf, correct)
    kappa = r.conf if values is None else _check_inputs(values, r.correct)[0][r.order]
    return _risk_coverage_points(r, max_points, kappa)


def _aurc(r: RankedScores, ties: str) -> float:
    _check_ties(ties)
    if ties == "reference":
        return float(np.mean(r.errors_before[1:] / np.arange(1, r.n + 1)))
    return float(np.mean(r.expected_risk))


def aurc(conf: np.ndarray, correct: np.ndarray, *, ties: Ties = "midrank") -> float:
    """Area under the risk–coverage curve as the mean selective risk (1/n)·Σ_k R_k, a fraction in [0, 1].

    ``"reference"``: R_k = errors among the first k of the stable order / k (the paper's AURC, ``aurc_ref``).
    ``"midrank"`` (default): inside a tie block R_k is its expectation over random orders of the block.
    """
    return _aurc(rank_scores(conf, correct), ties)


def _aurc_optimal(n: int, m: int, exact: bool) -> float:
    r = m / n
    if exact:
        from scipy.special import digamma  # imported here: scipy costs ~0.2 s and most callers never need it

        # AURC of the perfect ranking: m/n − ((n−m)/n)·(H_n − H_{n−m}), H_k = digamma(k+1) + Euler γ
        return r - (n - m) / n * float(digamma(n + 1) - digamma(n - m + 1))
    return r + (1.0 - r) * math.log1p(-r)


def _eaurc(r: RankedScores, ties: str, exact: bool) -> float:
    if r.m == r.n:
        warnings.warn("eaurc: every sample is wrong (error rate 1); returning NaN", RuntimeWarning, stacklevel=3)
        return math.nan
    return _aurc(r, ties) - _aurc_optimal(r.n, r.m, exact)


def eaurc(conf: np.ndarray, correct: np.ndarray, *, ties: Ties = "midrank") -> float:
    """Excess AURC over the continuous optimum r + (1 − r)·ln(1 − r), r = error rate (Geifman et al.).

    A fraction; NaN with a warning when r = 1. A perfect ranking scores ≈ +O(1/n), see :func:`eaurc_exact`.
    """
    return _eaurc(rank_scores(conf, correct), ties, exact=False)


def eaurc_exact(conf: np.ndarray, correct: np.ndarray, *, ties: Ties = "midrank") -> float:
    """Excess AURC over the exact discrete optimum m/n − ((n−m)/n)·(H_n − H_{n−m}); perfect ranking → 0."""
    return _eaurc(rank_scores(conf, correct), ties, exact=True)


def _augrc(r: RankedScores, reference: str | None) -> float:
    if reference in (None, "fd-shifts"):
        k = np.concatenate(([0], r.block_end))
        return float(np.trapezoid(r.errors_before[k] / r.n, k / r.n))
    if reference == "torch-uncertainty":
        if r.n < 2:
            return math.nan
        k = np.arange(1, r.n + 1)
        return float(np.trapezoid(r.errors_before[1:] / r.n, k / r.n)) / (1.0 - 1.0 / r.n)
    raise ValueError(f"reference must be None, 'fd-shifts' or 'torch-uncertainty', got {reference!r}")


def augrc(
    conf: np.ndarray,
    correct: np.ndarray,
    *,
    reference: Literal["fd-shifts", "torch-uncertainty"] | None = None,
) -> float:
    """Area under the generalized-risk curve GR(c) = P(accepted ∧ wrong) (Traub et al. 2024), a fraction.

    Default (= ``"fd-shifts"``): points at distinct thresholds (#{κ ≥ t}/n, errors among them/n) plus (0, 0),
    trapezoid rule (fd-shifts prints it ×1000). ``"torch-uncertainty"``: per-prefix points k/n of the stable
    order, trapezoid from 1/n to 1, divided by (1 − 1/n).
    """
    return _augrc(rank_scores(conf, correct), reference)


def _check_fraction(value: float, name: str, *, allow_zero: bool = False) -> None:
    is_number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not (is_number and (0.0 <= value <= 1.0 if allow_zero else 0.0 < value <= 1.0)):
        raise ValueError(f"{name} must be in {'[0' if allow_zero else '(0'}, 1], got {value!r}")


def _risk_at_coverage(r: RankedScores, coverage: float, ties: str) -> float:
    _check_ties(ties)
    _check_fraction(coverage, "coverage")
    k = max(1, math.ceil(coverage * r.n - 1e-9))
    errors = r.errors_before[k] if ties == "reference" else float(r.expected_errors(np.array([k]))[0])
    return float(errors) / k


def risk_at_coverage(conf: np.ndarray, correct: np.ndarray, coverage: float = 0.95, *, ties: Ties = "midrank") -> float:
    """Selective risk R_k at k = ⌈coverage·n⌉ (torch-uncertainty ``RiskAtxCov``), a fraction.

    ``"midrank"``: expected over random orders inside the tie block containing position k.
    """
    return _risk_at_coverage(rank_scores(conf, correct), coverage, ties)


# --------------------------------------------------------------------------------------------------
# SAC: coverage at a selective-accuracy target


def _first_bad(bad: np.ndarray, k: np.ndarray, after: int) -> int | None:
    """Index into ``k`` of the first True of ``bad`` with k > after, or None."""
    hits = np.flatnonzero(bad & (k > after))
    return int(hits[0]) if hits.size else None


def _coverage_at_accuracy(r: RankedScores, accuracy: float, forgive: int, semantics: str, reference: bool) -> float:
    _check_fraction(accuracy, "accuracy", allow_zero=True)
    if semantics not in _SEMANTICS:
        raise ValueError(f"semantics must be one of {sorted(_SEMANTICS)}, got {semantics!r}")
    if not (isinstance(forgive, int | np.integer) and forgive >= 0):
        raise ValueError(f"forgive must be a non-negative integer, got {forgive!r}")
    sem = _SEMANTICS[semantics]
    k = np.arange(1, r.n + 1) if reference else r.block_end
    acc = (k - r.errors_before[k]) / k
    bad = acc < accuracy
    if sem == "max":
        ok = np.flatnonzero(~bad)
        return float(k[ok[-1]]) / r.n if ok.size else math.nan
    if reference:
        # the paper's code: argmax over the violation flags (0 when there is none), denominator n + 1
        strict = int(np.argmax(bad)) if bad.any() else 0
        tail = bad[forgive:]
        idx = forgive + (int(np.argmax(tail)) if tail.any() else 0)
        return (idx if idx > forgive else strict) / (r.n + 1)
    start = r.block_start
    first = _first_bad(bad, k, 0)
    strict = 1.0 if first is None else float(start[first]) / r.n
    if forgive == 0:
        return strict
    late = _first_bad(bad, k, forgive)
    if late is None:
        return 1.0
    return float(start[late]) / r.n if start[late] > forgive else strict


def coverage_at_accuracy(
    conf: np.ndarray,
    correct: np.ndarray,
    accuracy: float = 0.99,
    forgive: int = 200,
    semantics: Literal["first", "first_violation", "max", "max_coverage"] = "first",
    reference: bool = False,
) -> float:
    """SAC: coverage (fraction) at which selective accuracy meets ``accuracy`` (a fraction, e.g. 0.99).

    ``semantics="first"`` (alias ``"first_violation"``): coverage just before the first prefix whose
    cumulative accuracy drops below the target; prefixes of length ≤ ``forgive`` are not checked if the first
    checked violation comes after position ``forgive`` (the paper's non-strict rule; ``forgive=0`` is
    strict). Checked only at tie-block ends, denominator n, 1.0 if no checked prefix violates.
    ``semantics="max"`` (alias ``"max_coverage"``): max k/n over tie-block ends with cumulative accuracy
    ≥ target; NaN if none; ``forgive`` is ignored.
    ``reference=True``: per-sample prefixes of the stable order; for ``"first"`` the paper's denominator
    n + 1 and 0 when never violated; for ``"max"`` torch-uncertainty's ``CovAtxRisk``.
    """
    return _coverage_at_accuracy(rank_scores(conf, correct), accuracy, forgive, semantics, reference)


# --------------------------------------------------------------------------------------------------
# calibration: ECE, MCE, adaptive ECE


def _check_probability(c: np.ndarray) -> None:
    if c.min() < 0.0 or c.max() > 1.0:
        raise ValueError(
            f"conf must be probabilities in [0, 1] for calibration metrics, found [{c.min():.6g}, {c.max():.6g}]"
        )


def _edges_below(values: np.ndarray, edges: np.ndarray, side: str) -> np.ndarray:
    """(N,) integers: ``np.searchsorted(edges, values, side)`` for sorted ``edges: (E,)`` and ``values: (N,)``.

    With a few edges (≤ 64, the calibration bins) this is one vectorised comparison pass per edge, about 6×
    faster than searchsorted's per-value binary search at 16 edges.
    """
    if edges.size > _FEW_EDGES:
        return np.searchsorted(edges, values, side=side)
    below = np.zeros(values.shape, dtype=np.int8)
    for edge in edges:
        below += (values > edge) if side == "left" else (values >= edge)
    return below


def _bin_sums(
    conf: np.ndarray, correct: np.ndarray, j: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin (count, Σκ, number correct), each (n_bins,), over samples with bin index j ≥ 0 (j = −1: in no
    bin)."""
    slot = j.astype(np.intp) + 1  # slot 0 collects the samples that are in no bin
    by_outcome = np.bincount(2 * slot + correct, minlength=2 * (n_bins + 1))  # (slot, wrong/correct) counts
    n_correct = by_outcome[3::2]
    count = by_outcome[2::2] + n_correct
    return count, np.bincount(slot, weights=conf, minlength=n_bins + 1)[1:], n_correct


def _bin_gaps(conf: np.ndarray, correct: np.ndarray, j: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per bin (count, |Σκ − Σcorrect|) over samples with bin index j ≥ 0 (j = −1: in no bin)."""
    count, conf_sum, n_correct = _bin_sums(conf, correct, j, n_bins)
    return count, np.abs(conf_sum - n_correct)


def _ece_from_bins(count: np.ndarray, gap: np.ndarray, n: int, norm: str) -> float:
    if norm == "l1":
        return float(gap.sum()) / n
    nonempty = count > 0
    if not nonempty.any():
        warnings.warn("mce: every bin is empty; returning NaN", RuntimeWarning, stacklevel=3)
        return math.nan
    return float(np.max(gap[nonempty] / count[nonempty]))


def _equal_width_bins(conf: np.ndarray, bins: int, convention: str) -> np.ndarray:
    if not (isinstance(bins, int | np.integer) and bins >= 1):
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if convention not in BIN_CONVENTIONS:
        raise ValueError(f"convention must be one of {BIN_CONVENTIONS}, got {convention!r}")
    edges = np.linspace(0, 1, bins + 1, dtype=np.float32)
    c32 = conf.astype(np.float32)
    if convention == "(lo,hi]":
        return _edges_below(c32, edges, "left") - 1  # κ = 0 -> −1: in no bin, still counted in n
    return np.minimum(_edges_below(c32, edges, "right") - 1, bins - 1)  # κ = 1 joins the last bin


@dataclass(frozen=True)
class ReliabilityTable:
    """The equal-width bins behind :func:`ece` / :func:`mce`, as stored in the ``reliability_bins`` table.

    ``lo``, ``hi``: (M,) float64, the float32 edges j/M, (j+1)/M (as compared with κ); ``count``: (M,) int64
    samples in each bin; ``conf_sum``: (M,) float64 Σκ; ``n_correct``: (M,) int64; ``n``: every sample, also
    those in no bin (κ = 0 under ``(lo,hi]``); ``convention``: ``(lo,hi]`` or ``[lo,hi)``.
    """

    lo: np.ndarray
    hi: np.ndarray
    count: np.ndarray
    conf_sum: np.ndarray
    n_correct: np.ndarray
    n: int
    convention: str

    @property
    def mean_conf(self) -> np.ndarray:
        """(M,) mean κ per bin; NaN for an empty bin."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.conf_sum / self.count, np.nan)

    @property
    def accuracy(self) -> np.ndarray:
        """(M,) fraction correct per bin; NaN for an empty bin."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.n_correct / self.count, np.nan)

    @property
    def ece(self) -> float:
        """Σ_j |Σκ_j − correct_j|/n: exactly :func:`ece` (and the ``ece15`` column) of the same samples."""
        return _ece_from_bins(self.count, np.abs(self.conf_sum - self.n_correct), self.n, "l1")

    @property
    def mce(self) -> float:
        """max_j |mean κ_j − acc_j| over non-empty bins: exactly :func:`mce` (NaN with a warning if all empty)."""
        return _ece_from_bins(self.count, np.abs(self.conf_sum - self.n_correct), self.n, "max")


def _reliability(kappa: np.ndarray, correct: np.ndarray, bins: int, convention: str) -> ReliabilityTable:
    count, conf_sum, n_correct = _bin_sums(kappa, correct, _equal_width_bins(kappa, bins, convention), bins)
    edges = np.linspace(0, 1, bins + 1, dtype=np.float32).astype(np.float64)
    return ReliabilityTable(edges[:-1], edges[1:], count, conf_sum, n_correct, int(kappa.size), convention)


def reliability_table(
    conf: np.ndarray,
    correct: np.ndarray,
    bins: int = 15,
    *,
    convention: Literal["(lo,hi]", "[lo,hi)"] = "(lo,hi]",
) -> ReliabilityTable:
    """The :class:`ReliabilityTable` of probabilities ``conf: (N,)`` and ``correct: (N,) bool``: ``bins``
    equal-width bins with the binning of :func:`ece` (float32 edges, ``convention``); its ``.ece`` equals
    ``ece(conf, correct, bins, convention=convention)``."""
    c, y = _check_inputs(conf, correct)
    _check_probability(c)
    return _reliability(c, y, bins, convention)


def _calibration(conf, correct, bins, convention, norm) -> float:
    c, y = _check_inputs(conf, correct)
    _check_probability(c)
    count, gap = _bin_gaps(c, y, _equal_width_bins(c, bins, convention), bins)
    return _ece_from_bins(count, gap, c.size, norm)


def ece(
    conf: np.ndarray,
    correct: np.ndarray,
    bins: int = 15,
    *,
    convention: Literal["(lo,hi]", "[lo,hi)"] = "(lo,hi]",
) -> float:
    """Expected calibration error Σ_j |mean κ_j − acc_j|·|B_j|/n over ``bins`` equal-width bins, a fraction.

    ``conf`` must be probabilities. Bin edges are float32 ``linspace(0, 1, bins+1)`` compared with κ cast to
    float32 (the reference). ``"(lo,hi]"`` (default, reference): κ = 0 is in no bin but counts in n;
    ``"[lo,hi)"``: κ = 1 joins the last bin.
    """
    return _calibration(conf, correct, bins, convention, "l1")


def mce(
    conf: np.ndarray,
    correct: np.ndarray,
    bins: int = 15,
    *,
    convention: Literal["(lo,hi]", "[lo,hi)"] = "(lo,hi]",
) -> float:
    """Maximum calibration error max_j |mean κ_j − acc_j| over non-empty equal-width bins (as :func:`ece`)."""
    return _calibration(conf, correct, bins, convention, "max")


def adaptive_bin_edges(conf: np.ndarray, bins: int = 15, *, reference: bool = False) -> np.ndarray:
    """Edges of the adaptive (equal-mass) bins of ``conf: (N,)``; bins are (e_j, e_{j+1}].

    ``reference=True``: κ sorted ascending at indices 0, s, 2s, … with s = ⌊n/(bins − 1)⌋, first edge
    replaced by 0 and last by max κ (15 edges = 14 bins at n = 50,000 and bins = 15). Default: ``bins + 1``
    edges at the order statistics κ_(⌈j·n/bins⌉) (0 first, max κ last); tied values stay in one bin, so
    some bins can be empty.
    """
    c = np.sort(_check_inputs(conf, np.zeros(np.shape(conf), dtype=bool))[0])
    return _adaptive_edges(c, bins, reference)


def _adaptive_edges(sorted_conf: np.ndarray, bins: int, reference: bool) -> np.ndarray:
    n = sorted_conf.size
    if not (isinstance(bins, int | np.integer) and bins >= 2):
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if reference:
        step = n // (bins - 1)
        if step == 0:
            raise ValueError(f"adaptive_ece(reference=True) needs n >= bins - 1 = {bins - 1} samples, got {n}")
        edges = sorted_conf[::step].copy()
    else:
        # edge j is the largest κ of the first ⌈j·n/bins⌉ samples: bins (e_j, e_{j+1}] hold ≈ n/bins each
        edges = sorted_conf[np.maximum(-(-np.arange(bins + 1) * n // bins) - 1, 0)].copy()
    edges[0] = min(0.0, sorted_conf[0])
    edges[-1] = sorted_conf[-1]
    return edges


def _adaptive(conf, correct, bins, reference, norm) -> float:
    c, y = _check_inputs(conf, correct)
    _check_probability(c)
    edges = _adaptive_edges(np.sort(c), bins, reference)
    count, gap = _bin_gaps(c, y, _edges_below(c, edges, "left") - 1, edges.size - 1)
    return _ece_from_bins(count, gap, c.size, norm)


def adaptive_ece(conf: np.ndarray, correct: np.ndarray, bins: int = 15, *, reference: bool = False) -> float:
    """ECE over adaptive equal-mass bins (:func:`adaptive_bin_edges`), a fraction; ``conf`` are probabilities.

    ``reference=True`` is the paper's A-ECE (14 bins when asked for 15); the default uses exactly ``bins``.
    """
    return _adaptive(conf, correct, bins, reference, "l1")


def adaptive_mce(conf: np.ndarray, correct: np.ndarray, bins: int = 15, *, reference: bool = False) -> float:
    """MCE over the adaptive bins of :func:`adaptive_ece`."""
    return _adaptive(conf, correct, bins, reference, "max")


# --------------------------------------------------------------------------------------------------
# confidence statistics, NLL and Brier


def _confidence_stats_sorted(ascending: np.ndarray) -> dict[str, float]:
    n = ascending.size
    total = float(ascending.sum())
    mean = total / n
    shift = 1e-7 - min(0.0, float(ascending[0]))  # shift so min κ = 0 if any κ < 0, then add 1e-7
    shifted_total = total + n * shift
    # Σ_i (2i − n − 1)·(κ_(i) + shift) with Σ_i (2i − n − 1) = 0, so the shift only enters the denominator
    weighted = 2.0 * _dot(np.arange(1, n + 1, dtype=np.float64), ascending) - (n + 1) * total
    centred = ascending - mean
    return {
        "conf_mean": mean,
        "conf_median": float(ascending[(n - 1) // 2]),
        "conf_variance": _dot(centred, centred) / (n - 1) if n > 1 else math.nan,
        "conf_gini": weighted / (n * shifted_total),
    }


def confidence_stats(conf: np.ndarray) -> dict[str, float]:
    """Mean, median (lower middle for even n, as torch), unbiased variance and Gini of ``conf: (N,)``.

    Gini (reference): shift so min κ = 0 if any κ < 0, add 1e-7, sort ascending,
    G = Σ_i (2i − n − 1)·κ_(i) / (n·Σκ). The input is never modified.
    """
    c = _check_inputs(conf, np.zeros(np.shape(conf), dtype=bool))[0]
    return _confidence_stats_sorted(np.sort(c))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of softmax(``logits``/T); ``logits: (N, C)``, ``labels: (N,)``."""
    return float(np.mean(softmax_stats(logits, labels, beta=_beta(temperature)).nll))


def brier(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean multi-class Brier score Σ_j (p_j − 1[j = y])² of softmax(``logits``/T), in [0, 2]."""
    return float(np.mean(softmax_stats(logits, labels, beta=_beta(temperature)).brier))


def _beta(temperature: float) -> float:
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    return 1.0 / temperature


# --------------------------------------------------------------------------------------------------
# the bundle


@dataclass(frozen=True)
class SelectiveSummary:
    """What :func:`selective_summary` computes from one sort: ``metrics`` (:func:`summarize`'s columns), the
    stored risk–coverage ``curve`` (:func:`risk_coverage_points`) and the ``reliability`` bins behind ECE/MCE
    (:func:`reliability_table`; None unless κ is a probability)."""

    metrics: dict[str, float]
    curve: RiskCoveragePoints
    reliability: ReliabilityTable | None


def summarize(
    conf: np.ndarray,
    correct: np.ndarray,
    *,
    probability: bool,
    values: np.ndarray | None = None,
    order_hint: np.ndarray | None = None,
    bins: int = 15,
    convention: Literal["(lo,hi]", "[lo,hi)"] = "(lo,hi]",
) -> dict[str, float]:
    """Every flat metric of one (model, κ) from one sort: ``{column: value}`` (the selective_metrics columns).

    ``conf: (N,)`` ranks the samples; ``values: (N,)`` (optional) are the κ values themselves when ``conf``
    is a finer ranking key of them (log-MSP for MSP, which does not saturate at 1.0): they must be a
    non-decreasing function of ``conf`` and feed the calibration columns and confidence statistics.
    ``order_hint``: a candidate sort permutation of ``conf``, see :func:`rank_scores`.
    ``probability``: κ is a probability (MSP), so the calibration columns (ECE, MCE, A-ECE) are computed;
    otherwise they are NaN. Ranking columns of single-class input are NaN (with a warning).
    """
    return _summarize(conf, correct, probability, values, order_hint, bins, convention, None)[0]


def selective_summary(
    conf: np.ndarray,
    correct: np.ndarray,
    *,
    probability: bool,
    values: np.ndarray | None = None,
    order_hint: np.ndarray | None = None,
    bins: int = 15,
    convention: Literal["(lo,hi]", "[lo,hi)"] = "(lo,hi]",
    max_points: int = CURVE_POINTS,
) -> SelectiveSummary:
    """:func:`summarize` plus the tables a report draws, from the same sort and the same conventions: the
    tie-aware risk–coverage curve ranked by ``conf`` (thinned to ``max_points``, :func:`risk_coverage_points`,
    thresholds in κ = ``values`` when given) and, when ``probability``, the equal-width ``bins`` of ECE/MCE in
    ``convention`` (:class:`ReliabilityTable`, whose ``.ece`` is ``metrics["ece<bins>"]``)."""
    metrics, curve, table = _summarize(conf, correct, probability, values, order_hint, bins, convention, max_points)
    return SelectiveSummary(metrics, curve, table)


def _summarize(
    conf: np.ndarray,
    correct: np.ndarray,
    probability: bool,
    values: np.ndarray | None,
    order_hint: np.ndarray | None,
    bins: int,
    convention: str,
    max_points: int | None,
) -> tuple[dict[str, float], RiskCoveragePoints | None, ReliabilityTable | None]:
    r = rank_scores(conf, correct, order_hint)
    n = r.n
    if values is None:
        kappa = r.conf
    else:
        v = _check_inputs(values, r.correct)[0]
        kappa = v[r.order]
        # allow last-bit wobble of a monotone map computed in floating point (e.g. exp of log-MSP)
        if np.any(kappa[1:] - kappa[:-1] > 1e-12 * np.maximum(1.0, np.abs(kappa[:-1]))):
            raise ValueError("values must be a non-decreasing function of conf (the same ranking)")
    curve = None if max_points is None else _risk_coverage_points(r, max_points, kappa)
    table = None
    out: dict[str, float] = {"n": n, "accuracy": (n - r.m) / n}
    out["auroc"] = _auroc(r, "midrank")
    out["auroc_ref"] = _auroc(r, "reference")
    out["gamma_ref"] = _gamma(r, "reference")
    out["gamma_gk"] = _gamma(r, "goodman_kruskal")
    out["aurc"] = _aurc(r, "midrank")
    out["aurc_ref"] = _aurc(r, "reference")
    out["eaurc"] = out["eaurc_exact"] = math.nan
    if r.m < n:
        out["eaurc"] = out["aurc"] - _aurc_optimal(n, r.m, exact=False)
        out["eaurc_exact"] = out["aurc"] - _aurc_optimal(n, r.m, exact=True)
    out["augrc"] = _augrc(r, None)
    for a in (95, 99):
        out[f"sac{a}"] = _coverage_at_accuracy(r, a / 100, 200, "first", False)
        out[f"sac{a}_strict"] = _coverage_at_accuracy(r, a / 100, 0, "first", False)
        out[f"sac{a}_max"] = _coverage_at_accuracy(r, a / 100, 0, "max", False)
    for c in (50, 80, 90, 95):
        out[f"risk_at_{c}"] = _risk_at_coverage(r, c / 100, "midrank")
    ascending = r.ascending if values is None else np.ascontiguousarray(kappa[::-1])
    if probability:
        _check_probability(ascending)
        table = _reliability(kappa, r.correct, bins, convention)
        out[f"ece{bins}"] = table.ece
        out[f"mce{bins}"] = table.mce
        edges = _adaptive_edges(ascending, bins, reference=False)
        count, gap = _bin_gaps(kappa, r.correct, _edges_below(kappa, edges, "left") - 1, bins)
        out["aece"] = _ece_from_bins(count, gap, n, "l1")
        out["aece_ref"] = math.nan
        if n >= bins - 1:
            edges = _adaptive_edges(ascending, bins, reference=True)
            count, gap = _bin_gaps(kappa, r.correct, _edges_below(kappa, edges, "left") - 1, edges.size - 1)
            out["aece_ref"] = _ece_from_bins(count, gap, n, "l1")
    else:
        out[f"ece{bins}"] = out[f"mce{bins}"] = out["aece"] = out["aece_ref"] = math.nan
    out.update(_confidence_stats_sorted(ascending))
    return out, curve, table
