"""Detection metrics of each severity level (cood.md §3), as rows of the ``cood_levels`` table.

Every metric is computed exactly from sorted scores, with no per-sample Python loop: the ID scores are
sorted once; each level selects its OOD test samples with a boolean (level, class) membership lookup and
sorts them (one sort per level). Pair counts then come from ``np.searchsorted`` of one sorted array into
the other (:func:`hsc.selective.pair_counts`).

Conventions (ID is the positive class unless stated; κ higher = more in-distribution):

- ``ood_auroc``: P(κ_ID > κ_OOD) + ½·P(κ_ID = κ_OOD) (Mann–Whitney with mid-ranks, = sklearn
  ``roc_auc_score``). It is computed from exact integer pair counts (:func:`hsc.selective.pair_counts`) as
  (greater + ½·tied)/(n_id·n_ood), so ``ood_auroc × 2·n_id·n_ood`` is an integer up to float64 rounding.
- ``fpr95`` (OpenOOD): t = the largest threshold with #{ID: κ ≥ t} ≥ 0.95·n_id; FPR = #{OOD: κ ≥ t}/n_ood.
  The 95 % count is the exact ceil(19·n_id / 20).
- ``fpr95_oodpos`` (torch-uncertainty): OOD positive with score −κ; the symmetric definition.
- ``aupr_in`` / ``aupr_out``: step-wise average precision (sklearn ``average_precision_score``) with ID,
  respectively OOD (score −κ), as the positive class.
- ``id_auroc``: mid-rank misclassification AUROC on the ID set (positive = correct prediction), from
  :func:`hsc.selective.auroc`; NaN with a RuntimeWarning when the ID predictions are all correct or all wrong.

The result is a polars DataFrame (architecture.md §3): this module imports polars in addition to numpy
and ``hsc.selective``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

from cood.severity import SeverityLevels
from hsc.selective import auroc as misclassification_auroc
from hsc.selective import pair_counts

LEVEL_SCHEMA: dict[str, Any] = {
    "model_id": pl.Utf8,
    "kappa": pl.Utf8,
    "kappa_params": pl.Utf8,
    "level": pl.Int32,
    "num_levels": pl.Int32,
    "percentile": pl.Float64,
    "start_index": pl.Int32,
    "severity": pl.Float64,
    "n_id": pl.Int64,
    "n_ood": pl.Int64,
    "ood_auroc": pl.Float64,
    "fpr95": pl.Float64,
    "fpr95_oodpos": pl.Float64,
    "aupr_in": pl.Float64,
    "aupr_out": pl.Float64,
    "ood_avg_conf": pl.Float64,
    "id_accuracy": pl.Float64,
    "id_auroc": pl.Float64,
    "id_avg_conf": pl.Float64,
    "pool_version": pl.Utf8,
    "class_list_sha256": pl.Utf8,
    "split_seed": pl.Int64,
    "K": pl.Int32,
    "run_id": pl.Utf8,
    "code_sha": pl.Utf8,
}
"""Columns and polars dtypes of the ``cood_levels`` table, in the order of results/schema.py."""


def _scores(values: np.ndarray, name: str) -> np.ndarray:
    """Validate a 1-D finite score array and return it as float64."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal values in an ascending array: (distinct values, first index, run length)."""
    n = sorted_values.shape[0]
    first = np.flatnonzero(np.concatenate(([True], sorted_values[1:] != sorted_values[:-1])))
    lengths = np.diff(np.append(first, n))
    return sorted_values[first], first, lengths


def _average_precision_high(pos_sorted: np.ndarray, neg_sorted: np.ndarray) -> float:
    """Step-wise average precision, positives scored high: Σ_t (Δrecall at t) · precision(κ ≥ t)."""
    values, first, counts = _runs(pos_sorted)
    n = pos_sorted.shape[0]
    true_pos = n - first  # #pos >= t
    false_pos = neg_sorted.shape[0] - np.searchsorted(neg_sorted, values, side="left")  # #neg >= t
    return float(np.sum(counts / n * (true_pos / (true_pos + false_pos))))


