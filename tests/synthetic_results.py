"""Synthetic results for tests and benchmarks: plausible rows for every table, and per-sample Parquet outputs.

A test fixture, not part of the installed package: tests import it as ``synthetic_results`` (pytest puts
``tests/`` on ``sys.path``), benchmarks/bench_results.py puts ``tests/`` on ``sys.path`` itself.

Values follow the shapes of real results (accuracy 0.6–0.9, OOD AUROC falling from about 0.95 at level 0 to
about 0.6 at level 10, hierarchical rules improving hAURC over Selective) but are random draws from a seeded
generator, not measurements. Everything is vectorised over models, so 500 models take milliseconds.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from common import atomic_output
from results.schema import TABLES

KAPPAS = ("msp", "neg_entropy", "max_logit")
RULES = ("selective", "climbing", "max_coverage", "jumping")
RISKS = ("01", "severity")
CALIBRATION_METHODS = ("quantile", "conformal", "pac")
ID_DATASET = "imagenet_val"
OOD_DATASET = "imagenet21k_ood"
RUN_ID = "run-synthetic-0001"
_ARCHITECTURES = ("resnet50.a1_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k", "convnext_tiny.fb_in1k")


def synthetic_model_ids(n_models: int) -> list[str]:
    """``n_models`` distinct model ids in the zoo's ``<source>-<name>.<tag>`` form."""
    return [
        f"timm-{_ARCHITECTURES[i % len(_ARCHITECTURES)]}" + (f"-v{i // len(_ARCHITECTURES)}" if i >= 3 else "")
        for i in range(n_models)
    ]


def _repeat(values: np.ndarray | list, times: int) -> np.ndarray:
    return np.repeat(np.asarray(values), times)


def _tile(values: np.ndarray | list | tuple, times: int) -> np.ndarray:
    return np.tile(np.asarray(values), times)


