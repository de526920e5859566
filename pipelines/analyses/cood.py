"""The C-OOD analysis of one (model, κ): per-class severity, severity levels and per-level metrics.

Pure array maths over stored per-sample confidences (architecture.md §1); produces the rows of the
``cood_levels``, ``cood_level_classes`` and ``cood_class_severity`` tables of ``results/schema.py``, built
through :func:`results.schema.table_frame`. Run and code provenance (``run_id``, ``code_sha``) is the caller's
to add (:func:`results.schema.with_values`; pipelines.analyses.cood_benchmark does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from cood.evaluate import evaluate_levels
from cood.severity import class_severity, severity_levels
from pipelines.analysis_options import DEFAULTS
from results.schema import table_frame


def _estimation_mask(ood_role: np.ndarray, size: int) -> np.ndarray:
    """``ood_role``: (M,) bool (True = estimation) or str 'estimation'/'test' -> (M,) bool."""
    role = np.asarray(ood_role)
    if role.shape != (size,):
        raise ValueError(f"ood_role must have shape ({size},) like ood_conf, got {role.shape}")
    if role.dtype == np.bool_:
        return role
    if role.dtype.kind in "US":
        role = role.astype(str)
        unknown = set(np.unique(role).tolist()) - {"estimation", "test"}
        if unknown:
            raise ValueError(f"ood_role strings must be 'estimation' or 'test', found {sorted(unknown)}")
        return role == "estimation"
    raise ValueError(f"ood_role must be bool or 'estimation'/'test' strings, got dtype {role.dtype}")


def analyse_cood(
    model_id: str,
    kappa: str,
    *,
    id_conf: np.ndarray,
    id_correct: np.ndarray,
    ood_conf: np.ndarray,
    ood_class: np.ndarray,
    ood_role: np.ndarray,
    class_wnids: Sequence[str],
    window: int = DEFAULTS.cood_window,
    num_levels: int = DEFAULTS.cood_levels,
    id_rank: np.ndarray | None = None,
    ood_rank: np.ndarray | None = None,
    kappa_params: dict[str, Any] | None = None,
    pool_version: str | None = None,
    class_list_sha256: str | None = None,
    split_seed: int | None = None,
) -> dict[str, pl.DataFrame]:
    """Build and evaluate the C-OOD benchmark of one (model, κ).

    id_conf: (N,) float κ on the ID test set; id_correct: (N,) bool top-1 correct.
    ood_conf: (M,) float κ on the sampled OOD images; ood_class: (M,) int index into ``class_wnids``;
    ood_role: (M,) bool (True = estimation image) or 'estimation'/'test' strings.
    class_wnids: K wnids, K >= window. Severity comes from estimation images only, metrics from test images.
    id_rank / ood_rank: optional tie-free ranking keys of the κ values (log-MSP for MSP), used by every ranking
    metric; the severity s(c) stays the mean of the κ values themselves. kappa_params, pool_version,
    class_list_sha256, split_seed: what the benchmark was built from, copied onto the cood_levels rows.

    Returns ``{"cood_levels", "cood_level_classes", "cood_class_severity"}`` polars frames whose columns are
    those of results/schema.py; ``run_id`` and ``code_sha`` are null.
    """
    ood_conf = np.asarray(ood_conf)
    ood_class = np.asarray(ood_class)
    if ood_conf.ndim != 1 or ood_class.shape != ood_conf.shape:
        raise ValueError(
            f"ood_conf and ood_class must be 1-D arrays of equal length, got {ood_conf.shape} and {ood_class.shape}"
        )
    if ood_rank is not None and np.shape(ood_rank) != ood_conf.shape:
        raise ValueError(f"ood_rank must have the shape of ood_conf {ood_conf.shape}, got {np.shape(ood_rank)}")
    estimation = _estimation_mask(ood_role, ood_conf.shape[0])
    wnids = np.asarray(list(class_wnids), dtype=str)
    num_classes = wnids.shape[0]
    if np.unique(wnids).shape[0] != num_classes:
        raise ValueError(f"class_wnids must be {num_classes} distinct wnids, found duplicates")
    scores = class_severity(ood_conf[estimation], ood_class[estimation], num_classes)
    levels = severity_levels(scores, num_levels=num_levels, window=window)
    table = evaluate_levels(
        levels,
        ood_conf[~estimation],
        ood_class[~estimation],
        id_conf,
        id_correct,
        ood_rank=None if ood_rank is None else np.asarray(ood_rank)[~estimation],
        id_rank=id_rank,
        model_id=model_id,
        kappa=kappa,
        kappa_params=kappa_params,
        pool_version=pool_version,
        class_list_sha256=class_list_sha256,
        split_seed=split_seed,
    )
    level_classes = table_frame(
        "cood_level_classes",
        {
            "model_id": model_id,
            "kappa": kappa,
            "level": np.repeat(np.arange(levels.num_levels, dtype=np.int32), levels.window),
            "wnid": wnids[levels.classes.reshape(-1)],
        },
    )
    severity = table_frame(
        "cood_class_severity",
        {
            "model_id": model_id,
            "kappa": kappa,
            "wnid": wnids,
            "s": scores,
            "n_est": np.bincount(ood_class[estimation], minlength=num_classes).astype(np.int32),
        },
    )
    return {
        "cood_levels": table_frame("cood_levels", table),
        "cood_level_classes": level_classes,
        "cood_class_severity": severity,
    }