def _average_precision_low(pos_sorted: np.ndarray, neg_sorted: np.ndarray) -> float:
    """Step-wise average precision, positives scored low (score −κ): Σ_v (Δrecall at v) · precision(κ ≤ v)."""
    values, first, counts = _runs(pos_sorted)
    n = pos_sorted.shape[0]
    true_pos = first + counts  # #pos <= v
    false_pos = np.searchsorted(neg_sorted, values, side="right")  # #neg <= v
    return float(np.sum(counts / n * (true_pos / (true_pos + false_pos))))


def _count_at_95(n: int) -> int:
    """Smallest count c with c/n >= 0.95, exactly: ceil(19·n/20)."""
    return -(-19 * n // 20)


def _fpr95_id_positive(id_sorted: np.ndarray, ood_sorted: np.ndarray) -> float:
    """OpenOOD FPR@95: FPR of OOD at the largest threshold keeping >= 95 % of ID (κ >= t)."""
    n, m = id_sorted.shape[0], ood_sorted.shape[0]
    threshold = id_sorted[n - _count_at_95(n)]
    return float((m - np.searchsorted(ood_sorted, threshold, side="left")) / m)


def _fpr95_ood_positive(id_sorted: np.ndarray, ood_sorted: np.ndarray) -> float:
    """torch-uncertainty FPR@95: fraction of ID flagged at the threshold flagging >= 95 % of OOD (κ <= s)."""
    n = id_sorted.shape[0]
    threshold = ood_sorted[_count_at_95(ood_sorted.shape[0]) - 1]
    return float(np.searchsorted(id_sorted, threshold, side="right") / n)


def level_metrics(id_sorted: np.ndarray, ood_sorted: np.ndarray) -> dict[str, float]:
    """OOD detection metrics of one level from ascending ID and OOD scores (both non-empty).

    Returns ood_auroc, fpr95, fpr95_oodpos, aupr_in, aupr_out and ood_avg_conf.
    """
    return {
        "ood_auroc": pair_counts(id_sorted, ood_sorted).auroc,
        "fpr95": _fpr95_id_positive(id_sorted, ood_sorted),
        "fpr95_oodpos": _fpr95_ood_positive(id_sorted, ood_sorted),
        "aupr_in": _average_precision_high(id_sorted, ood_sorted),
        "aupr_out": _average_precision_low(ood_sorted, id_sorted),
        "ood_avg_conf": float(ood_sorted.mean()),
    }


def evaluate_levels(
    levels: SeverityLevels,
    ood_conf: np.ndarray,
    ood_class: np.ndarray,
    id_conf: np.ndarray,
    id_correct: np.ndarray,
    *,
    ood_rank: np.ndarray | None = None,
    id_rank: np.ndarray | None = None,
    model_id: str | None = None,
    kappa: str | None = None,
    kappa_params: dict[str, Any] | str | None = None,
    pool_version: str | None = None,
    class_list_sha256: str | None = None,
    split_seed: int | None = None,
    run_id: str | None = None,
    code_sha: str | None = None,
) -> pl.DataFrame:
    """Evaluate OOD detection on every severity level; one row per level in the ``cood_levels`` schema.

    levels: from :func:`cood.severity.severity_levels` over K classes.
    ood_conf: (M,) float κ of the OOD *test* samples; ood_class: (M,) int class index in [0, K).
    id_conf: (N,) float κ of the ID samples; id_correct: (N,) bool, top-1 prediction correct.
    ood_rank, id_rank: optional (M,) / (N,) tie-free ranking keys of the κ values (log-MSP for MSP, which
    rounds to 1.0 for very confident samples, cood.md §5); given together, every ranking metric uses them and
    ``id_avg_conf`` still averages the κ values. The other keyword arguments are provenance copied onto every
    row (``kappa_params`` as JSON text).
    Raises ValueError on shape/dtype/range mismatches or when a level has no OOD test sample.
    """
    ood_conf = _scores(ood_conf, "ood_conf")
    id_conf = _scores(id_conf, "id_conf")
    ood_class = np.asarray(ood_class)
    if ood_class.shape != ood_conf.shape:
        raise ValueError(f"ood_class must have the shape of ood_conf {ood_conf.shape}, got {ood_class.shape}")
    if not np.issubdtype(ood_class.dtype, np.integer):
        raise ValueError(f"ood_class must be integers, got dtype {ood_class.dtype}")
    num_classes = levels.num_classes
    if ood_class.size and (ood_class.min() < 0 or ood_class.max() >= num_classes):
        raise ValueError(
            f"ood_class must lie in [0, {num_classes}), found values in [{ood_class.min()}, {ood_class.max()}]"
        )
    id_correct = np.asarray(id_correct)
    if id_correct.shape != id_conf.shape:
        raise ValueError(f"id_correct must have the shape of id_conf {id_conf.shape}, got {id_correct.shape}")
    if id_correct.dtype != np.bool_:
        if not np.isin(id_correct, (0, 1)).all():
            raise ValueError("id_correct must be boolean (or 0/1)")
        id_correct = id_correct.astype(bool)
    if id_conf.shape[0] == 0:
        raise ValueError("id_conf is empty; the ID test set needs at least one sample")
    if (ood_rank is None) != (id_rank is None):
        raise ValueError("ood_rank and id_rank must be given together (one ranking key for both sides)")
    id_key, ood_key = id_conf, ood_conf
    if id_rank is not None:
        id_key, ood_key = _scores(id_rank, "id_rank"), _scores(ood_rank, "ood_rank")
        if id_key.shape != id_conf.shape or ood_key.shape != ood_conf.shape:
            raise ValueError(
                f"id_rank and ood_rank must have the shapes of id_conf {id_conf.shape} and ood_conf "
                f"{ood_conf.shape}, got {id_key.shape} and {ood_key.shape}"
            )

    id_sorted = np.sort(id_key)
    id_accuracy = float(id_correct.mean())
    id_auroc = misclassification_auroc(id_key, id_correct)
    id_avg_conf = float(id_conf.mean())

    membership = np.zeros((levels.num_levels, num_classes), dtype=bool)
    membership[np.arange(levels.num_levels)[:, None], levels.classes] = True

    if isinstance(kappa_params, dict):
        kappa_params = json.dumps(kappa_params, sort_keys=True)
    rows: list[dict[str, Any]] = []
    for level in range(levels.num_levels):
        in_level = membership[level][ood_class]
        level_sorted = np.sort(ood_key[in_level])
        if level_sorted.shape[0] == 0:
            raise ValueError(f"severity level {level} has no OOD test sample; each level needs at least one")
        metrics = level_metrics(id_sorted, level_sorted)
        if ood_rank is not None:  # the average is of the κ values, not of their ranking key
            metrics["ood_avg_conf"] = float(ood_conf[in_level].mean())
        rows.append(
            {
                "model_id": model_id,
                "kappa": kappa,
                "kappa_params": kappa_params,
                "level": level,
                "num_levels": levels.num_levels,
                "percentile": float(levels.percentiles[level]),
                "start_index": int(levels.starts[level]),
                "severity": float(levels.scores[level]),
                "n_id": id_conf.shape[0],
                "n_ood": level_sorted.shape[0],
                **metrics,
                "id_accuracy": id_accuracy,
                "id_auroc": id_auroc,
                "id_avg_conf": id_avg_conf,
                "pool_version": pool_version,
                "class_list_sha256": class_list_sha256,
                "split_seed": split_seed,
                "K": num_classes,
                "run_id": run_id,
                "code_sha": code_sha,
            }
        )
    return pl.DataFrame(rows, schema=LEVEL_SCHEMA)
