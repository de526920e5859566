"""Published C-OOD results (cood.md §4) as rows of the ``reference_cood_levels`` table.

The reference CSV has one row per (model, κ, severity level) with the columns ``severity level``,
``percentile``, ``ood-auroc``, ``ood_avg_conf``, ``id-acc``, ``id-auroc``, ``id_avg_conf``, ``model name``,
``confidence function`` and optionally ``model name - confidence function``; code-generated files add
``id dataset`` and ``ood dataset`` and write κ as ``<κ>_<key>`` (``softmax_confidences``). Percentiles carry float
noise (``0.30000000000000004``), so the table keys on the level and stores the percentile rounded to one decimal
(the raw value is kept in ``percentile_raw``). κ is translated to our names (``softmax`` → ``msp``) so that a join
on (architecture name, kappa, level) compares our levels with the published ones.

The HSC paper's per-model comparison table (hsc.md §7, selective.md §7: header ``Architecture,Accuracy,Accuracy_TS,
AUROC,…``, one row per model) becomes rows of ``reference_hsc_metrics``, one per (model, published column):
:func:`read_hsc_csv`. Both imports add one ``reference_models`` row per published model name with its training
regime (:mod:`results.model_metadata`, the rules our own ``models`` rows use) and, where the name maps to one, our
model id (:func:`reference_models`). :func:`detect_format` tells the two tables apart by their header.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import polars as pl

from common import KAPPA_FROM_PUBLISHED
from results.model_metadata import Overrides, classify, parse_model_id
from results.schema import table_frame

COOD_FORMAT = "cood"
HSC_FORMAT = "hsc"

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


def detect_format(path: Path) -> str:
    """:data:`COOD_FORMAT` or :data:`HSC_FORMAT` from the CSV's header (C-OOD: ``severity level`` and ``model name``
    columns; HSC: first column ``Architecture``); ValueError with one line for a missing file or another header."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"reference CSV not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read {path} as CSV: {exc}") from None
    header = [column.strip() for column in header]
    if {"severity level", "model name"} <= set(header):
        return COOD_FORMAT
    if header[:1] == ["Architecture"]:
        return HSC_FORMAT
    start = ",".join(header)[:60]
    raise ValueError(
        f"{path.name}: unknown header ({start!r}…); expected the C-OOD results table (severity level,percentile,…) "
        "or the HSC models comparison table (Architecture,Accuracy,Accuracy_TS,…)"
    )


# ---- the HSC paper's per-model table (reference_hsc_metrics) --------------------------------------------------

# Published column (without _TS) -> (unit of the stored value, the comparable column of ours or None).
_HSC_FLAT: dict[str, tuple[str, str | None]] = {
    "Accuracy": ("fraction", "selective_metrics.accuracy"),  # published in percent; stored as a fraction
    "AUROC": ("fraction", "selective_metrics.auroc_ref"),
    "Gamma Correlation": ("scalar", "selective_metrics.gamma_ref"),
    "AURC": ("fraction", "selective_metrics.aurc_ref"),
    "EAURC": ("fraction", "selective_metrics.eaurc"),
    "ECE_15": ("fraction", "selective_metrics.ece15"),
    "MCE_15": ("fraction", "selective_metrics.mce15"),
    "A-ECE": ("fraction", "selective_metrics.aece_ref"),
    "A-MCE": ("fraction", None),
    **{f"{kind}_{bins}": ("fraction", None) for kind in ("ECE", "MCE") for bins in (10, 30, 50)},
    "Confidence Mean": ("fraction", "selective_metrics.conf_mean"),
    "Confidence Median": ("fraction", "selective_metrics.conf_median"),
    "Confidence GINI": ("scalar", "selective_metrics.conf_gini"),
    "Confidence Variance": ("scalar", "selective_metrics.conf_variance"),
    **{f"Coverage_for_Accuracy_{a}": ("fraction", "selective_metrics.sac99_strict" if a == 99 else
                                      "selective_metrics.sac95_strict" if a == 95 else None)
       for a in (95, 96, 97, 98, 99)},
    **{f"Coverage_for_Accuracy_{a}_nonstrict": ("fraction", f"selective_metrics.sac{a}" if a in (95, 99) else None)
       for a in (95, 96, 97, 98, 99)},
    "Temperature": ("scalar", "selective_metrics.temperature"),  # the fitted T: stored with temperature_scaled
    "Parameters #": ("count", "models.params"),
    "Parameters # Trainable": ("count", None),
    "input size": ("pixels", "models.input_size"),
}
_PERCENT_TO_FRACTION = {"Accuracy"}
_HSC_RULE_COLUMN = re.compile(
    r"(?P<metric>hAURC|Gain)_(?P<rule>selective|climbing|jumping|maxcoverage)_(?P<risk>01|hier)"
)
_HSC_RULES = {"maxcoverage": "max_coverage"}  # published rule name -> ours (others equal)
_HSC_RISKS = {"01": "01", "hier": "severity"}
_MISSING = {"", "nan", "NaN", "NAN", "None", "null"}


