"""The selective-prediction analysis of one model: every flat metric per κ, with and without TS.

Produces the rows of the ``selective_metrics`` table (results/schema.py), one per (κ, temperature_scaled,
subset), from the stored logits and labels of one model on one ID dataset (selective.md §3), and from the same
sort the rows a report draws: the risk–coverage curve of each row (``selective_curves``, at most
:data:`hsc.selective.CURVE_POINTS` exact points) and the equal-width bins behind its ECE (``reliability_bins``,
probability κ only):

- subset ``all``: every sample, no temperature scaling (the reference's non-``_TS`` columns, "val50k");
- subset ``ts_eval``: the evaluation part of the seeded stratified split (the reference's "ts_test45k"),
  once without and once with temperature scaling, so that the TS effect is not mixed with a subset effect.

κ computed from the logits are registered in :mod:`cood.confidence`; a *stored* κ is a per-sample column the model
actors wrote beside the logits (a feature-space detector's ``det_<name>``, pipelines.engine.inference), passed in
``stored``. Temperature scaling changes neither a stored κ nor the prediction, so a stored κ has the two rows
without TS (``all``, ``ts_eval``) and no TS row; it is not a probability (ECE null).

T is fitted on the ``fit`` part of the split (:func:`stratified_split`), whose seed and SHA-256 are stored
on every row; every model analysed with the same labels and seed gets the same split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from cood import confidence
from hsc.selective import CURVE_POINTS, SelectiveSummary, selective_summary, stable_descending_order
from hsc.softmax import SOFTMAX_KAPPAS, SoftmaxStats, check_logits, softmax_stats
from hsc.study import StratifiedSplitter, class_allocation
from hsc.temperature import TemperatureFit, fit_temperature_result
from pipelines.analysis_options import DEFAULTS
from results.schema import polars_schema, table_frame

# κ that are probabilities, so calibration metrics (ECE, MCE, A-ECE) make sense for them
PROBABILITY_KAPPAS = frozenset({"msp"})
SUBSET_ALL = "all"
SUBSET_TS_EVAL = "ts_eval"
BIN_CONVENTION = "(lo,hi]"

# column -> polars dtype of the selective_metrics table, derived from its CREATE statement (results/schema.py)
COLUMNS = polars_schema("selective_metrics")


def stratified_split(
    labels: np.ndarray, n_fit: int = DEFAULTS.n_fit, seed: int = DEFAULTS.seed
) -> tuple[np.ndarray, np.ndarray, str]:
    """Seeded stratified split of ``labels: (N,)`` int into (fit_idx, eval_idx, sha256).

    The fit part has ``min(n_fit, N // 10)`` samples (at least 1), allocated to classes in proportion to
    their counts (:func:`hsc.study.class_allocation`: exact largest remainder, ties to the lower class index),
    then raised to 1 for every class with ≥ 2 samples, never taking a class's last sample. Inside a class the
    samples with the smallest keys of ``numpy.random.default_rng(seed).random(N)`` are taken
    (:meth:`hsc.study.StratifiedSplitter.select`), so the split is a function of (labels, n_fit, seed) only.
    ImageNet val (50 per class) with the defaults gives 5 per class: 5,000 / 45,000.
    ``fit_idx``, ``eval_idx``: sorted int64 indices; ``sha256``: hex digest of the N-byte fit-membership mask.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {y.shape} and dtype {y.dtype}")
    n = y.size
    if n < 2:
        raise ValueError(f"labels must hold at least 2 samples to split, got {n}")
    if not (isinstance(n_fit, int | np.integer) and n_fit >= 1):
        raise ValueError(f"n_fit must be a positive integer, got {n_fit!r}")
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    target = max(1, min(int(n_fit), n // 10))
    alloc = class_allocation(inverse, target, classes.size)
    alloc = np.where(counts >= 2, np.clip(alloc, 1, counts - 1), 0)
    if alloc.sum() == 0:
        alloc[np.argmax(counts)] = 1  # every class is a singleton: move one sample to the fit part
    splitter = StratifiedSplitter(inverse, int(alloc.sum()), seed, classes.size, alloc=alloc)
    fit_mask = np.zeros(n, dtype=bool)
    fit_mask[splitter.select(np.random.default_rng(seed).random(n))] = True
    digest = hashlib.sha256(fit_mask.view(np.uint8).tobytes()).hexdigest()
    return np.flatnonzero(fit_mask), np.flatnonzero(~fit_mask), digest


def torch_exp(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """An :data:`hsc.softmax.ExpKernel`: torch's vectorised float64 exp, within 1 ulp of numpy's and 2.5×
    faster on CPUs without AVX-512, where numpy's float64 exp runs one element at a time (it is most of a
    logit pass). ``hsc`` stays numpy-only (architecture.md §2), so the pipeline passes this kernel in."""
    import torch  # deferred: importing torch costs about a second

    torch.exp(torch.from_numpy(x), out=torch.from_numpy(out))
    return out


def split_and_fit_temperature(
    logits: np.ndarray, labels: np.ndarray, seed: int = DEFAULTS.seed, n_fit: int = DEFAULTS.n_fit
) -> tuple[np.ndarray, np.ndarray, str, TemperatureFit]:
    """The run's shared TS recipe: :func:`stratified_split` of ``labels: (N,)`` and the temperature fitted on
    its fit part of ``logits: (N, C)``. Returns (fit_idx, eval_idx, split sha256, TemperatureFit); every
    analysis that scales by T (selective, hsc) calls this, so they agree on T."""
    fit_idx, eval_idx, sha = stratified_split(labels, n_fit=n_fit, seed=seed)
    return fit_idx, eval_idx, sha, fit_temperature_result(logits[fit_idx], labels[fit_idx], exp=torch_exp)


def _kappa_values(
    name: str, stats: SoftmaxStats, logits: np.ndarray, beta: float, rows: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(ranking key, κ values or None when the key is κ itself) of softmax(β·z) for the rows of ``stats``.

    The softmax family (:data:`hsc.softmax.SOFTMAX_KAPPAS`) comes from the shared float64 pass (MSP is ranked
    by log-MSP, which never saturates); any other registered κ from :mod:`cood.confidence` on the scaled logits.
    """
    if name == "msp":
        return stats.log_msp, stats.msp
    if name in SOFTMAX_KAPPAS:
        return stats.kappa(name), None
    z = logits if rows is None else logits[rows]
    return confidence.compute(z.astype(np.float64) * beta if beta != 1.0 else z, [name])[name], None


def analyse_selective(
    model_id: str,
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    kappas: Sequence[str] = DEFAULTS.selective_kappas,
    split_seed: int = DEFAULTS.seed,
    n_fit: int = DEFAULTS.n_fit,
) -> pl.DataFrame:
    """All flat selective metrics of one model: one row per (kappa, temperature_scaled, subset).

    logits: (N, C) float (float32 as stored); labels: (N,) int class indices; kappas: names registered in
    :mod:`cood.confidence`. Returns a DataFrame with exactly the ``selective_metrics`` columns
    (:data:`COLUMNS`); metrics that do not apply (ECE of a non-probability κ, ranking metrics of
    single-class input) are null. ``accuracy`` is a fraction; ``temperature`` is the T applied to the row
    (1.0 without TS); ``nll_before``/``nll_after`` are the mean NLL on the fit split at T = 1 and at T;
    ``run_id`` is null: the caller adds provenance (:func:`results.schema.with_values`).
    :func:`analyse_selective_tables` returns these rows with their curves and calibration bins.
    """
    return analyse_selective_tables(model_id, logits, labels, kappas=kappas, split_seed=split_seed, n_fit=n_fit)[
        "selective_metrics"
    ]


def _curve_rows(summary: SelectiveSummary, key: dict) -> dict[str, object]:
    curve = summary.curve
    return {
        **key,
        "point": np.arange(curve.coverage.size, dtype=np.int32),
        "accepted": curve.accepted,
        "coverage": curve.coverage,
        "risk": curve.risk,
        "threshold": curve.threshold,
    }


def _bin_rows(summary: SelectiveSummary, key: dict) -> dict[str, object]:
    table = summary.reliability
    return {
        **key,
        "bin": np.arange(table.count.size, dtype=np.int32),
        "lo": table.lo,
        "hi": table.hi,
        "count": table.count,
        "mean_conf": table.mean_conf,
        "accuracy": table.accuracy,
        "bin_convention": table.convention,
    }


def _column_frame(table: str, parts: list[dict[str, object]]) -> pl.DataFrame:
    """One ``table`` frame from column dicts (scalars repeated), NaN as null; empty when there are none."""
    if not parts:
        return table_frame(table, {})
    frame = pl.concat([table_frame(table, part) for part in parts], how="vertical")
    return frame.with_columns(pl.col(pl.Float64).fill_nan(None))


def analyse_selective_tables(
    model_id: str,
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    kappas: Sequence[str] = DEFAULTS.selective_kappas,
    split_seed: int = DEFAULTS.seed,
    n_fit: int = DEFAULTS.n_fit,
    curve_points: int = CURVE_POINTS,
    stored: Mapping[str, np.ndarray] | None = None,
) -> dict[str, pl.DataFrame]:
    """:func:`analyse_selective` with the tables a report draws, computed from the same sort with the same
    conventions (:func:`hsc.selective.selective_summary`): ``{"selective_metrics": …, "selective_curves": …,
    "reliability_bins": …}``.

    ``selective_curves``: for every metrics row, at most ``curve_points`` exact points of its tie-aware
    risk–coverage curve, ranked by the key the metrics use (log-MSP for MSP), thresholds in κ's own units.
    ``reliability_bins``: for every row of a probability κ, the 15 equal-width bins of its ``ece15`` in the
    row's ``bin_convention`` (every bin, empty ones with null mean and accuracy); Σ count·|mean_conf −
    accuracy| / n over them is the row's ``ece15``. Provenance (``run_id``) is left to the caller.

    ``stored``: κ name -> (N,) float per-sample values aligned with ``labels`` (e.g. ``det_knn`` read from the
    outputs); a name of ``kappas`` that is not in :mod:`cood.confidence` must be one of them (rows without TS only).
    """
    z, y = check_logits(logits, labels, finite=False)  # softmax_stats rejects non-finite logits
    stored = dict(stored or {})
    unknown = [k for k in kappas if k not in confidence.REGISTRY and k not in stored]
    if unknown or not kappas:
        raise ValueError(
            "kappas must be non-empty names registered in cood.confidence "
            f"({', '.join(sorted(confidence.REGISTRY))}) or stored columns ({', '.join(sorted(stored)) or 'none'}), "
            f"got unknown {unknown or list(kappas)}"
        )
    for name in kappas:
        if name not in confidence.REGISTRY:
            stored[name] = np.asarray(stored[name], dtype=np.float64)
            if stored[name].shape != y.shape or not np.isfinite(stored[name]).all():
                raise ValueError(f"stored κ {name!r} must be {y.shape[0]} finite values, one per sample")
    base = softmax_stats(z, y, exp=torch_exp)
    correct = base.top_class == y
    fit_idx, eval_idx, sha, fit = split_and_fit_temperature(z, y, seed=split_seed, n_fit=n_fit)
    beta = 1.0 / fit.temperature
    scaled = softmax_stats(z, y, beta=beta, rows=eval_idx, exp=torch_exp)
    shared = {
        "model_id": model_id,
        "nll_before": fit.nll_before,
        "nll_after": fit.nll_after,
        "ts_method": fit.method,
        "n_fit": int(fit_idx.size),
        "split_seed": int(split_seed),
        "split_sha256": sha,
        "bin_convention": BIN_CONVENTION,
    }
    eval_position = np.full(z.shape[0], -1, dtype=np.int64)
    eval_position[eval_idx] = np.arange(eval_idx.size)
    rows, curves, bins = [], [], []
    for name in kappas:
        from_logits = name in confidence.REGISTRY
        key_all, values_all = _kappa_values(name, base, z, 1.0, None) if from_logits else (stored[name], None)
        key_ts, values_ts = _kappa_values(name, scaled, z, beta, eval_idx) if from_logits else (None, None)
        values_eval = None if values_all is None else values_all[eval_idx]
        # one sort of all samples also orders the eval subset (a stable order stays stable when restricted),
        # and T-invariant rankings (max logit) keep it with TS; summarize verifies each hint in O(n)
        order_all = stable_descending_order(key_all)
        order_eval = eval_position[order_all]
        order_eval = order_eval[order_eval >= 0]
        hints = (order_all, order_eval, order_eval)  # one per setting below (a stored κ has no TS row)
        settings = (
            (False, SUBSET_ALL, key_all, values_all, correct, base.nll, base.brier, 1.0),
            (False, SUBSET_TS_EVAL, key_all[eval_idx], values_eval, correct[eval_idx], base.nll[eval_idx],
             base.brier[eval_idx], 1.0),
            (True, SUBSET_TS_EVAL, key_ts, values_ts, correct[eval_idx], scaled.nll, scaled.brier,
             fit.temperature),
        )[: 3 if from_logits else 2]  # fmt: skip
        for (scaled_flag, subset, key, values, ok, nll, brier, temperature), hint in zip(settings, hints, strict=False):
            summary = selective_summary(
                key, ok, values=values, order_hint=hint, probability=name in PROBABILITY_KAPPAS,
                convention=BIN_CONVENTION, max_points=curve_points,
            )
            row_key = {"model_id": model_id, "kappa": name, "temperature_scaled": scaled_flag, "subset": subset}
            rows.append(
                {
                    **shared,
                    **summary.metrics,
                    **row_key,
                    "temperature": temperature,
                    "nll": float(np.mean(nll)),
                    "brier": float(np.mean(brier)),
                }
            )
            curves.append(_curve_rows(summary, row_key))
            if summary.reliability is not None:
                bins.append(_bin_rows(summary, row_key))
    frame = table_frame("selective_metrics", [{c: row[c] for c in COLUMNS if c in row} for row in rows])
    return {
        "selective_metrics": frame.with_columns(pl.col(pl.Float64).fill_nan(None)),
        "selective_curves": _column_frame("selective_curves", curves),
        "reliability_bins": _column_frame("reliability_bins", bins),
    }
