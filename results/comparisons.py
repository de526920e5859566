"""The seed papers' cross-model comparisons: the statistics SQL cannot do well, over the canned queries' frames.

Each comparison (:data:`COMPARISONS`, docs/comparisons.md) is a canned query in ``results/queries/`` (its rows: the
figure's data, one row per point, box, pair or line vertex) plus, where the paper makes a statistical claim, a
function here that turns those rows into one statistics row per group:

- :func:`correlations` (``metric_vs_accuracy``): Spearman's ρ and Kendall's τ-b of a metric against accuracy (or
  AUROC) per origin, each with a seeded percentile-bootstrap interval;
- :func:`paired_summaries` (``regime_pairs``): the paired differences of a regime (with − without) per origin,
  regime and metric: mean and median Δ, a bootstrap interval of the mean, the exact two-sided sign test;
- :func:`ts_summaries` (``ts_effect``): temperature scaling's change of each metric (the paired summary of
  after − before) and how it reorders the models (Kendall's τ-b of the ranking before against after, rank moves);
- :func:`detector_summaries` (``detectors``): each κ (a feature-space detector ``det_<name>`` or another confidence
  function) against MSP over the models that have both: medians of its mean and hardest-level OOD AUROC, the paired
  summary of its gain over MSP at the hardest level (the fraction of models where it beats MSP there) and medians
  of its selective AUROC and AURC.

Conventions. Ranks are average ranks (ties share their mean rank). Kendall's τ-b is Σ sign(xᵢ−xⱼ)·sign(yᵢ−yⱼ)
over the pairs divided by √(pairs untied in x · pairs untied in y). A bootstrap draws ``n_boot`` resamples of the
n units (models, or pairs) with replacement from ``numpy.random.default_rng(seed).integers(0, n, (n_boot, n))``;
copies of one unit in a resample are tied with each other. The interval is the ``(1 ± confidence) / 2``
percentiles (``numpy.percentile``, linear interpolation) of the replicates where the statistic is defined
(``n_valid`` of them; a resample of one distinct value has no correlation). Every result records ``n_boot``,
``seed`` and ``confidence``, so it can be reproduced exactly. A statistic that is undefined (fewer than 2 units,
a constant variable) is NaN, never 0.

numpy, scipy and polars only (the frames are the canned queries' results): no DuckDB, torch, ray or pipelines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
from scipy.stats import rankdata

DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 0
DEFAULT_CONFIDENCE = 0.95
_CHUNK = 256  # bootstrap replicates per matrix product in kendall_tau_b_bootstrap

# The regimes of regime_groups / regime_pairs / hsc_gain_by_regime, in the queries' order ('all' and 'plain' are
# groups, the others regimes with a flag or a pre-training set; docs/comparisons.md).
REGIMES = ("all", "plain", "distilled", "in21k", "clip", "semi_supervised", "self_supervised", "adversarial")
# The per-model metrics of the population the queries read (MSP, no TS, and the C-OOD mean over levels).
MODEL_METRICS = ("accuracy", "auroc", "aurc", "ece15", "cood_mean_auroc")
# ts_effect's metrics (before and after temperature scaling).
TS_METRICS = ("accuracy", "auroc", "aurc", "eaurc", "ece15", "sac99")
HSC_RULES = ("climbing", "max_coverage", "jumping")
ORIGINS = ("ours", "published")


# ---- the statistics --------------------------------------------------------------------------------------------


def _pair_arrays(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-d arrays of one length, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite (drop missing values first)")
    return x, y


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` (B, n) with the same row of ``b``; NaN where a row is constant."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=-1) / np.where(denominator > 0, denominator, 1.0), np.nan)


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's ρ of ``x`` and ``y`` ((n,) each): the Pearson correlation of their average ranks. NaN for n < 2
    or a constant variable."""
    x, y = _pair_arrays(x, y)
    if x.size < 2:
        return math.nan
    return float(_pearson_rows(rankdata(x), rankdata(y)))


def _sign_matrix(values: np.ndarray) -> np.ndarray:
    return np.sign(values[:, None] - values[None, :])