def hsc_column(column: str) -> dict[str, object] | None:
    """How a published HSC column is stored: ``metric``, ``temperature_scaled``, ``rule``, ``risk_type``, ``unit``,
    ``ours``; None for a column the table does not have. ``hAURC_<rule>_<01|hier>[_TS]`` and ``Gain_…`` carry our
    rule name (``maxcoverage`` -> ``max_coverage``) and risk type (``hier`` -> ``severity``)."""
    scaled = column.endswith("_TS")
    base = column.removesuffix("_TS")
    match = _HSC_RULE_COLUMN.fullmatch(base)
    if match:
        rule = match.group("rule")
        haurc = match.group("metric") == "hAURC"
        return {
            "metric": match.group("metric"), "temperature_scaled": scaled, "rule": _HSC_RULES.get(rule, rule),
            "risk_type": _HSC_RISKS[match.group("risk")], "unit": "fraction" if haurc else "percent",
            "ours": "hsc_rules.haurc" if haurc else "hsc_rules.gain",
        }
    if base in _HSC_FLAT:
        unit, ours = _HSC_FLAT[base]
        return {"metric": base, "temperature_scaled": scaled or base == "Temperature", "rule": None,
                "risk_type": None, "unit": unit, "ours": ours}
    return None


def read_hsc_csv(path: Path) -> pl.DataFrame:
    """Rows of ``reference_hsc_metrics`` (long format: one per model and published column) from the HSC paper's
    models comparison CSV. ``Accuracy``/``Accuracy_TS`` (percent) are stored as fractions; every other value as
    published, in the unit its row names; empty and NaN cells (the CLIP rows' ``Gain_*``) are NULL.

    Raises ValueError naming the problem for a missing file, a header without ``Architecture`` first or with columns
    the table does not have, a non-number, or an architecture that appears twice.
    """
    path = Path(path)
    if detect_format(path) != HSC_FORMAT:
        raise ValueError(f"{path.name} is not the HSC models comparison table (its first column is not Architecture)")
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise ValueError(f"cannot read {path} as CSV: {' '.join(str(exc).split())[:200]}") from None
    columns = {c: hsc_column(c) for c in raw.columns[1:]}
    unknown = [c for c, how in columns.items() if how is None]
    if unknown:
        raise ValueError(f"{path.name} has column(s) the HSC table does not: {', '.join(unknown)}")
    if "Accuracy" not in columns:
        raise ValueError(f"{path.name} lacks the HSC column 'Accuracy'")
    names = raw.get_column("Architecture").str.strip_chars()
    if names.is_null().any() or (names == "").any():
        raise ValueError(f"{path.name}: 'Architecture' must not be empty")
    repeated = names.is_duplicated()
    if repeated.any():
        raise ValueError(f"{path.name}: architecture {names.filter(repeated)[0]!r} appears more than once")
    long = (
        raw.with_columns(names.alias("Architecture"))
        .unpivot(index="Architecture", variable_name="column_name", value_name="text")
        .with_columns(pl.col("text").str.strip_chars())
    )
    long = long.with_columns(
        pl.when(pl.col("text").is_in(list(_MISSING))).then(None).otherwise(pl.col("text"))
        .cast(pl.Float64, strict=False)
        .alias("value")
    )
    bad = long.filter(pl.col("value").is_null() & pl.col("text").is_not_null() & ~pl.col("text").is_in(list(_MISSING)))
    if bad.height:
        first = bad.row(0, named=True)
        raise ValueError(
            f"{path.name}: column {first['column_name']!r} holds a non-number ({first['text']!r}) "
            f"in {bad.height} cell(s)"
        )
    how = pl.DataFrame([{"column_name": c, **h} for c, h in columns.items()], infer_schema_length=None)
    long = long.join(how, on="column_name", how="left").with_columns(
        pl.when(pl.col("metric").is_in(list(_PERCENT_TO_FRACTION)))
        .then(pl.col("value") / 100.0)
        .otherwise(pl.col("value"))
        .alias("value"),
        pl.lit(path.name).alias("source_file"),
    )
    return table_frame("reference_hsc_metrics", long.rename({"Architecture": "model_name"}).drop("text"))