def synthetic_frames(
    n_models: int = 3, seed: int = 0, curve_points: int = 20, classes_per_level: int = 5, num_levels: int = 11
) -> dict[str, pl.DataFrame]:
    """Rows for every table of ``results.schema.TABLES`` for ``n_models`` models, keyed by table name.

    Per model: 2 run tasks (one more failed task in all), 6 selective_metrics rows (3 κ × TS off/on), each
    with a ``curve_points``-point selective_curves curve ending at (coverage 1, risk 1 − accuracy) and, for MSP,
    15 reliability_bins whose Σ count·|mean_conf − accuracy| / n is the row's ece15, ``num_levels`` × 3 κ
    cood_levels rows, 16 hsc_rules rows (4 rules × TS × 2 risks), ``curve_points`` points per hsc curve,
    3 methods × 2 α hsc_calibration rows, and published C-OOD and HSC rows for the first three models (with
    their reference_models rows).
    """
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1, got {n_models}")
    rng = np.random.default_rng(seed)
    models = np.asarray(synthetic_model_ids(n_models))
    started = dt.datetime(2026, 11, 23, 9, 0, 0)
    frames: dict[str, pl.DataFrame] = {}

    frames["runs"] = pl.DataFrame(
        {
            "run_id": [RUN_ID],
            "started_at": [started],
            "finished_at": [started + dt.timedelta(minutes=42)],
            "status": ["ok"],
            "error": [None],
            "code_version": ["0.1.0+synthetic"],
            "torch_version": ["2.14.1"],
            "timm_version": ["1.0.31"],
            "device": ["cpu"],
            "precision": ["fp32"],
            "config": [json.dumps({"models": models.tolist()[:3], "seed": seed})],
        }
    )
    params = rng.integers(5_000_000, 300_000_000, n_models)
    frames["models"] = pl.DataFrame(
        {
            "model_id": models,
            "spec": np.char.add("timm:", np.char.partition(models, "-")[:, 2]),
            "source": ["timm"] * n_models,
            "name": [m.split("-")[1].split(".")[0] for m in models],
            "pretrained_tag": [m.split("-")[1].split(".")[1] if "." in m else None for m in models],
            "pretrained": [True] * n_models,
            "params": params,
            "input_size": [224] * n_models,
            "crop_pct": [0.875] * n_models,
            "crop_mode": ["center"] * n_models,
            "interpolation": ["bicubic"] * n_models,
            "mean": [[0.485, 0.456, 0.406]] * n_models,
            "std": [[0.229, 0.224, 0.225]] * n_models,
            "preprocess_signature": ["224/0.875/center/bicubic"] * n_models,
            "weights_sha256": [f"{i:064x}" for i in range(n_models)],
            "pretrained_cfg": [json.dumps({"num_classes": 1000})] * n_models,
            "run_id": [RUN_ID] * n_models,
        }
    ).hstack(_synthetic_regimes(models))
    datasets = np.asarray([ID_DATASET, OOD_DATASET])
    frames["run_tasks"] = pl.DataFrame(
        {
            "run_id": [RUN_ID] * (2 * n_models),
            "model_id": _repeat(models, 2),
            "dataset": _tile(datasets, n_models),
            "shard": np.zeros(2 * n_models, dtype=np.int32),
            "status": ["ok"] * (2 * n_models),
            "error": [None] * (2 * n_models),
            "n_samples": _tile([50_000, 210_000], n_models),
            "n_bad_files": _tile([0, 2], n_models),
            "seconds": rng.uniform(30, 600, 2 * n_models),
            "attempts": np.ones(2 * n_models, dtype=np.int32),
            "output_path": [f"outputs/model={m}/dataset={d}/part-00000.parquet" for m in models for d in datasets],
        }
    )
    failed_task = pl.DataFrame(
        {
            "run_id": [RUN_ID],
            "model_id": [models[0]],
            "dataset": [OOD_DATASET],
            "shard": [1],
            "status": ["failed"],
            "error": ["RuntimeError: CUDA out of memory at batch size 1"],
            "attempts": [3],
        }
    )
    frames["run_tasks"] = pl.concat([frames["run_tasks"], failed_task], how="diagonal_relaxed")
    frames["datasets"] = pl.DataFrame(
        {
            "dataset": datasets,
            "kind": ["id", "ood"],
            "root": ["/data/imagenet/val", "/data/imagenet21k"],
            "n_samples": [50_000, 210_000],
            "n_classes": [1000, 21_000],
            "manifest_sha256": ["a" * 64, "b" * 64],
        }
    )
    frames["bad_files"] = pl.DataFrame(
        {
            "dataset": [OOD_DATASET, OOD_DATASET],
            "sample_id": ["n01234567/n01234567_17.JPEG", "n07654321/n07654321_3.JPEG"],
            "error": ["cannot identify image file", "truncated JPEG"],
        }
    )

    accuracy = rng.uniform(0.6, 0.9, n_models)
    # selective_metrics: model × κ × TS
    n_sel = n_models * len(KAPPAS) * 2
    sel_acc = _repeat(accuracy, len(KAPPAS) * 2)
    ts = _tile([False, True], n_models * len(KAPPAS))
    auroc = rng.uniform(0.78, 0.88, n_sel)
    aurc = (1 - sel_acc) * rng.uniform(0.25, 0.4, n_sel)
    frames["selective_metrics"] = pl.DataFrame(
        {
            "model_id": _repeat(models, len(KAPPAS) * 2),
            "kappa": _tile(_repeat(list(KAPPAS), 2), n_models),
            "temperature_scaled": ts,
            "subset": np.where(ts, "ts_eval", "all"),
            "n": np.where(ts, 45_000, 50_000),
            "accuracy": sel_acc,
            "auroc": auroc,
            "aurc": aurc,
            "eaurc": aurc * rng.uniform(0.3, 0.6, n_sel),
            "augrc": aurc * rng.uniform(0.4, 0.7, n_sel),
            "ece15": np.where(ts, 0.01, 0.04) * rng.uniform(0.5, 1.5, n_sel),
            "mce15": rng.uniform(0.05, 0.2, n_sel),
            "aece": rng.uniform(0.005, 0.05, n_sel),
            "sac95": rng.uniform(0.3, 0.8, n_sel),
            "sac99": rng.uniform(0.05, 0.4, n_sel),
            "temperature": np.where(ts, rng.uniform(0.8, 1.6, n_sel), 1.0),
            "bin_convention": ["(lo,hi]"] * n_sel,
        }
    )

    frames["selective_curves"] = _selective_curves(frames["selective_metrics"], curve_points, rng)
    frames["reliability_bins"] = _reliability_bins(frames["selective_metrics"].filter(pl.col("kappa") == "msp"), rng)

    # cood_levels: model × κ × level; AUROC falls with level
    n_pairs = n_models * len(KAPPAS)
    n_cood = n_pairs * num_levels
    levels = _tile(np.arange(num_levels), n_pairs)
    start_auroc = _repeat(rng.uniform(0.9, 0.98, n_pairs), num_levels)
    end_auroc = _repeat(rng.uniform(0.55, 0.7, n_pairs), num_levels)
    fraction = levels / (num_levels - 1)
    ood_auroc = start_auroc + (end_auroc - start_auroc) * fraction**1.3
    cood_models = _repeat(models, len(KAPPAS) * num_levels)
    cood_kappas = _tile(_repeat(list(KAPPAS), num_levels), n_models)
    id_acc = _repeat(accuracy, len(KAPPAS) * num_levels)
    frames["cood_levels"] = pl.DataFrame(
        {
            "model_id": cood_models,
            "kappa": cood_kappas,
            "kappa_params": ["{}"] * n_cood,
            "level": levels.astype(np.int32),
            "num_levels": np.full(n_cood, num_levels, dtype=np.int32),
            "percentile": fraction,
            "start_index": (fraction * 20_000).astype(np.int32),
            "severity": 0.2 + 0.6 * fraction,
            "n_id": np.full(n_cood, 50_000),
            "n_ood": np.full(n_cood, 50_000),
            "ood_auroc": ood_auroc,
            "fpr95": np.clip(1.6 * (1 - ood_auroc), 0, 1),
            "fpr95_oodpos": np.clip(1.5 * (1 - ood_auroc), 0, 1),
            "aupr_in": np.clip(ood_auroc + 0.01, 0, 1),
            "aupr_out": np.clip(ood_auroc - 0.01, 0, 1),
            "ood_avg_conf": 0.3 + 0.4 * fraction,
            "id_accuracy": id_acc,
            "id_auroc": _repeat(rng.uniform(0.8, 0.88, n_pairs), num_levels),
            "id_avg_conf": id_acc + 0.03,
            "pool_version": ["in21k-pool-v1"] * n_cood,
            "class_list_sha256": ["c" * 64] * n_cood,
            "split_seed": np.zeros(n_cood, dtype=np.int64),
            "K": np.full(n_cood, 20_000, dtype=np.int32),
            "run_id": [RUN_ID] * n_cood,
            "code_sha": ["0" * 40] * n_cood,
        }
    )
    # the published table for the first three architectures (distinct names): our levels plus noise
    published = frames["cood_levels"].head(min(n_models, 3) * len(KAPPAS) * num_levels)
    names = frames["models"].select("model_id", "name")
    published_kappa = {"msp": "softmax", "neg_entropy": "entropy", "max_logit": "max_logit"}
    frames["reference_cood_levels"] = published.join(names, on="model_id").select(
        pl.col("name").alias("model_name"),
        "kappa",
        "level",
        pl.col("percentile").round(1),
        pl.col("kappa").replace_strict(published_kappa).alias("confidence_function"),
        pl.col("percentile").alias("percentile_raw"),
        (pl.col("ood_auroc") + rng.normal(0.0, 0.004, published.height)).alias("ood_auroc"),
        "ood_avg_conf",
        "id_accuracy",
        "id_auroc",
        "id_avg_conf",
        pl.lit(None, dtype=pl.String).alias("id_dataset"),
        pl.lit(None, dtype=pl.String).alias("ood_dataset"),
        pl.lit("synthetic_reference.csv").alias("source_file"),
    )
    n_classes = n_pairs * num_levels * classes_per_level
    class_index = np.arange(n_classes) % (num_levels * classes_per_level)
    frames["cood_level_classes"] = pl.DataFrame(
        {
            "model_id": _repeat(models, len(KAPPAS) * num_levels * classes_per_level),
            "kappa": _tile(_repeat(list(KAPPAS), num_levels * classes_per_level), n_models),
            "level": (class_index // classes_per_level).astype(np.int32),
            "wnid": np.char.add("n", np.char.zfill((9_000_000 + class_index).astype(str), 8)),
        }
    )
    frames["cood_class_severity"] = pl.DataFrame(
        {
            "model_id": frames["cood_level_classes"]["model_id"],
            "kappa": frames["cood_level_classes"]["kappa"],
            "wnid": frames["cood_level_classes"]["wnid"],
            "s": rng.uniform(0.1, 0.9, n_classes),
            "n_est": np.full(n_classes, 10, dtype=np.int32),
        }
    )

    # hsc_rules: model × rule × TS × risk_type; hierarchical rules beat Selective
    per_model = len(RULES) * 2 * len(RISKS)
    n_rules = n_models * per_model
    rule_col = _tile(_repeat(list(RULES), 2 * len(RISKS)), n_models)
    base = _repeat((1 - accuracy) * 0.35, per_model)
    improvement = np.select(
        [rule_col == "selective", rule_col == "climbing", rule_col == "max_coverage"],
        [0.0, 0.12, 0.08],
        0.05,
    ) * rng.uniform(0.7, 1.3, n_rules)
    haurc = base * (1 - improvement)
    frames["hsc_rules"] = pl.DataFrame(
        {
            "model_id": _repeat(models, per_model),
            "rule": rule_col,
            "temperature_scaled": _tile(_repeat([False, True], len(RISKS)), n_models * len(RULES)),
            "risk_type": _tile(list(RISKS), n_models * len(RULES) * 2),
            "haurc": haurc,
            "gain": 100.0 * improvement,
            "grid": [None] * n_rules,
            "hierarchy_id": ["imagenet1k-wordnet3.0"] * n_rules,
        }
    )
    # hsc_curves: each rule row gets curve_points points; coverage falls and risk falls with theta
    theta = _tile(np.linspace(0.0, 1.0, curve_points), n_rules)
    curve_base = _repeat(haurc, curve_points)
    frames["hsc_curves"] = pl.DataFrame(
        {
            "model_id": _repeat(frames["hsc_rules"]["model_id"].to_numpy(), curve_points),
            "rule": _repeat(rule_col, curve_points),
            "temperature_scaled": _repeat(frames["hsc_rules"]["temperature_scaled"].to_numpy(), curve_points),
            "risk_type": _repeat(frames["hsc_rules"]["risk_type"].to_numpy(), curve_points),
            "point": _tile(np.arange(curve_points, dtype=np.int32), n_rules),
            "theta": theta,
            "coverage": 1.0 - 0.9 * theta**2,
            "risk": 2.5 * curve_base * (1.0 - theta) ** 1.5,
        }
    )
    alphas = (0.05, 0.1)
    n_cal = n_models * len(CALIBRATION_METHODS) * len(alphas)
    cal_alpha = _tile(alphas, n_models * len(CALIBRATION_METHODS))
    frames["hsc_calibration"] = pl.DataFrame(
        {
            "model_id": _repeat(models, len(CALIBRATION_METHODS) * len(alphas)),
            "method": _tile(_repeat(list(CALIBRATION_METHODS), len(alphas)), n_models),
            "alpha": cal_alpha,
            "delta": [
                0.1 if m == "pac" else None for m in _tile(_repeat(list(CALIBRATION_METHODS), len(alphas)), n_models)
            ],
            "n_cal": np.full(n_cal, 5_000),
            "repetitions": np.full(n_cal, 1_000, dtype=np.int32),
            "seed": np.zeros(n_cal, dtype=np.int64),
            "theta_mean": rng.uniform(0.3, 0.8, n_cal),
            "accuracy_mean": 1 - cal_alpha + rng.uniform(0.0, 0.01, n_cal),
            "accuracy_error": rng.uniform(0.001, 0.004, n_cal),
            "coverage_mean": rng.uniform(0.6, 0.95, n_cal),
            "violation_rate": rng.uniform(0.0, 0.12, n_cal),
        }
    )
    _published_hsc(frames, models[:3].tolist(), rng)
    return {name: frame for name, frame in frames.items() if name in TABLES}


DETECTORS = ("det_knn", "det_mahalanobis", "det_vim")


def add_detectors(
    frames: dict[str, pl.DataFrame], detectors: tuple[str, ...] = DETECTORS, seed: int = 0
) -> dict[str, pl.DataFrame]:  # fmt: skip
    """``frames`` (of :func:`synthetic_frames`) with rows for feature-space detector κ (``det_<name>``) added as the
    C-OOD and selective analyses write them: per model and detector, the model's MSP cood_levels rows with an OOD
    AUROC of MSP's plus a gain that changes linearly from level 0 to the last level (start and end drawn in
    [-0.05, 0.1], so some detectors lose their advantage on the hardest levels) plus noise, clipped to [0, 1]; and
    selective_metrics rows without TS on subsets ``all`` and ``ts_eval`` with the model's accuracy, a drawn AUROC
    and AURC, and ECE NULL (a detector's score is not a probability). Other tables are unchanged."""
    rng = np.random.default_rng(seed)
    out = dict(frames)
    msp = frames["cood_levels"].filter(pl.col("kappa") == "msp")
    parts = []
    for detector in detectors:
        n_models = msp["model_id"].n_unique()
        start, end = rng.uniform(-0.05, 0.1, n_models), rng.uniform(-0.05, 0.1, n_models)
        index = msp["model_id"].rank("dense").cast(pl.Int64).to_numpy() - 1
        fraction = (msp["level"] / (msp["num_levels"] - 1).clip(1)).to_numpy()
        gain = start[index] + (end[index] - start[index]) * fraction + rng.normal(0.0, 0.01, msp.height)
        parts.append(msp.with_columns(pl.lit(detector).alias("kappa"),
                                      (pl.col("ood_auroc") + gain).clip(0.0, 1.0).alias("ood_auroc")))  # fmt: skip
    out["cood_levels"] = pl.concat([frames["cood_levels"], *parts])
    selective = frames["selective_metrics"].filter((pl.col("kappa") == "msp") & ~pl.col("temperature_scaled"))
    rows = []
    for detector in detectors:
        for subset, n in (("all", 50_000), ("ts_eval", 45_000)):
            rows.append(
                selective.with_columns(
                    pl.lit(detector).alias("kappa"), pl.lit(subset).alias("subset"),
                    pl.lit(n, dtype=pl.Int64).alias("n"),
                    pl.Series("auroc", rng.uniform(0.7, 0.92, selective.height)),
                    (pl.col("aurc") * rng.uniform(0.8, 1.3, selective.height)).alias("aurc"),
                    pl.lit(None, dtype=pl.Float64).alias("ece15"), pl.lit(None, dtype=pl.Float64).alias("mce15"),
                    pl.lit(None, dtype=pl.Float64).alias("aece"), pl.lit(None, dtype=pl.String).alias("bin_convention"),
                )
            )  # fmt: skip
    out["selective_metrics"] = pl.concat([frames["selective_metrics"], *rows])
    return out


def _synthetic_regimes(models: np.ndarray) -> pl.DataFrame:
    """The training-regime columns of ``models`` (ids ``timm-<name>.<tag>[-v<i>]``): the rules of
    :func:`results.model_metadata.classify` on ``name.tag``, then, so that every regime comparison has pairs, model
    i with i % 5 == 4 is distilled and (when not distilled) i % 7 == 6 is a CLIP model (``metadata_source``
    ``override``, as an override file would set them)."""
    from results.model_metadata import classify

    rows = []
    for index, model_id in enumerate(models.tolist()):
        row = classify(model_id.removeprefix("timm-").split("-v")[0], source="timm").row()
        if index % 5 == 4:
            row.update(distilled=True, metadata_source="override")
        elif index % 7 == 6:
            row.update(clip=True, metadata_source="override")
        rows.append(row)
    return pl.DataFrame(rows, schema={"family": pl.String, "pretraining": pl.String, "distilled": pl.Boolean,
                                      "self_supervised": pl.Boolean, "semi_supervised": pl.Boolean,
                                      "clip": pl.Boolean, "adversarial": pl.Boolean, "metadata_source": pl.String})


def _published_hsc(frames: dict[str, pl.DataFrame], models: list[str], rng: np.random.Generator) -> None:
    """The published HSC table (reference_hsc_metrics: hAURC and Accuracy) for ``models`` under their timm
    ``name.tag`` (our values plus noise), and reference_models for every published name of both tables."""
    from results.reference import reference_models

    rules = frames["hsc_rules"].filter(pl.col("model_id").is_in(models))
    suffix = pl.when(pl.col("temperature_scaled")).then(pl.lit("_TS")).otherwise(pl.lit(""))
    published_rule = pl.col("rule").replace({"max_coverage": "maxcoverage"})
    haurc = rules.select(
        pl.col("model_id").str.strip_prefix("timm-").alias("model_name"),
        pl.concat_str(pl.lit("hAURC_"), published_rule, pl.lit("_"), pl.col("risk_type").replace({"severity": "hier"}),
                      suffix).alias("column_name"),
        pl.lit("hAURC").alias("metric"), "temperature_scaled", "rule", "risk_type",
        (pl.col("haurc") + rng.normal(0.0, 0.001, rules.height)).alias("value"),
        pl.lit("fraction").alias("unit"), pl.lit("hsc_rules.haurc").alias("ours"),
    )
    selective = frames["selective_metrics"].filter(pl.col("model_id").is_in(models) & (pl.col("kappa") == "msp"))
    accuracy = selective.select(
        pl.col("model_id").str.strip_prefix("timm-").alias("model_name"),
        pl.concat_str(pl.lit("Accuracy"), suffix).alias("column_name"), pl.lit("Accuracy").alias("metric"),
        "temperature_scaled", pl.lit(None, pl.String).alias("rule"), pl.lit(None, pl.String).alias("risk_type"),
        pl.col("accuracy").round(5).alias("value"), pl.lit("fraction").alias("unit"),
        pl.lit("selective_metrics.accuracy").alias("ours"),
    )
    frames["reference_hsc_metrics"] = pl.concat([haurc, accuracy]).with_columns(
        pl.lit("synthetic_hsc.csv").alias("source_file")
    )
    names = [*frames["reference_hsc_metrics"]["model_name"].unique(maintain_order=True),
             *frames["reference_cood_levels"]["model_name"].unique(maintain_order=True)]
    frames["reference_models"] = reference_models(names)


def write_published_cood_csv(path: Path, n_models: int = 707, seed: int = 0) -> Path:
    """A C-OOD results table in the published CSV format (cood.md §4; columns of the paper's
    ``all_paper_results.csv``) for ``n_models`` model names × κ (softmax, entropy) × 11 levels, percentiles with the
    paper's float noise. The first names are the synthetic architectures' (``resnet50`` …), so they match
    :func:`synthetic_frames` models by name; the rest are ``published_model_<i>``. Written atomically."""
    rng = np.random.default_rng(seed)
    names = [a.split(".")[0] for a in _ARCHITECTURES] + [f"published_model_{i:04d}" for i in range(n_models)]
    names = names[:n_models]
    functions = ("softmax", "entropy")
    levels = np.arange(11)
    rows = []
    for name in names:
        accuracy = rng.uniform(0.55, 0.9)
        for function in functions:
            start, end = rng.uniform(0.88, 0.97), rng.uniform(0.55, 0.72)
            for level in levels:
                auroc = start + (end - start) * (level / 10) ** 1.3
                rows.append(
                    {
                        "severity level": int(level),
                        "percentile": level * 0.1,  # 0.30000000000000004, as published
                        "ood-auroc": auroc,
                        "ood_avg_conf": 0.2 + 0.05 * level,
                        "id-acc": accuracy,
                        "id-auroc": 0.85,
                        "id_avg_conf": accuracy + 0.02,
                        "model name": name,
                        "confidence function": function,
                        "model name - confidence function": f"{name}-{function}",
                    }
                )
    with atomic_output(path) as tmp:
        pl.DataFrame(rows).write_csv(tmp)
    return Path(path)


# The header of the HSC paper's models comparison table (its models_comparison_full.csv), in the published order.
PUBLISHED_HSC_COLUMNS = (
    "Architecture", "Accuracy", "Accuracy_TS", "AUROC", "AUROC_TS", "ECE_15", "ECE_15_TS", "MCE_15", "MCE_15_TS",
    "Gamma Correlation", "Gamma Correlation_TS", "Parameters #", "AURC", "AURC_TS", "Confidence Mean",
    "Confidence Mean_TS", "Confidence Median", "Confidence Median_TS", "Confidence GINI", "Confidence GINI_TS",
    "Confidence Variance", "Confidence Variance_TS", "A-ECE", "A-ECE_TS", "A-MCE", "A-MCE_TS", "Parameters # Trainable",
    "ECE_10", "ECE_10_TS", "MCE_10", "MCE_10_TS", "ECE_30", "ECE_30_TS", "MCE_30", "MCE_30_TS", "ECE_50", "ECE_50_TS",
    "MCE_50", "MCE_50_TS", "input size", "Temperature",
    *(f"Coverage_for_Accuracy_{a}{s}" for a in (95, 99, 98, 97, 96) for s in ("", "_nonstrict", "_TS",
                                                                               "_nonstrict_TS")),
    "EAURC", "EAURC_TS",
    *(f"{m}_{r}_{k}{t}" for t in ("", "_TS")
      for m, rules in (("hAURC", ("selective", "climbing", "jumping", "maxcoverage")),
                       ("Gain", ("climbing", "jumping", "maxcoverage")))
      for k in ("01", "hier") for r in rules),
)  # fmt: skip
# (architecture, tag) pairs of the generated published HSC models: a plain model and regime variants of the same
# architecture (distilled, in21k/in22k, CLIP, semi- and self-supervised), so that regime_pairs finds pairs.
_PUBLISHED_HSC_VARIANTS = (
    ("deit_base_patch16_224", "fb_in1k"), ("deit_base_distilled_patch16_224", "fb_in1k"),
    ("vit_base_patch16_224", "augreg_in1k"), ("vit_base_patch16_224", "augreg_in21k_ft_in1k"),
    ("vit_base_patch16_clip_224", "openai_ft_in1k"), ("resnet50", "tv_in1k"), ("resnet50", "fb_swsl_ig1b_ft_in1k"),
    ("resnet50", "fb_ssl_yfcc100m_ft_in1k"), ("convnext_tiny", "fb_in1k"), ("convnext_tiny", "fb_in22k_ft_in1k"),
)  # fmt: skip


def published_hsc_names(n_models: int) -> list[str]:
    """``n_models`` model names of :func:`write_published_hsc_csv`: the three synthetic architectures'
    ``name.tag`` (``resnet50.a1_in1k`` …, which map to the first three :func:`synthetic_frames` model ids), then
    ``<architecture>_v<i>.<tag>`` over the variants above (``deit_base_distilled_patch16_224_v0.fb_in1k``)."""
    names = list(_ARCHITECTURES)
    index = 0
    while len(names) < n_models:
        arch, tag = _PUBLISHED_HSC_VARIANTS[index % len(_PUBLISHED_HSC_VARIANTS)]
        names.append(f"{arch}_v{index // len(_PUBLISHED_HSC_VARIANTS)}.{tag}")
        index += 1
    return names[:n_models]


def write_published_hsc_csv(path: Path, n_models: int = 1116, seed: int = 0) -> Path:
    """The HSC paper's per-model comparison table in its published CSV format (:data:`PUBLISHED_HSC_COLUMNS`, one
    row per model of :func:`published_hsc_names`): Accuracy in percent, hAURC per rule below Selective's with
    ``Gain_<rule> = 100·(hAURC_selective − hAURC_rule) / hAURC_selective`` as the paper defines it, and the CLIP
    rows' Gain cells ``NaN`` as published. Random draws from a seeded generator; written atomically."""
    rng = np.random.default_rng(seed)
    names = published_hsc_names(n_models)
    n = len(names)
    data: dict[str, object] = {"Architecture": names}
    for column in PUBLISHED_HSC_COLUMNS[1:]:
        data[column] = rng.uniform(0.01, 0.2, n)  # ECE, MCE, coverage, confidence statistics: plausible fractions
    for suffix in ("", "_TS"):
        accuracy = rng.uniform(55.0, 90.0, n)
        data[f"Accuracy{suffix}"] = accuracy
        data[f"AUROC{suffix}"] = rng.uniform(0.78, 0.9, n)
        data[f"AURC{suffix}"] = (1 - accuracy / 100) * rng.uniform(0.25, 0.4, n)
        data[f"EAURC{suffix}"] = data[f"AURC{suffix}"] * rng.uniform(0.3, 0.6, n)
        clip = np.asarray(["clip" in name for name in names])
        for risk in ("01", "hier"):
            selective = (1 - accuracy / 100) * rng.uniform(0.3, 0.4, n)
            data[f"hAURC_selective_{risk}{suffix}"] = selective
            for rule, gain in (("climbing", 0.12), ("jumping", 0.05), ("maxcoverage", 0.08)):
                haurc = selective * (1 - gain * rng.uniform(0.5, 1.5, n))
                data[f"hAURC_{rule}_{risk}{suffix}"] = haurc
                data[f"Gain_{rule}_{risk}{suffix}"] = np.where(clip, np.nan, 100 * (selective - haurc) / selective)
    data["Parameters #"] = rng.integers(5_000_000, 300_000_000, n)
    data["Parameters # Trainable"] = data["Parameters #"]
    data["input size"] = np.full(n, 224)
    data["Temperature"] = rng.uniform(0.8, 1.6, n)
    with atomic_output(path) as tmp:
        pl.DataFrame(data).select(PUBLISHED_HSC_COLUMNS).write_csv(tmp, float_precision=None)
    return Path(path)


def _selective_curves(metrics: pl.DataFrame, points: int, rng: np.random.Generator) -> pl.DataFrame:
    """``points`` risk–coverage points per selective_metrics row: risk (1 − accuracy)·coverage^γ, γ ∈ [1, 2.5]."""
    rows = metrics.height
    n = _repeat(metrics["n"].to_numpy(), points)
    accepted = -(-n * _tile(np.arange(1, points + 1), rows) // points)  # ⌈n·(j+1)/points⌉, the last one n
    coverage = accepted / n
    gamma = _repeat(rng.uniform(1.0, 2.5, rows), points)
    return pl.DataFrame(
        {
            **{key: _repeat(metrics[key].to_numpy(), points) for key in ("model_id", "kappa", "temperature_scaled",
                                                                         "subset")},
            "point": _tile(np.arange(points, dtype=np.int32), rows),
            "accepted": accepted,
            "coverage": coverage,
            "risk": _repeat(1.0 - metrics["accuracy"].to_numpy(), points) * coverage**gamma,
            "threshold": 1.0 - 0.9 * coverage**2,
            "run_id": [RUN_ID] * (rows * points),
        }
    )


def _reliability_bins(msp: pl.DataFrame, rng: np.random.Generator, bins: int = 15) -> pl.DataFrame:
    """``bins`` equal-width bins per MSP row, the lowest two empty, every other bin over-confident by the row's
    ece15 (so Σ count·|mean_conf − accuracy| / n = ece15), counts growing with confidence and summing to n."""
    rows = msp.height
    edges = np.linspace(0, 1, bins + 1, dtype=np.float32).astype(np.float64)
    weights = np.where(np.arange(bins) >= 2, np.exp(0.35 * np.arange(bins)), 0.0)
    n = msp["n"].to_numpy()
    count = np.floor(np.outer(n, weights / weights.sum())).astype(np.int64)
    count[:, -1] += n - count.sum(axis=1)
    lo, hi = np.tile(edges[:-1], rows), np.tile(edges[1:], rows)
    mean_conf = lo + (hi - lo) * rng.uniform(0.2, 0.8, rows * bins)
    filled = count.reshape(-1) > 0
    return pl.DataFrame(
        {
            **{key: _repeat(msp[key].to_numpy(), bins) for key in ("model_id", "kappa", "temperature_scaled",
                                                                   "subset")},
            "bin": _tile(np.arange(bins, dtype=np.int32), rows),
            "lo": lo,
            "hi": hi,
            "count": count.reshape(-1),
            "mean_conf": np.where(filled, mean_conf, np.nan),
            "accuracy": np.where(filled, mean_conf - _repeat(msp["ece15"].to_numpy(), bins), np.nan),
            "bin_convention": ["(lo,hi]"] * (rows * bins),
            "run_id": [RUN_ID] * (rows * bins),
        }
    ).with_columns(pl.col("mean_conf", "accuracy").fill_nan(None))


def write_synthetic_outputs(
    workspace: Path,
    model_ids: list[str],
    n_samples: int = 2_000,
    num_classes: int = 10,
    seed: int = 0,
    dataset: str = ID_DATASET,
) -> list[Path]:
    """Per-sample Parquet outputs in the workspace layout (``outputs/model=…/dataset=…/part-00000.parquet``).

    Columns: sample_id, label (int32), logits (fixed-size float32 list of ``num_classes``), pred (int32),
    msp and max_logit (float64). Each model has its own signal strength, so accuracy and calibration differ.
    Returns the files written (atomically).
    """
    rng = np.random.default_rng(seed)
    paths = []
    for index, model_id in enumerate(model_ids):
        labels = rng.integers(0, num_classes, n_samples)
        logits = rng.normal(0.0, 1.0, (n_samples, num_classes))
        logits[np.arange(n_samples), labels] += 1.0 + 0.6 * index
        logits = (logits * (1.5 + 0.5 * index)).astype(np.float32)
        shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        msp = 1.0 / np.exp(shifted).sum(axis=1)
        table = pa.table(
            {
                "sample_id": pa.array([f"val/{i:08d}.JPEG" for i in range(n_samples)]),
                "label": pa.array(labels.astype(np.int32)),
                "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), num_classes),
                "pred": pa.array(logits.argmax(axis=1).astype(np.int32)),
                "msp": pa.array(msp),
                "max_logit": pa.array(logits.max(axis=1).astype(np.float64)),
            }
        )
        path = Path(workspace) / "outputs" / f"model={model_id}" / f"dataset={dataset}" / "part-00000.parquet"
        with atomic_output(path) as tmp:
            pq.write_table(table, tmp)
        paths.append(path)
    return paths