def _untied_pairs(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σᵢⱼ wᵢwⱼ·[valuesᵢ ≠ valuesⱼ] for each row w of ``weights`` (B, n): (Σw)² minus the squared weight of each
    group of equal values."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    groups = np.add.reduceat(weights[:, order], starts, axis=1)
    return weights.sum(axis=1) ** 2 - (groups**2).sum(axis=1)


def _kendall_forms(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """τ-b of the samples that hold unit i ``weights[b, i]`` times, one per row of ``weights`` (B, n).

    With S = sign(xᵢ − xⱼ) and T = sign(yᵢ − yⱼ) (n, n), a resample's sums over its ordered pairs are quadratic
    forms of its multiplicities w: Σ S·T = wᵀ(S∘T)w, pairs untied in x: wᵀ|S|w (:func:`_untied_pairs`), in y:
    wᵀ|T|w (copies of one unit fall on the zero diagonal: tied in both). τ-b = wᵀ(S∘T)w / √(wᵀ|S|w · wᵀ|T|w);
    NaN where x or y is constant.
    """
    st = _sign_matrix(x) * _sign_matrix(y)
    concordance = np.empty(weights.shape[0])
    for start in range(0, weights.shape[0], _CHUNK):
        w = weights[start : start + _CHUNK]
        concordance[start : start + _CHUNK] = ((w @ st) * w).sum(axis=1)
    untied = _untied_pairs(x, weights) * _untied_pairs(y, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(untied > 0, concordance / np.sqrt(np.where(untied > 0, untied, 1.0)), np.nan)


def kendall_tau_b(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's τ-b of ``x`` and ``y`` ((n,) each), ties counted as in the module doc. NaN for n < 2 or a constant
    variable. O(n²) time and memory (n up to a few thousand models)."""
    x, y = _pair_arrays(x, y)
    if x.size < 2:
        return math.nan
    return float(_kendall_forms(x, y, np.ones((1, x.size)))[0])


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """The resamples of every bootstrap here: ``default_rng(seed).integers(0, n, (n_boot, n))`` (n_boot, n)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    return np.random.default_rng(seed).integers(0, n, (n_boot, n))


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float, float, int]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return math.nan, math.nan, 0
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high), int(finite.size)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


@dataclass(frozen=True)
class Correlation:
    """Rank correlations of n paired values with their bootstrap intervals (module doc).

    spearman / kendall (τ-b) in [-1, 1] or NaN; *_low / *_high: the ``confidence`` percentile interval over the
    ``n_valid`` of ``n_boot`` resamples (drawn with ``seed``) where both are defined.
    """

    n: int
    spearman: float
    spearman_low: float
    spearman_high: float
    kendall: float
    kendall_low: float
    kendall_high: float
    confidence: float
    n_boot: int
    n_valid: int
    seed: int

    def row(self) -> dict[str, float | int]:
        """The fields as one statistics row."""
        return asdict(self)


def correlation(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Correlation:
    """Spearman's ρ and Kendall's τ-b of ``x`` and ``y`` ((n,) each, finite) with seeded percentile-bootstrap
    intervals over the same resamples (:func:`bootstrap_indices`). Intervals are NaN for n < 2."""
    x, y = _pair_arrays(x, y)
    _check_confidence(confidence)
    n = x.size
    if n < 2:
        return Correlation(n, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, confidence, n_boot, 0, seed)
    index = bootstrap_indices(n, n_boot, seed)
    rho = _pearson_rows(rankdata(x[index], axis=1), rankdata(y[index], axis=1))
    weights = np.zeros((n_boot, n))
    np.add.at(weights, (np.arange(n_boot)[:, None], index), 1.0)
    tau = _kendall_forms(x, y, weights)
    defined = np.isfinite(rho) & np.isfinite(tau)
    rho_low, rho_high, n_valid = _interval(np.where(defined, rho, np.nan), confidence)
    tau_low, tau_high, _ = _interval(np.where(defined, tau, np.nan), confidence)
    return Correlation(n, spearman(x, y), rho_low, rho_high, kendall_tau_b(x, y), tau_low, tau_high, confidence,
                       n_boot, n_valid, seed)


def sign_test(n_positive: int, n_negative: int) -> float:
    """Exact two-sided sign test p-value of ``n_positive`` against ``n_negative`` non-zero differences under
    P(+) = ½: min(1, 2·Σ_{k ≤ min} C(m, k) / 2^m), m = n_positive + n_negative; NaN when m = 0."""
    m = n_positive + n_negative
    if m == 0:
        return math.nan
    tail = sum(math.comb(m, k) for k in range(min(n_positive, n_negative) + 1))
    return min(1.0, 2 * tail / 2**m)  # integer true division: exact, no overflow past 2^1024


@dataclass(frozen=True)
class PairedDifference:
    """Summary of n paired differences d = with − without (or after − before).

    mean / median of d; mean_low / mean_high: the ``confidence`` percentile-bootstrap interval of the mean
    (``n_boot`` resamples of the pairs drawn with ``seed``); n_positive / n_negative / n_zero: how many d are
    > 0, < 0, = 0; sign_test_p: :func:`sign_test` of the non-zero ones (NaN when none is).
    """

    n_pairs: int
    mean: float
    median: float
    mean_low: float
    mean_high: float
    n_positive: int
    n_negative: int
    n_zero: int
    sign_test_p: float
    confidence: float
    n_boot: int
    seed: int

    def row(self) -> dict[str, float | int]:
        """The fields as one statistics row."""
        return asdict(self)


def paired_difference(
    differences: Sequence[float] | np.ndarray,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> PairedDifference:
    """:class:`PairedDifference` of ``differences`` ((n,) finite; NaN statistics for n = 0)."""
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1 or not np.isfinite(d).all():
        raise ValueError("differences must be a 1-d array of finite values")
    _check_confidence(confidence)
    n = d.size
    positive, negative = int((d > 0).sum()), int((d < 0).sum())
    if n == 0:
        return PairedDifference(0, math.nan, math.nan, math.nan, math.nan, 0, 0, 0, math.nan, confidence, n_boot,
                                seed)
    low, high, _ = _interval(d[bootstrap_indices(n, n_boot, seed)].mean(axis=1), confidence)
    return PairedDifference(n, float(d.mean()), float(np.median(d)), low, high, positive, negative,
                            n - positive - negative, sign_test(positive, negative), confidence, n_boot, seed)


# ---- over the canned queries' frames -----------------------------------------------------------------------------


def _groups(frame: pl.DataFrame, keys: Sequence[str]) -> list[tuple[dict[str, object], pl.DataFrame]]:
    """(key values, rows) of each group of ``frame`` by ``keys``, in order of first appearance."""
    if frame.height == 0:
        return []
    return [(dict(zip(keys, key, strict=True)), group)
            for key, group in frame.group_by(list(keys), maintain_order=True)]


def _statistics_frame(rows: list[dict[str, object]], keys: Mapping[str, pl.DataType], *stats: type) -> pl.DataFrame:
    """``rows`` as a frame of the ``keys`` columns, then the fields of each dataclass of ``stats`` (int fields
    Int64, the others Float64); an empty frame of that schema when there are no rows."""
    schema = {**keys}
    for fields in stats:
        for name, kind in fields.__annotations__.items():
            schema[name] = pl.Int64() if kind == "int" else pl.Float64()
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def correlations(
    frame: pl.DataFrame,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> pl.DataFrame:
    """One row per (origin, x_metric, metric) of a ``metric_vs_accuracy`` frame: the key columns and the fields of
    :func:`correlation` of ``x_value`` against ``value`` (every group uses ``seed``)."""
    keys = ("origin", "x_metric", "metric")
    rows = []
    for key, group in _groups(frame, keys):
        result = correlation(group["x_value"].to_numpy(), group["value"].to_numpy(), n_boot=n_boot, seed=seed,
                             confidence=confidence)
        rows.append({**key, **result.row()})
    return _statistics_frame(rows, dict.fromkeys(keys, pl.String()), Correlation)


def paired_summaries(
    frame: pl.DataFrame,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> pl.DataFrame:
    """One row per (origin, regime, metric) of a ``regime_pairs`` frame: the key columns and the fields of
    :func:`paired_difference` of its ``difference`` column (one pair per architecture)."""
    keys = ("origin", "regime", "metric")
    rows = [
        {**key, **paired_difference(group["difference"].to_numpy(), n_boot=n_boot, seed=seed,
                                    confidence=confidence).row()}
        for key, group in _groups(frame.filter(pl.col("difference").is_not_null()), keys)
    ]
    return _statistics_frame(rows, dict.fromkeys(keys, pl.String()), PairedDifference)


@dataclass(frozen=True)
class RankChange:
    """How temperature scaling reorders n models on one metric: kendall (τ-b of the values before against after),
    its interval (as :class:`Correlation`), models_moved (rank_after ≠ rank_before) and max_move (largest
    |rank_after − rank_before|)."""

    kendall: float
    kendall_low: float
    kendall_high: float
    models_moved: int
    max_move: int


def ts_summaries(
    frame: pl.DataFrame,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> pl.DataFrame:
    """One row per (origin, metric) of a ``ts_effect`` frame: the key columns, :func:`paired_difference` of
    ``after − before`` and the :class:`RankChange` of the models' ranking."""
    keys = ("origin", "metric")
    rows = []
    for key, group in _groups(frame, keys):
        before, after = group["before"].to_numpy(), group["after"].to_numpy()
        change = paired_difference(after - before, n_boot=n_boot, seed=seed, confidence=confidence)
        reorder = correlation(before, after, n_boot=n_boot, seed=seed, confidence=confidence)
        moves = np.abs(group["rank_change"].to_numpy())
        ranks = RankChange(reorder.kendall, reorder.kendall_low, reorder.kendall_high, int((moves != 0).sum()),
                           int(moves.max()))
        rows.append({**key, **change.row(), **asdict(ranks)})
    return _statistics_frame(rows, dict.fromkeys(keys, pl.String()), PairedDifference, RankChange)


@dataclass(frozen=True)
class DetectorSummary:
    """One κ against MSP over the ``models`` (rows of ``detectors``) that have both on at least one level.

    median_* are medians over those models of: the κ's mean OOD AUROC over the paired levels (mean_auroc) and MSP's
    (msp_mean_auroc), the mean gain κ − MSP (mean_gain), the κ's and MSP's OOD AUROC at the model's hardest paired
    level (hardest_auroc, msp_hardest_auroc); beats_msp_hardest: the fraction of the models whose hardest-level gain
    is > 0. selective_models: the models with the κ's selective row (no TS, every sample), and the medians over them
    of its and MSP's selective AUROC and AURC (NaN when none has one).
    """

    models: int
    median_mean_auroc: float
    median_msp_mean_auroc: float
    median_mean_gain: float
    median_hardest_auroc: float
    median_msp_hardest_auroc: float
    beats_msp_hardest: float
    selective_models: int
    median_selective_auroc: float
    median_msp_selective_auroc: float
    median_selective_aurc: float
    median_msp_selective_aurc: float


def _median(series: pl.Series) -> float:
    """The median of the finite values of ``series``; NaN when it has none."""
    values = series.drop_nulls().cast(pl.Float64).to_numpy()
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else math.nan


def detector_summaries(
    frame: pl.DataFrame,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> pl.DataFrame:
    """One row per (origin, kappa) of a ``detectors`` frame (one row per model): the key columns, the
    :class:`DetectorSummary` and :func:`paired_difference` of ``hardest_gain`` (the κ's OOD AUROC minus MSP's at
    each model's hardest paired level), sorted by median_mean_auroc, best first."""
    keys = ("origin", "kappa")
    rows = []
    for key, group in _groups(frame, keys):
        hardest = group["hardest_gain"].drop_nulls().cast(pl.Float64).to_numpy()
        hardest = hardest[np.isfinite(hardest)]
        selective = group.filter(pl.col("selective_auroc").is_not_null() | pl.col("selective_aurc").is_not_null())
        summary = DetectorSummary(
            group.height, _median(group["mean_auroc"]), _median(group["msp_mean_auroc"]), _median(group["mean_gain"]),
            _median(group["hardest_auroc"]), _median(group["msp_hardest_auroc"]),
            float((hardest > 0).mean()) if hardest.size else math.nan, selective.height,
            _median(selective["selective_auroc"]), _median(selective["msp_selective_auroc"]),
            _median(selective["selective_aurc"]), _median(selective["msp_selective_aurc"]),
        )  # fmt: skip
        change = paired_difference(hardest, n_boot=n_boot, seed=seed, confidence=confidence)
        rows.append({**key, **asdict(summary), **change.row()})
    result = _statistics_frame(rows, dict.fromkeys(keys, pl.String()), DetectorSummary, PairedDifference)
    return result.sort(["origin", "median_mean_auroc", "kappa"], descending=[False, True, False], nulls_last=True)


# ---- the registry: what `uebench compare NAME` runs ---------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """How the report draws a comparison's rows (results/report_comparisons.py): ``kind`` (scatter, paired, rank,
    box, lines, bar), the columns on the axes, the colour and the facets, and the columns shown on hover."""

    kind: str
    x: str
    y: str
    color: str | None = None
    facet: tuple[str, ...] = ()
    hover: tuple[str, ...] = ()


Statistic = Callable[..., pl.DataFrame]


@dataclass(frozen=True)
class Comparison:
    """One of the papers' comparisons: ``query`` (the canned query of its rows), ``finding`` (the paper's claim it
    reproduces), ``statistic`` (rows -> statistics rows, or None), ``filters`` (CLI option -> the column it filters
    and the values it takes, None for any), ``figure``."""

    name: str
    query: str
    description: str
    finding: str
    figure: Figure
    statistic: Statistic | None = None
    filters: Mapping[str, tuple[str, tuple[str, ...] | None]] = field(default_factory=dict)


COMPARISONS: dict[str, Comparison] = {
    c.name: c
    for c in (
        Comparison(
            "metric_vs_accuracy", "metric_vs_accuracy",
            "each metric against accuracy (and AUROC) per model, Spearman and Kendall with bootstrap intervals",
            "accuracy and in-distribution ranking (AUROC) correlate with C-OOD detection (C-OOD paper)",
            Figure("scatter", "x_value", "value", color="family", facet=("x_metric", "metric"),
                   hover=("model", "pretraining")),
            correlations,
            {"metric": ("metric", ("auroc", "aurc", "ece15", "cood_mean_auroc")),
             "x": ("x_metric", ("accuracy", "auroc")), "family": ("family", None)},
        ),
        Comparison(
            "regime_pairs", "regime_pairs",
            "the same architecture with and without a training regime, paired (pairing rule: docs/comparisons.md)",
            "knowledge distillation improves C-OOD detection; CLIP, ImageNet-21k pre-training and distillation "
            "improve selective performance (C-OOD and HSC papers)",
            Figure("paired", "value_without", "value_with", color="regime", facet=("metric",),
                   hover=("arch", "models_with", "models_without")),
            paired_summaries,
            {"metric": ("metric", MODEL_METRICS), "regime": ("regime", REGIMES[2:])},
        ),
        Comparison(
            "regime_groups", "regime_groups",
            "each metric's distribution (quantiles) per training regime",
            "a subset of ViTs (in21k pre-trained) detects C-OOD better than any other model; distilled models do "
            "better than plain ones (C-OOD paper)",
            Figure("box", "regime", "median", color="origin", facet=("metric",), hover=("models", "mean")),
            None,
            {"metric": ("metric", MODEL_METRICS), "regime": ("regime", REGIMES)},
        ),
        Comparison(
            "ts_effect", "ts_effect",
            "temperature scaling's change of each metric and of the models' ranking",
            "temperature scaling changes ranking metrics' values and the rank of models (HSC paper, selective.md)",
            Figure("rank", "rank_before", "rank_after", color="origin", facet=("metric",),
                   hover=("model", "before", "after")),
            ts_summaries,
            {"metric": ("metric", TS_METRICS), "model": ("model", None)},
        ),
        Comparison(
            "model_percentile", "model_percentile",
            "each model's rank and percentile among all models of its origin",
            "the best CLIP zero-shot model beats most other models in C-OOD detection (C-OOD paper)",
            Figure("bar", "metric", "percentile", color="origin", hover=("model", "value", "rank", "n")),
            None,
            {"metric": ("metric", MODEL_METRICS), "model": ("model", None), "family": ("family", None)},
        ),
        Comparison(
            "cood_degradation_by_family", "cood_degradation_by_family",
            "C-OOD AUROC by severity level per architecture family",
            "C-OOD detection degrades with severity, by different amounts per family (C-OOD paper)",
            Figure("lines", "level", "mean_ood_auroc", color="family", facet=("origin",),
                   hover=("models", "q25_ood_auroc", "q75_ood_auroc")),
            None,
            {"family": ("family", None)},
        ),
        Comparison(
            "detectors", "detectors",
            "each κ (feature-space detectors det_<name>, other confidence functions) against MSP at each model's "
            "hardest severity level, paired per model",
            "does a detector keep its advantage over MSP on the OOD classes the model finds hardest? (issue 16: "
            "OpenOOD compares detectors on fixed OOD sets, the C-OOD paper grades them per model for logit κ only)",
            Figure("paired", "msp_hardest_auroc", "hardest_auroc", color="kappa",
                   hover=("model_id", "hardest_level", "hardest_gain")),
            detector_summaries,
            {"model": ("model_id", None)},
        ),
        Comparison(
            "detector_levels", "detector_levels",
            "each κ's OOD AUROC gain over MSP per severity level: median and quartiles over models",
            "where along the severity levels a detector gains or loses against MSP (issue 16)",
            Figure("lines", "level", "median_auroc_gain", color="kappa",
                   hover=("models", "q25_auroc_gain", "q75_auroc_gain", "beats_msp")),
        ),
        Comparison(
            "hsc_gain_by_regime", "hsc_gain_by_regime",
            "each hierarchical rule's hAURC gain over Selective per training regime",
            "CLIP, ImageNet-21k pre-training and distillation improve hierarchical selective performance (HSC paper)",
            Figure("box", "regime", "median_gain", color="rule", facet=("risk_type", "temperature_scaled"),
                   hover=("models", "mean_gain")),
            None,
            {"regime": ("regime", REGIMES), "rule": ("rule", HSC_RULES)},
        ),
    )
}


# ---- statistics as lines (the CLI and the report) ----------------------------------------------------------------


def _fmt(value: object, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _bootstrap_note(row: Mapping[str, object]) -> str:
    return f"{100 * float(row['confidence']):g}% percentile bootstrap, {row['n_boot']} resamples, seed {row['seed']}"


def statistic_lines(name: str, statistics: pl.DataFrame) -> list[str]:
    """One human-readable line per statistics row of the comparison ``name`` (its :attr:`Comparison.statistic`'s
    frame); empty for a comparison without statistics."""
    lines = []
    for row in statistics.iter_rows(named=True):
        if name == "metric_vs_accuracy":
            lines.append(
                f"{row['origin']}: {row['metric']} vs {row['x_metric']}, n={row['n']}: Spearman ρ "
                f"{_fmt(row['spearman'], '.3f')} [{_fmt(row['spearman_low'], '.3f')}, "
                f"{_fmt(row['spearman_high'], '.3f')}], Kendall τb {_fmt(row['kendall'], '.3f')} "
                f"[{_fmt(row['kendall_low'], '.3f')}, {_fmt(row['kendall_high'], '.3f')}] ({_bootstrap_note(row)})"
            )
        elif name in ("regime_pairs", "ts_effect"):
            what = (f"{row['origin']}: {row['regime']} − plain, {row['metric']}" if name == "regime_pairs"
                    else f"{row['origin']}: {row['metric']} with TS − without")
            line = (
                f"{what}, {row['n_pairs']} pairs: mean Δ {_fmt(row['mean'], '+.4g')} [{_fmt(row['mean_low'], '+.4g')}, "
                f"{_fmt(row['mean_high'], '+.4g')}], median Δ {_fmt(row['median'], '+.4g')}, {row['n_positive']} up, "
                f"{row['n_negative']} down, {row['n_zero']} equal, sign test p {_fmt(row['sign_test_p'], '.3g')}"
            )
            if name == "ts_effect":
                line += (
                    f"; ranking before vs after: Kendall τb {_fmt(row['kendall'], '.3f')} "
                    f"[{_fmt(row['kendall_low'], '.3f')}, {_fmt(row['kendall_high'], '.3f')}], "
                    f"{row['models_moved']} models move (at most {row['max_move']} places)"
                )
            lines.append(f"{line} ({_bootstrap_note(row)})")
        elif name == "detectors":
            lines.append(
                f"{row['origin']}: {row['kappa']} vs msp, {row['models']} models: median mean OOD AUROC "
                f"{_fmt(row['median_mean_auroc'], '.4f')} (msp {_fmt(row['median_msp_mean_auroc'], '.4f')}); at the "
                f"hardest level median {_fmt(row['median_hardest_auroc'], '.4f')} (msp "
                f"{_fmt(row['median_msp_hardest_auroc'], '.4f')}), gain mean Δ {_fmt(row['mean'], '+.4g')} "
                f"[{_fmt(row['mean_low'], '+.4g')}, {_fmt(row['mean_high'], '+.4g')}], median Δ "
                f"{_fmt(row['median'], '+.4g')}, beats msp in {_fmt(100 * row['beats_msp_hardest'], '.1f')} % "
                f"({row['n_positive']} up, {row['n_negative']} down), sign test p {_fmt(row['sign_test_p'], '.3g')}; "
                f"selective AUROC median {_fmt(row['median_selective_auroc'], '.4f')} (msp "
                f"{_fmt(row['median_msp_selective_auroc'], '.4f')}) over {row['selective_models']} models "
                f"({_bootstrap_note(row)})"
            )
    return lines