# ---- published model names -> our model ids and training regime (reference_models) ---------------------------

# A resolver for bare timm names of the papers' timm versions (``resnet50``, ``ssl_resnet50``): the current
# ``architecture.tag`` and how it was found (``timm_renamed`` | ``timm_default_tag``), or None. It needs timm, so the
# CLI passes ``pipelines.zoo.timm_models.published_timm_name``; without it bare names map to no model id.
Resolver = Callable[[str], "tuple[str, str] | None"]
_TIMM_NAME_TAG = re.compile(r"[a-z0-9_]+\.[a-z0-9_]+")


def clip_architecture(published: str) -> str:
    """open_clip architecture of a C-OOD ``CLIP_`` model name's part after ``CLIP_``: ``ViT-B~32`` -> ``ViT-B-32``,
    ``ViT-L~14@336px`` -> ``ViT-L-14-336``, ``RN50x4`` unchanged."""
    return re.sub(r"@(\d+)px$", r"-\1", published.replace("~", "-"))


def map_published_name(name: str, resolve: Resolver | None = None) -> tuple[str | None, str | None, str]:
    """``(model_id, mapping, name to classify)`` of a published model name.

    mapping: ``model_id`` (the name is one of our model ids, e.g. from ``cood_reference_export``), ``timm_name``
    (``architecture.tag``), ``torchvision_v1`` (``alexnet_torchvision``: torchvision's original IMAGENET1K_V1
    weights), ``clip_openai`` (``CLIP_ViT-B~32`` -> ``open_clip-ViT-B-32.openai``), or what ``resolve`` says for a
    bare timm name; ``(None, None, name)`` when nothing maps (``*_original``, ``*_facebookSWAG``, unknown names).
    """
    if parse_model_id(name) is not None:
        return name, "model_id", name
    if name.endswith("_torchvision"):
        return f"torchvision-{name.removesuffix('_torchvision')}.IMAGENET1K_V1", "torchvision_v1", name
    if name.startswith("CLIP_"):
        return f"open_clip-{clip_architecture(name.removeprefix('CLIP_'))}.openai", "clip_openai", name
    if _TIMM_NAME_TAG.fullmatch(name):
        return f"timm-{name}", "timm_name", name
    resolved = resolve(name) if resolve is not None else None
    if resolved is not None:
        full, how = resolved
        return f"timm-{full}", how, full
    return None, None, name


def reference_models(
    names: Iterable[str], *, resolve: Resolver | None = None, overrides: Overrides | None = None
) -> pl.DataFrame:
    """``reference_models`` rows of published model names: our model id where one maps
    (:func:`map_published_name`) and the training regime by :func:`results.model_metadata.classify` (of the
    timm name a bare name resolves to, when it does), then the user's ``overrides`` (keyed by published name or
    model id)."""
    rows = []
    for name in dict.fromkeys(names):
        model_id, mapping, classified = map_published_name(name, resolve)
        source = "timm" if mapping in ("timm_name", "timm_renamed", "timm_default_tag") else None
        metadata = classify(classified, source=source)
        if overrides is not None:
            metadata = overrides.apply(metadata, name, model_id)
        rows.append({"model_name": name, "model_id": model_id, "mapping": mapping, **metadata.row()})
    return table_frame("reference_models", rows)
