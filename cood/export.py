"""Export of a per-model C-OOD benchmark (cood.md §4, §9.10): reference-format CSV, class lists, hashes.

Files written by :func:`export_benchmark` into one folder per (model, κ):

- ``<model>_<κ>_n<levels>.csv``: the reference results' columns (:data:`REFERENCE_COLUMNS`), one row per
  level, κ under its reference name (``msp`` -> ``softmax``, see ``common.PUBLISHED_KAPPA_NAMES``);
- ``cood_levels.csv``: the full ``cood_levels`` rows (all metrics and provenance);
- ``level_classes.csv``: ``level,wnid``, the 1,000 (``window``) classes of each level — the benchmark itself;
- ``class_severity.csv`` (when given): ``wnid,s,n_est``;
- ``benchmark.json``: the manifest SHA-256, class-list hash, pool version, split seed, window, levels and the
  SHA-256 of every file above.

:func:`read_reference_csv` re-imports a reference CSV (the paper's ``all_paper_results.csv`` or a per-model
file) with fixed dtypes; :func:`write_reference_csv` writes one back with shortest round-trip floats, so
read → write → read is lossless. Imports polars (as :mod:`cood.evaluate` does).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from common import PUBLISHED_KAPPA_NAMES, atomic_write_bytes

REFERENCE_SCHEMA: dict[str, Any] = {
    "severity level": pl.Int64,
    "percentile": pl.Float64,
    "ood-auroc": pl.Float64,
    "ood_avg_conf": pl.Float64,
    "id-acc": pl.Float64,
    "id-auroc": pl.Float64,
    "id_avg_conf": pl.Float64,
    "model name": pl.Utf8,
    "confidence function": pl.Utf8,
    "model name - confidence function": pl.Utf8,
}
"""The reference results' columns and their dtypes, in file order."""

REFERENCE_COLUMNS: tuple[str, ...] = tuple(REFERENCE_SCHEMA)
OPTIONAL_REFERENCE_COLUMNS: dict[str, Any] = {"id dataset": pl.Utf8, "ood dataset": pl.Utf8}
"""Extra columns that the reference code writes into per-model files; kept when present."""


def reference_frame(
    levels: pl.DataFrame, *, model_name: str | None = None, confidence_name: str | None = None
) -> pl.DataFrame:
    """Map ``cood_levels`` rows of one (model, κ) to the reference columns.

    model_name defaults to the rows' ``model_id``; confidence_name to the reference name of ``kappa``
    (our name when the reference has none).
    """
    pairs = levels.select("model_id", "kappa").unique()
    if pairs.height != 1:
        raise ValueError(f"levels must hold exactly one (model_id, kappa) pair, found {pairs.height}")
    model = model_name if model_name is not None else pairs.item(0, "model_id")
    kappa = pairs.item(0, "kappa")
    confidence = confidence_name if confidence_name is not None else PUBLISHED_KAPPA_NAMES.get(kappa, kappa)
    if model is None or confidence is None:
        raise ValueError("levels have no model_id/kappa; pass model_name and confidence_name")
    return levels.sort("level").select(
        pl.col("level").cast(pl.Int64).alias("severity level"),
        pl.col("percentile"),
        pl.col("ood_auroc").alias("ood-auroc"),
        pl.col("ood_avg_conf"),
        pl.col("id_accuracy").alias("id-acc"),
        pl.col("id_auroc").alias("id-auroc"),
        pl.col("id_avg_conf"),
        pl.lit(model, dtype=pl.Utf8).alias("model name"),
        pl.lit(confidence, dtype=pl.Utf8).alias("confidence function"),
        pl.lit(f"{model}-{confidence}", dtype=pl.Utf8).alias("model name - confidence function"),
    )


def read_reference_csv(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read a reference-format results CSV with the dtypes of :data:`REFERENCE_SCHEMA`.

    Raises ValueError naming the missing columns when the file is not in the reference format.
    """
    header = pl.read_csv(path, n_rows=0).columns
    missing = [c for c in REFERENCE_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path} is not a reference C-OOD results CSV: missing columns {missing}")
    overrides = {c: t for c, t in {**REFERENCE_SCHEMA, **OPTIONAL_REFERENCE_COLUMNS}.items() if c in header}
    return pl.read_csv(path, schema_overrides=overrides)


def _frame_bytes(frame: pl.DataFrame) -> bytes:
    return frame.write_csv().encode("utf-8")


def write_reference_csv(frame: pl.DataFrame, path: str | os.PathLike[str]) -> str:
    """Write reference-format rows atomically (reference columns first, extras after); returns its SHA-256."""
    missing = [c for c in REFERENCE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the reference columns {missing}")
    extras = [c for c in frame.columns if c not in REFERENCE_SCHEMA]
    data = _frame_bytes(frame.select(*REFERENCE_COLUMNS, *extras))
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def reference_file_name(model_name: str, confidence_name: str, num_levels: int) -> str:
    """The reference's per-model file name: ``<model>_<κ>_n<levels>.csv`` (``/`` written as ``~``)."""
    return f"{model_name.replace('/', '~')}_{confidence_name.replace('/', '~')}_n{num_levels}.csv"


def export_benchmark(
    out_dir: str | os.PathLike[str],
    *,
    levels: pl.DataFrame,
    level_classes: pl.DataFrame,
    manifest_sha256: str | None,
    class_severity: pl.DataFrame | None = None,
    model_name: str | None = None,
    confidence_name: str | None = None,
) -> dict[str, Path]:
    """Write the benchmark files of one (model, κ) into ``out_dir`` (created); returns {role: path}.

    levels: ``cood_levels`` rows; level_classes: ``cood_level_classes`` rows (level, wnid);
    class_severity: optional ``cood_class_severity`` rows (wnid, s, n_est).
    """
    out = Path(out_dir)
    reference = reference_frame(levels, model_name=model_name, confidence_name=confidence_name)
    name = reference_file_name(reference.item(0, "model name"), reference.item(0, "confidence function"), levels.height)
    frames: dict[str, tuple[str, pl.DataFrame]] = {
        "reference_csv": (name, reference.select(REFERENCE_COLUMNS)),
        "levels_csv": ("cood_levels.csv", levels.sort("level")),
        "level_classes_csv": (
            "level_classes.csv",
            level_classes.select("level", "wnid").sort("level", "wnid"),
        ),
    }
    if class_severity is not None:
        frames["class_severity_csv"] = ("class_severity.csv", class_severity.select("wnid", "s", "n_est"))
    paths: dict[str, Path] = {}
    hashes: dict[str, str] = {}
    for role, (file_name, frame) in frames.items():
        data = _frame_bytes(frame)
        paths[role] = out / file_name
        atomic_write_bytes(paths[role], data)
        hashes[file_name] = hashlib.sha256(data).hexdigest()
    first = levels.row(0, named=True)
    info = {
        "model_id": first["model_id"],
        "kappa": first["kappa"],
        "num_levels": levels.height,
        "window": int(level_classes.filter(pl.col("level") == 0).height),
        "K": first["K"],
        "manifest_sha256": manifest_sha256,
        "class_list_sha256": first["class_list_sha256"],
        "pool_version": first["pool_version"],
        "split_seed": first["split_seed"],
        "files_sha256": hashes,
    }
    paths["benchmark_json"] = out / "benchmark.json"
    atomic_write_bytes(paths["benchmark_json"], (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
    return paths
