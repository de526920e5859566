"""Published C-OOD results (cood.md §4) as rows of the ``reference_cood_levels`` table.

The reference CSV has one row per (model, κ, severity level) with the columns ``severity level``,
``percentile``, ``ood-auroc``, ``ood_avg_conf``, ``id-acc``, ``id-auroc``, ``id_avg_conf``, ``model name``,
``confidence function`` and optionally ``model name - confidence function``; code-generated files add
``id dataset`` and ``ood dataset`` and write κ as ``<κ>_<key>`` (``softmax_confidences``). Percentiles carry float
noise (``0.30000000000000004``), so the table keys on the level and stores the percentile rounded to one decimal
(the raw value is kept in ``percentile_raw``). κ is translated to our names (``softmax`` → ``msp``) so that a join
on (architecture name, kappa, level) compares our levels with the published ones.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from common import KAPPA_FROM_PUBLISHED

_REQUIRED = {
    "severity level": "level",
    "percentile": "percentile_raw",
    "ood-auroc": "ood_auroc",
    "ood_avg_conf": "ood_avg_conf",
    "id-acc": "id_accuracy",
    "id-auroc": "id_auroc",
    "id_avg_conf": "id_avg_conf",
    "model name": "model_name",
    "confidence function": "confidence_function",
}
_OPTIONAL = {"id dataset": "id_dataset", "ood dataset": "ood_dataset"}
_IGNORED = {"model name - confidence function"}  # derived from two other columns
_NUMERIC = ("percentile_raw", "ood_auroc", "ood_avg_conf", "id_accuracy", "id_auroc", "id_avg_conf")


def our_kappa(confidence_function: pl.Expr) -> pl.Expr:
    """Published κ name -> ours: exact names, then ``<name>_<key>`` of a known name; others unchanged."""
    result = confidence_function.replace_strict(KAPPA_FROM_PUBLISHED, default=None, return_dtype=pl.String)
    for published in sorted(KAPPA_FROM_PUBLISHED, key=len, reverse=True):
        result = (
            pl.when(result.is_null() & confidence_function.str.starts_with(published + "_"))
            .then(pl.lit(KAPPA_FROM_PUBLISHED[published]))
            .otherwise(result)
        )
    return result.fill_null(confidence_function)


def read_reference_csv(path: Path) -> pl.DataFrame:
    """Rows of ``reference_cood_levels`` from a published C-OOD results CSV.

    Raises ValueError naming the problem for a missing file, missing or unknown columns, non-numeric metric
    values, negative or fractional levels, or a (model name, κ, level) that appears twice.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"reference CSV not found: {path}")
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path} as CSV: {' '.join(str(exc).split())[:200]}") from None
    index_like = [c for c in raw.columns if c == "" or c.startswith("Unnamed") or c == "index"]
    missing = [c for c in _REQUIRED if c not in raw.columns]
    if missing:
        raise ValueError(f"{path.name} lacks the reference column(s) {', '.join(repr(c) for c in missing)}")
    known = set(_REQUIRED) | set(_OPTIONAL) | _IGNORED | set(index_like)
    unknown = [c for c in raw.columns if c not in known]
    if unknown:
        raise ValueError(f"{path.name} has column(s) the reference format does not: {', '.join(unknown)}")
    renames = {**_REQUIRED, **{k: v for k, v in _OPTIONAL.items() if k in raw.columns}}
    frame = raw.select([pl.col(src).str.strip_chars().alias(dst) for src, dst in renames.items()])
    for column in _NUMERIC:
        parsed = frame.get_column(column).cast(pl.Float64, strict=False)
        bad = frame.filter(parsed.is_null() & frame.get_column(column).is_not_null())
        if bad.height:
            value = bad.get_column(column)[0]
            raise ValueError(f"{path.name}: column {column!r} holds a non-number ({value!r}) in {bad.height} row(s)")
        frame = frame.with_columns(parsed.alias(column))
    level = frame.get_column("level").cast(pl.Float64, strict=False)
    if level.is_null().any() or (level < 0).any() or (level != level.floor()).any():
        raise ValueError(f"{path.name}: 'severity level' must hold whole numbers >= 0")
    frame = frame.with_columns(
        level.cast(pl.Int32).alias("level"),
        pl.col("percentile_raw").round(1).alias("percentile"),
        our_kappa(pl.col("confidence_function")).alias("kappa"),
        pl.lit(path.name).alias("source_file"),
    )
    if frame.select(["model_name", "kappa", "confidence_function"]).null_count().sum_horizontal().item():
        raise ValueError(f"{path.name}: 'model name' and 'confidence function' must not be empty")
    repeated = frame.height - frame.select(["model_name", "kappa", "level"]).n_unique()
    if repeated:
        raise ValueError(f"{path.name}: {repeated} row(s) repeat a (model name, confidence function, severity level)")
    return frame
