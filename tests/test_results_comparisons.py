"""results.comparisons, the comparison queries and ``uebench compare``: statistics against scipy and brute force,
queries against values computed by hand on a tiny database, origin-only databases, CLI errors."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from pipelines.cli import main
from results import comparisons as cmp
from results.schema import table_frame
from results.sql import canned_queries, canned_query, run_query
from results.store import database_path, ingest_frames, shared_views

QUERIES = ("metric_vs_accuracy", "regime_pairs", "regime_groups", "ts_effect", "model_percentile",
           "cood_degradation_by_family", "hsc_gain_by_regime", "detectors", "detector_levels")
OURS_ONLY = ("detectors", "detector_levels")  # the detectors are ours: the published tables have logit κ only
FLAGS = ("distilled", "self_supervised", "semi_supervised", "clip", "adversarial")


# ---- statistics against independent oracles ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_rank_correlations_equal_scipy_on_random_data_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 60))
    x = rng.integers(0, 6, n).astype(float)  # many ties
    y = x * rng.choice([-1.0, 1.0]) + rng.integers(0, 4, n)
    assert cmp.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert cmp.kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y, variant="b").statistic, abs=1e-12)
    x, y = rng.normal(size=n), rng.normal(size=n)
    assert cmp.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert cmp.kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_undefined_correlations_are_nan() -> None:
    assert math.isnan(cmp.spearman([1.0], [2.0])) and math.isnan(cmp.kendall_tau_b([1.0], [2.0]))
    assert math.isnan(cmp.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(cmp.kendall_tau_b([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    result = cmp.correlation([0.5], [0.7], n_boot=10)
    assert result.n == 1 and math.isnan(result.spearman_low) and result.n_valid == 0
    with pytest.raises(ValueError, match="finite"):
        cmp.correlation([0.5, math.nan], [0.7, 0.1])


@pytest.mark.parametrize(("n", "n_boot", "seed"), [(5, 40, 3), (7, 60, 11), (4, 25, 0)])
def test_bootstrap_intervals_equal_brute_force(n: int, n_boot: int, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    x = rng.integers(0, 4, n).astype(float)
    y = x + rng.normal(0, 1, n).round(1)
    result = cmp.correlation(x, y, n_boot=n_boot, seed=seed, confidence=0.9)
    index = np.random.default_rng(seed).integers(0, n, (n_boot, n))  # the documented resamples
    rhos, taus = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant resamples (NaN)
        for sample in index:
            rhos.append(stats.spearmanr(x[sample], y[sample]).statistic)
            taus.append(stats.kendalltau(x[sample], y[sample]).statistic)
    rhos, taus = np.asarray(rhos), np.asarray(taus)
    defined = np.isfinite(rhos) & np.isfinite(taus)
    assert result.n_valid == int(defined.sum()) and result.n_boot == n_boot and result.seed == seed
    assert (result.spearman_low, result.spearman_high) == pytest.approx(tuple(np.percentile(rhos[defined], [5, 95])))
    assert (result.kendall_low, result.kendall_high) == pytest.approx(tuple(np.percentile(taus[defined], [5, 95])))
    assert result.spearman == pytest.approx(stats.spearmanr(x, y).statistic)


def test_paired_difference_by_hand() -> None:
    d = [0.1, -0.2, 0.3, 0.0, 0.4]
    result = cmp.paired_difference(d, n_boot=30, seed=5)
    # 3 up, 1 down: p = 2 (C(4,0) + C(4,1)) / 2^4 = 10/16
    assert (result.n_pairs, result.n_positive, result.n_negative, result.n_zero) == (5, 3, 1, 1)
    assert result.mean == pytest.approx(0.12) and result.median == pytest.approx(0.1)
    assert result.sign_test_p == pytest.approx(0.625)
    means = np.asarray(d)[np.random.default_rng(5).integers(0, 5, (30, 5))].mean(axis=1)
    assert (result.mean_low, result.mean_high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    empty = cmp.paired_difference([], n_boot=5)
    assert empty.n_pairs == 0 and math.isnan(empty.mean) and math.isnan(empty.sign_test_p)


@pytest.mark.parametrize(("up", "down"), [(0, 1), (1, 1), (7, 2), (0, 12), (15, 4), (30, 31), (548, 568), (2100, 1900)])
def test_sign_test_equals_the_binomial_test(up: int, down: int) -> None:
    assert cmp.sign_test(up, down) == pytest.approx(stats.binomtest(up, up + down, 0.5).pvalue)


def test_frame_statistics_group_and_record_the_bootstrap() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=12), rng.normal(size=12)
    frame = pl.DataFrame({"origin": ["ours"] * 7 + ["published"] * 5, "x_metric": "accuracy", "metric": "auroc",
                          "x_value": x, "value": y})
    table = cmp.correlations(frame, n_boot=50, seed=2)
    assert table["origin"].to_list() == ["ours", "published"]
    expected = cmp.correlation(x[7:], y[7:], n_boot=50, seed=2)
    assert table.row(1, named=True) == {"origin": "published", "x_metric": "accuracy", "metric": "auroc",
                                        **expected.row()}
    assert cmp.correlations(frame.head(0)).height == 0
    assert cmp.paired_summaries(pl.DataFrame({"origin": [], "regime": [], "metric": [], "difference": []},
                                             schema_overrides={"difference": pl.Float64})).height == 0


# ---- a tiny database with values checked by hand ---------------------------------------------------------------

# model id -> (architecture, tag, family, pretraining, flags set, accuracy, auroc, aurc, ece15, C-OOD levels 0/1,
# climbing gain); the last is a random-weight model every comparison leaves out
_OURS = {
    "timm-deit_base_patch16_224.fb_in1k": ("deit_base_patch16_224", "fb_in1k", "deit", "in1k", (),
                                           0.80, 0.85, 0.06, 0.03, (0.90, 0.70), 10.0),
    "timm-deit_base_distilled_patch16_224.fb_in1k": ("deit_base_distilled_patch16_224", "fb_in1k", "deit", "in1k",
                                                     ("distilled",), 0.82, 0.86, 0.05, 0.04, (0.95, 0.75), 20.0),
    "timm-vit_base_patch16_224.augreg_in1k": ("vit_base_patch16_224", "augreg_in1k", "vit", "in1k", (),
                                              0.78, 0.84, 0.07, 0.02, (0.88, 0.60), 5.0),
    "timm-vit_base_patch16_224.augreg_in21k_ft_in1k": ("vit_base_patch16_224", "augreg_in21k_ft_in1k", "vit",
                                                       "in21k", (), 0.84, 0.87, 0.04, 0.01, (0.97, 0.85), 30.0),
    "timm-vit_base_patch16_clip_224.laion2b_ft_in1k": ("vit_base_patch16_clip_224", "laion2b_ft_in1k", "vit",
                                                       "laion", ("clip",), 0.85, 0.83, 0.045, 0.05, (0.96, 0.80), 40.0),
    "timm-resnet18-random": ("resnet18", None, "resnet", None, (), 0.001, 0.5, 0.99, 0.0, (0.5, 0.5), 0.0),
}
# published name -> (model id, family, pretraining, flags, accuracy, accuracy_TS, auroc, auroc_TS, aurc, C-OOD
# levels 0/1 or None, climbing gain or None)
_PUBLISHED = {
    "deit_base_patch16_224.fb_in1k": ("timm-deit_base_patch16_224.fb_in1k", "deit", "in1k", (),
                                      0.81, 0.81, 0.86, 0.87, 0.055, None, 12.0),
    "deit_base_distilled_patch16_224.fb_in1k": ("timm-deit_base_distilled_patch16_224.fb_in1k", "deit", "in1k",
                                                ("distilled",), 0.83, 0.83, 0.88, 0.86, 0.05, None, 18.0),
    "resnet50_torchvision": ("torchvision-resnet50.IMAGENET1K_V1", "resnet", "in1k", (),
                             0.76, 0.76, 0.84, 0.85, 0.07, (0.85, 0.55), 6.0),
    "CLIP_ViT-B~32": ("open_clip-ViT-B-32.openai", "clip", "openai", ("clip",), None, None, None, None, None,
                      (0.91, 0.80), None),
}


def _our_frames() -> dict[str, pl.DataFrame]:
    models, selective, levels, rules = [], [], [], []
    for model_id, (arch, tag, family, pretraining, flags, acc, auroc, aurc, ece, cood, gain) in _OURS.items():
        random = tag is None
        models.append({"model_id": model_id, "spec": model_id, "source": "timm", "name": arch, "pretrained_tag": tag,
                       "pretrained": not random, "family": family, "pretraining": pretraining,
                       **{flag: flag in flags for flag in FLAGS}, "metadata_source": "rules"})
        base = {"model_id": model_id, "kappa": "msp", "n": 100}
        selective.append({**base, "temperature_scaled": False, "subset": "all", "accuracy": acc, "auroc": auroc,
                          "aurc": aurc, "eaurc": aurc / 2, "ece15": ece, "sac99": 0.2})
        # TS rows: AUROC + 0.01 (the deit pair swaps on AUROC after TS: 0.85+0.03 vs 0.86+0.01), ECE halves
        bump = 0.03 if model_id.startswith("timm-deit_base_patch16") else 0.01
        selective.append({**base, "temperature_scaled": True, "subset": "ts_eval", "accuracy": acc,
                          "auroc": auroc + bump, "aurc": aurc, "eaurc": aurc / 2, "ece15": ece / 2, "sac99": 0.2})
        selective.append({**base, "kappa": "max_logit", "temperature_scaled": False, "subset": "all",
                          "accuracy": acc, "auroc": 0.5})
        for level, value in enumerate(cood):
            levels.append({"model_id": model_id, "kappa": "msp", "level": level, "num_levels": 2,
                           "percentile": float(level), "ood_auroc": value})
            levels.append({"model_id": model_id, "kappa": "neg_entropy", "level": level, "num_levels": 2,
                           "percentile": float(level), "ood_auroc": 0.1})
        for rule, rule_gain in (("selective", 0.0), ("climbing", gain)):
            rules.append({"model_id": model_id, "rule": rule, "temperature_scaled": False, "risk_type": "01",
                          "haurc": 0.1 - rule_gain / 1000, "gain": rule_gain})
    # the deit baseline also has the TS split without TS: its before value is read from there
    selective.append({"model_id": "timm-deit_base_patch16_224.fb_in1k", "kappa": "msp", "n": 90,
                      "temperature_scaled": False, "subset": "ts_eval", "accuracy": 0.79, "auroc": 0.84,
                      "aurc": 0.06, "eaurc": 0.03, "ece15": 0.03, "sac99": 0.2})
    return {"models": table_frame("models", models), "selective_metrics": table_frame("selective_metrics", selective),
            "cood_levels": table_frame("cood_levels", levels), "hsc_rules": table_frame("hsc_rules", rules)}


def _published_frames() -> dict[str, pl.DataFrame]:
    models, metrics, levels = [], [], []
    for name, (model_id, family, pretraining, flags, acc, acc_ts, auroc, auroc_ts, aurc, cood, gain) in (
        _PUBLISHED.items()
    ):
        models.append({"model_name": name, "model_id": model_id, "mapping": "test", "family": family,
                       "pretraining": pretraining, **{flag: flag in flags for flag in FLAGS},
                       "metadata_source": "rules"})
        values = {("Accuracy", False): acc, ("Accuracy", True): acc_ts, ("AUROC", False): auroc,
                  ("AUROC", True): auroc_ts, ("AURC", False): aurc}
        for (metric, scaled), value in values.items():
            if value is not None:
                metrics.append({"model_name": name, "column_name": metric + ("_TS" if scaled else ""),
                                "metric": metric, "temperature_scaled": scaled, "value": value, "unit": "fraction"})
        if gain is not None:
            metrics.append({"model_name": name, "column_name": "hAURC_climbing_01", "metric": "hAURC",
                            "temperature_scaled": False, "rule": "climbing", "risk_type": "01", "value": 0.08,
                            "unit": "fraction"})
            metrics.append({"model_name": name, "column_name": "Gain_climbing_01", "metric": "Gain",
                            "temperature_scaled": False, "rule": "climbing", "risk_type": "01", "value": gain,
                            "unit": "percent"})
        for level, value in enumerate(cood or ()):
            levels.append({"model_name": name, "kappa": "msp", "level": level, "percentile": float(level),
                           "confidence_function": "softmax", "ood_auroc": value, "id_accuracy": 0.63,
                           "id_auroc": 0.81})
    return {"reference_models": table_frame("reference_models", models),
            "reference_hsc_metrics": table_frame("reference_hsc_metrics", metrics),
            "reference_cood_levels": table_frame("reference_cood_levels", levels)}


def _workspace(root: Path, frames: dict[str, pl.DataFrame]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    ingest_frames(database_path(root), frames)
    return root


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _workspace(tmp_path_factory.mktemp("both"), {**_our_frames(), **_published_frames()})


def _query(workspace: Path, name: str) -> pl.DataFrame:
    return run_query(database_path(workspace), canned_query(name).sql)


def _one(frame: pl.DataFrame, **where: object) -> dict[str, object]:
    rows = frame.filter(**where)
    assert rows.height == 1, (where, rows)
    return rows.row(0, named=True)


def test_comparison_queries_are_listed_and_described() -> None:
    queries = canned_queries()
    for name in QUERIES:
        assert queries[name].description, name
    assert {c.query for c in cmp.COMPARISONS.values()} == set(QUERIES)


def test_metric_vs_accuracy_by_hand(both: Path) -> None:
    frame = _query(both, "metric_vs_accuracy")
    ours = frame.filter(origin="ours")
    assert "timm-resnet18-random" not in ours["model"].to_list()
    # accuracy ranks (C, A, B, D, E) = 1..5; AUROC ranks E, C, A, B, D = 1..5: sum d² = 20, rho = 1 - 6·20/120 = 0
    auroc = ours.filter(x_metric="accuracy", metric="auroc")
    assert auroc.height == 5 and auroc["spearman"].unique().to_list() == [pytest.approx(0.0)]
    # mean C-OOD AUROC .80 .85 .74 .91 .88: ranks A2 B3 C1 D5 E4 against A2 B3 C1 D4 E5, sum d² = 2: rho = 0.9
    cood = ours.filter(x_metric="accuracy", metric="cood_mean_auroc")
    assert cood["spearman"][0] == pytest.approx(0.9)
    assert _one(cood, model="timm-vit_base_patch16_224.augreg_in21k_ft_in1k")["value"] == pytest.approx(0.91)
    # the published deit pair, resnet50 and CLIP; CLIP's accuracy comes from the C-OOD table (0.63)
    published = frame.filter(origin="published", x_metric="accuracy", metric="cood_mean_auroc")
    assert sorted(published["model"].to_list()) == ["CLIP_ViT-B~32", "resnet50_torchvision"]
    assert _one(published, model="CLIP_ViT-B~32")["x_value"] == pytest.approx(0.63)
    assert _one(published, model="resnet50_torchvision")["x_value"] == pytest.approx(0.76)  # HSC table first
    assert published["spearman"][0] == pytest.approx(-1.0)
    # the statistics agree with scipy on the same rows
    table = cmp.correlations(ours, n_boot=20)
    row = _one(table, x_metric="accuracy", metric="cood_mean_auroc")
    assert row["spearman"] == pytest.approx(0.9)
    assert row["kendall"] == pytest.approx(stats.kendalltau(cood["x_value"], cood["value"]).statistic)


def test_regime_pairs_by_hand(both: Path) -> None:
    frame = _query(both, "regime_pairs")
    distilled = _one(frame, origin="ours", regime="distilled", metric="accuracy")
    assert distilled["arch"] == "deit_base_patch16_224" and (distilled["n_with"], distilled["n_without"]) == (1, 1)
    assert distilled["difference"] == pytest.approx(0.82 - 0.80)
    assert distilled["models_without"] == "timm-deit_base_patch16_224.fb_in1k"
    in21k = _one(frame, origin="ours", regime="in21k", metric="cood_mean_auroc")
    assert in21k["arch"] == "vit_base_patch16_224" and in21k["difference"] == pytest.approx(0.91 - 0.74)
    clip = _one(frame, origin="ours", regime="clip", metric="aurc")  # vit_base_patch16_clip_224 -> vit_base_patch16_224
    assert clip["arch"] == "vit_base_patch16_224" and clip["difference"] == pytest.approx(0.045 - 0.07)
    assert frame.filter(origin="ours")["regime"].unique().sort().to_list() == ["clip", "distilled", "in21k"]
    unpaired = _one(frame, origin="published", regime="clip", metric="cood_mean_auroc")  # no plain ViT-B/32
    assert (unpaired["arch"], unpaired["n_without"], unpaired["difference"]) == ("vit_b_32", 0, None)
    published = _one(frame, origin="published", regime="distilled", metric="auroc")
    assert published["arch"] == "deit_base_patch16_224" and published["difference"] == pytest.approx(0.02)
    summary = cmp.paired_summaries(frame, n_boot=10)
    row = _one(summary, origin="ours", regime="distilled", metric="accuracy")
    assert row["n_pairs"] == 1 and row["mean"] == pytest.approx(0.02) and row["sign_test_p"] == pytest.approx(1.0)


def test_regime_groups_by_hand(both: Path) -> None:
    frame = _query(both, "regime_groups")
    plain = _one(frame, origin="ours", regime="plain", metric="accuracy")  # the deit and vit in1k baselines
    assert plain["models"] == 2 and plain["mean"] == pytest.approx(0.79)
    assert plain["q25"] == pytest.approx(0.785) and plain["median"] == pytest.approx(0.79)
    everyone = _one(frame, origin="ours", regime="all", metric="ece15")
    assert everyone["models"] == 5 and everyone["max"] == pytest.approx(0.05) and everyone["median"] == 0.03
    assert _one(frame, origin="published", regime="clip", metric="cood_mean_auroc")["mean"] == pytest.approx(0.855)
    order = frame.filter(origin="ours", metric="accuracy")["regime"].to_list()
    assert order == ["all", "plain", "distilled", "in21k", "clip"]


def test_model_percentile_by_hand(both: Path) -> None:
    frame = _query(both, "model_percentile")
    accuracy = frame.filter(origin="ours", metric="accuracy")
    assert accuracy["model"][0] == "timm-vit_base_patch16_clip_224.laion2b_ft_in1k"
    assert accuracy["percentile"].to_list() == pytest.approx([100.0, 75.0, 50.0, 25.0, 0.0])
    aurc = frame.filter(origin="ours", metric="aurc")  # lower is better
    assert _one(aurc, model="timm-vit_base_patch16_224.augreg_in21k_ft_in1k")["rank"] == 1
    assert _one(aurc, model="timm-vit_base_patch16_224.augreg_in1k")["percentile"] == 0.0
    clip = _one(frame, origin="published", model="CLIP_ViT-B~32", metric="cood_mean_auroc")
    assert (clip["rank"], clip["n"], clip["percentile"]) == (1, 2, 100.0)


def test_ts_effect_by_hand(both: Path) -> None:
    frame = _query(both, "ts_effect")
    auroc = frame.filter(origin="ours", metric="auroc")
    baseline = _one(auroc, model="timm-deit_base_patch16_224.fb_in1k")  # before from its ts_eval row (0.84)
    assert baseline["before_subset"] == "ts_eval" and baseline["after"] - baseline["before"] == pytest.approx(0.04)
    distilled = _one(auroc, model="timm-deit_base_distilled_patch16_224.fb_in1k")  # no ts_eval row: subset all
    assert distilled["before_subset"] == "all" and distilled["difference"] == pytest.approx(0.01)
    # before: D .87 B .86 A .84 C .84 E .83 -> ranks 1 2 3 3 5; after: D .88 A .88 B .87 C .85 E .84 -> 1 1 3 4 5
    assert baseline["rank_before"] == 3 and baseline["rank_after"] == 1 and baseline["rank_change"] == -2
    ece = _one(frame, origin="ours", metric="ece15", model="timm-vit_base_patch16_224.augreg_in1k")
    assert ece["difference"] == pytest.approx(-0.01) and ece["rank_before"] == 2
    published = _one(frame, origin="published", metric="auroc", model="deit_base_distilled_patch16_224.fb_in1k")
    assert (published["before"], published["after"], published["rank_before"], published["rank_after"]) == (
        pytest.approx(0.88), pytest.approx(0.86), 1, 2)
    summary = _one(cmp.ts_summaries(frame, n_boot=10), origin="ours", metric="auroc")
    assert summary["n_pairs"] == 5 and summary["n_positive"] == 5 and summary["sign_test_p"] == pytest.approx(1 / 16)
    assert summary["models_moved"] == 3 and summary["max_move"] == 2


def test_cood_degradation_by_family_by_hand(both: Path) -> None:
    frame = _query(both, "cood_degradation_by_family")
    deit = _one(frame, origin="ours", family="deit", level=1)
    assert deit["models"] == 2 and deit["mean_ood_auroc"] == pytest.approx(0.725)
    assert deit["mean_drop"] == pytest.approx(0.2)
    vit = _one(frame, origin="ours", family="vit", level=0)
    assert vit["models"] == 3 and vit["median_ood_auroc"] == pytest.approx(0.96)
    assert frame.filter(origin="ours", family="resnet").height == 0  # only the random-weight resnet18
    assert _one(frame, origin="published", family="clip", level=1)["mean_drop"] == pytest.approx(0.11)


def test_hsc_gain_by_regime_by_hand(both: Path) -> None:
    frame = _query(both, "hsc_gain_by_regime")
    assert set(frame["rule"]) == {"climbing"}  # Selective's own zero gain is no row
    assert _one(frame, origin="ours", regime="all")["mean_gain"] == pytest.approx(21.0)
    assert _one(frame, origin="ours", regime="plain")["mean_gain"] == pytest.approx(7.5)
    assert _one(frame, origin="ours", regime="distilled")["mean_gain"] == pytest.approx(20.0)
    published = _one(frame, origin="published", regime="all")
    assert published["models"] == 3 and published["mean_gain"] == pytest.approx(12.0)


@pytest.mark.parametrize("origin", ["ours", "published"])
def test_queries_run_on_a_database_of_one_origin(tmp_path: Path, origin: str) -> None:
    frames = _our_frames() if origin == "ours" else _published_frames()
    workspace = _workspace(tmp_path / origin, frames)
    for name in QUERIES:
        if origin == "published" and name in OURS_ONLY:
            assert _query(workspace, name).height == 0, name
            continue
        frame = _query(workspace, name)
        assert frame.height > 0, name
        assert set(frame["origin"]) == {origin}, name


def test_shared_views_are_the_one_home_of_population_and_regimes() -> None:
    """The population and the regime membership are written once (results/queries/views/) and read by name."""
    for name in QUERIES:
        text = canned_query(name).sql
        assert "CROSS JOIN regimes" not in text and "FROM models AS m\n    LEFT JOIN selective_metrics" not in text
    users = {name for name in QUERIES if "model_population" in canned_query(name).sql}
    assert users == {"metric_vs_accuracy", "regime_pairs", "regime_groups", "model_percentile"}
    members = {name for name in QUERIES if "regime_members" in canned_query(name).sql}
    assert members == {"regime_pairs", "regime_groups", "hsc_gain_by_regime"}
    pairs = {name for name in QUERIES if "detector_pairs" in canned_query(name).sql}
    assert pairs == {"detectors", "detector_levels"}
    assert all("cood_levels" not in canned_query(name).sql for name in pairs)
    assert "'in21k', 'in22k', 'in12k'" in shared_views()["regime_members"]
    assert cmp.REGIMES == tuple(re.findall(r"\('(\w+)', \d\)", shared_views()["regime_members"]))


# ---- detectors against MSP ---------------------------------------------------------------------------------------

# model -> (pretrained, {κ: OOD AUROC per level, None: no value}); selective rows below
_DETECTOR_LEVELS = {
    "timm-a": (True, {"msp": [0.90, 0.80, 0.60], "det_knn": [0.92, 0.85, 0.55],
                      "det_vim": [0.91, None, 0.70, 0.50]}),  # vim: level 1 NULL, level 3 without msp
    "timm-b": (True, {"msp": [0.95, 0.85, 0.70], "det_knn": [0.90, 0.90, 0.80]}),
    "timm-c": (True, {"det_knn": [0.99, 0.99]}),  # no msp: nothing to pair with
    "timm-random": (False, {"msp": [0.5, 0.5], "det_knn": [0.9, 0.9]}),  # random weights: left out
}


def _detector_frames() -> dict[str, pl.DataFrame]:
    models, levels = [], []
    for model_id, (pretrained, kappas) in _DETECTOR_LEVELS.items():
        models.append({"model_id": model_id, "spec": model_id, "source": "timm", "name": model_id[5:],
                       "pretrained": pretrained})
        for kappa, values in kappas.items():
            levels += [{"model_id": model_id, "kappa": kappa, "level": level, "num_levels": len(values),
                        "percentile": float(level), "ood_auroc": value} for level, value in enumerate(values)]
    selective = [
        {"model_id": "timm-a", "kappa": "msp", "temperature_scaled": False, "subset": "all", "n": 10, "auroc": 0.85,
         "aurc": 0.05},
        {"model_id": "timm-a", "kappa": "det_knn", "temperature_scaled": False, "subset": "all", "n": 10,
         "auroc": 0.80, "aurc": 0.06},
        {"model_id": "timm-a", "kappa": "det_knn", "temperature_scaled": False, "subset": "ts_eval", "n": 5,
         "auroc": 0.10, "aurc": 0.90},  # another subset: not read
        {"model_id": "timm-b", "kappa": "det_knn", "temperature_scaled": False, "subset": "all", "n": 10,
         "auroc": 0.70, "aurc": 0.08},
    ]  # fmt: skip
    return {"models": table_frame("models", models), "cood_levels": table_frame("cood_levels", levels),
            "selective_metrics": table_frame("selective_metrics", selective)}


@pytest.fixture(scope="module")
def detector_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _workspace(tmp_path_factory.mktemp("detectors"), _detector_frames())


def test_detectors_by_hand(detector_workspace: Path) -> None:
    rows = _query(detector_workspace, "detectors")
    assert sorted(rows.select("kappa", "model_id").iter_rows()) == [
        ("det_knn", "timm-a"), ("det_knn", "timm-b"), ("det_vim", "timm-a")]
    assert set(rows["origin"]) == {"ours"}
    knn_a = _one(rows, kappa="det_knn", model_id="timm-a")  # levels 0-2: gains +.02 +.05 -.05
    assert (knn_a["levels"], knn_a["hardest_level"]) == (3, 2)
    assert knn_a["mean_auroc"] == pytest.approx((0.92 + 0.85 + 0.55) / 3)
    assert knn_a["msp_mean_auroc"] == pytest.approx((0.90 + 0.80 + 0.60) / 3)
    assert knn_a["mean_gain"] == pytest.approx(0.02 / 3)
    assert (knn_a["hardest_auroc"], knn_a["msp_hardest_auroc"]) == (pytest.approx(0.55), pytest.approx(0.60))
    assert knn_a["hardest_gain"] == pytest.approx(-0.05)
    assert (knn_a["selective_auroc"], knn_a["selective_aurc"]) == (pytest.approx(0.80), pytest.approx(0.06))
    assert knn_a["msp_selective_auroc"] == pytest.approx(0.85)
    knn_b = _one(rows, kappa="det_knn", model_id="timm-b")  # gains -.05 +.05 +.10; no msp selective row
    assert knn_b["hardest_gain"] == pytest.approx(0.10) and knn_b["msp_selective_auroc"] is None
    vim = _one(rows, kappa="det_vim", model_id="timm-a")  # level 1 NULL, level 3 without msp: levels 0 and 2
    assert (vim["levels"], vim["hardest_level"]) == (2, 2)
    assert vim["mean_auroc"] == pytest.approx(0.805) and vim["hardest_gain"] == pytest.approx(0.10)
    assert vim["selective_auroc"] is None

    summary = cmp.detector_summaries(rows, n_boot=20)
    assert summary["kappa"].to_list() == ["det_knn", "det_vim"]  # median mean AUROC .82 then .805
    knn = _one(summary, kappa="det_knn")
    assert knn["models"] == 2 and knn["median_mean_auroc"] == pytest.approx((2.32 / 3 + 2.6 / 3) / 2)
    assert knn["median_msp_mean_auroc"] == pytest.approx((2.3 / 3 + 2.5 / 3) / 2)
    assert knn["median_hardest_auroc"] == pytest.approx(0.675)
    assert knn["median_msp_hardest_auroc"] == pytest.approx(0.65)
    assert knn["beats_msp_hardest"] == pytest.approx(0.5)
    assert (knn["n_pairs"], knn["n_positive"], knn["n_negative"]) == (2, 1, 1)
    assert knn["mean"] == pytest.approx(0.025) and knn["median"] == pytest.approx(0.025)
    assert knn["sign_test_p"] == pytest.approx(1.0)
    assert knn["selective_models"] == 2 and knn["median_selective_auroc"] == pytest.approx(0.75)
    assert knn["median_msp_selective_auroc"] == pytest.approx(0.85)  # only a has one
    vim = _one(summary, kappa="det_vim")
    assert vim["selective_models"] == 0 and math.isnan(vim["median_selective_auroc"])
    assert vim["beats_msp_hardest"] == 1.0 and vim["sign_test_p"] == pytest.approx(1.0)

    levels = _query(detector_workspace, "detector_levels")
    assert sorted(levels.select("kappa", "level").iter_rows()) == [
        ("det_knn", 0), ("det_knn", 1), ("det_knn", 2), ("det_vim", 0), ("det_vim", 2)]
    zero = _one(levels, kappa="det_knn", level=0)  # gains +.02 (a) and -.05 (b)
    assert zero["models"] == 2 and zero["median_auroc_gain"] == pytest.approx(-0.015)
    assert zero["q25_auroc_gain"] == pytest.approx(-0.05 + 0.25 * 0.07)
    assert zero["q75_auroc_gain"] == pytest.approx(-0.05 + 0.75 * 0.07)
    assert zero["beats_msp"] == pytest.approx(0.5) and zero["median_msp_ood_auroc"] == pytest.approx(0.925)
    assert _one(levels, kappa="det_knn", level=2)["mean_auroc_gain"] == pytest.approx(0.025)


def _brute_force_detectors(frames: dict[str, pl.DataFrame]) -> dict[tuple[str, str], dict[str, object]]:
    """(κ, model) -> the detectors row, by loops over the raw rows (independent of the SQL)."""
    pretrained = {m for m, p in frames["models"].select("model_id", "pretrained").iter_rows() if p}
    auroc = {(m, k, lv): v for m, k, lv, v in frames["cood_levels"].select("model_id", "kappa", "level",
                                                                             "ood_auroc").iter_rows()}  # fmt: skip
    selective = {(m, k): (a, r) for m, k, ts, sub, a, r in frames["selective_metrics"].select(
        "model_id", "kappa", "temperature_scaled", "subset", "auroc", "aurc").iter_rows() if not ts and sub == "all"}
    out: dict[tuple[str, str], dict[str, object]] = {}
    for (model, kappa, level), value in sorted(auroc.items()):
        base = auroc.get((model, "msp", level))
        if kappa == "msp" or model not in pretrained or value is None or base is None:
            continue
        row = out.setdefault((kappa, model), {"levels": []})
        row["levels"].append((level, value, base))
    for (kappa, model), row in out.items():
        pairs = row.pop("levels")
        level, value, base = max(pairs)
        row.update(levels=len(pairs), hardest_level=level, hardest_auroc=value, msp_hardest_auroc=base,
                   hardest_gain=value - base, mean_auroc=float(np.mean([v for _, v, _ in pairs])),
                   msp_mean_auroc=float(np.mean([b for _, _, b in pairs])),
                   mean_gain=float(np.mean([v - b for _, v, b in pairs])),
                   selective_auroc=selective.get((model, kappa), (None, None))[0],
                   selective_aurc=selective.get((model, kappa), (None, None))[1])
    return out


def test_detectors_equal_a_brute_force_loop_on_synthetic_tables(tmp_path: Path) -> None:
    from synthetic_results import add_detectors, synthetic_frames

    frames = add_detectors(synthetic_frames(n_models=7, seed=4), seed=4)
    rng = np.random.default_rng(0)
    levels = frames["cood_levels"]
    drop = rng.random(levels.height) < 0.08  # some levels missing (msp's ones unpair the others)
    blank = rng.random(levels.height) < 0.05  # some levels without a value
    frames["cood_levels"] = levels.filter(~pl.Series(drop)).with_columns(
        pl.when(pl.Series(blank[~drop])).then(None).otherwise(pl.col("ood_auroc")).alias("ood_auroc"))
    frames["models"] = frames["models"].with_columns(pl.col("model_id").is_in([frames["models"]["model_id"][1]]).not_()
                                                     .alias("pretrained"))  # fmt: skip
    workspace = _workspace(tmp_path / "synthetic", frames)
    expected = _brute_force_detectors(frames)
    rows = _query(workspace, "detectors")
    assert sorted(rows.select("kappa", "model_id").iter_rows()) == sorted(expected)
    assert {kappa for kappa, _ in expected} == {"neg_entropy", "max_logit", "det_knn", "det_mahalanobis", "det_vim"}
    for row in rows.iter_rows(named=True):
        want = expected[(row["kappa"], row["model_id"])]
        for column, value in want.items():
            assert row[column] == (pytest.approx(value, abs=1e-12) if isinstance(value, float) else value), column
    summary = cmp.detector_summaries(rows, n_boot=30, seed=2)
    for row in summary.iter_rows(named=True):
        own = [w for (kappa, _), w in expected.items() if kappa == row["kappa"]]
        gains = np.array([w["hardest_gain"] for w in own])
        assert row["models"] == len(own) == row["n_pairs"]
        assert row["median_mean_auroc"] == pytest.approx(np.median([w["mean_auroc"] for w in own]), abs=1e-12)
        assert row["median_hardest_auroc"] == pytest.approx(np.median([w["hardest_auroc"] for w in own]), abs=1e-12)
        assert row["beats_msp_hardest"] == pytest.approx(np.mean(gains > 0))
        assert row["sign_test_p"] == pytest.approx(stats.binomtest(int((gains > 0).sum()), int((gains != 0).sum()))
                                                   .pvalue)  # fmt: skip
        chosen = np.random.default_rng(2).integers(0, gains.size, (30, gains.size))
        assert row["mean_low"] == pytest.approx(np.percentile(gains[chosen].mean(axis=1), 2.5), abs=1e-12)
        with_selective = [w["selective_auroc"] for w in own if w["selective_auroc"] is not None]
        assert row["selective_models"] == len(with_selective)
        assert row["median_selective_auroc"] == pytest.approx(np.median(with_selective), abs=1e-12)
    by_level = _query(workspace, "detector_levels")
    gains: dict[tuple[str, int], list[float]] = {}
    raw = _raw_levels(frames)
    for (model, kappa, level), value in raw.items():
        base = raw.get((model, "msp", level))
        if kappa != "msp" and (kappa, model) in expected and value is not None and base is not None:
            gains.setdefault((kappa, level), []).append(value - base)
    assert sorted(by_level.select("kappa", "level").iter_rows()) == sorted(gains)
    for row in by_level.iter_rows(named=True):
        values = np.array(gains[(row["kappa"], row["level"])])
        assert row["models"] == values.size
        for column, q in (("q25_auroc_gain", 25), ("median_auroc_gain", 50), ("q75_auroc_gain", 75)):
            assert row[column] == pytest.approx(np.percentile(values, q), abs=1e-12)
        assert row["beats_msp"] == pytest.approx(np.mean(values > 0))


def _raw_levels(frames: dict[str, pl.DataFrame]) -> dict[tuple[str, str, int], float | None]:
    return {(m, k, lv): v for m, k, lv, v in frames["cood_levels"].select("model_id", "kappa", "level",
                                                                            "ood_auroc").iter_rows()}  # fmt: skip


def test_compare_detectors(detector_workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "compare", "detectors", "-w", str(detector_workspace), "--n-boot", "20")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("ours: det_knn vs msp, 2 models: median mean OOD AUROC 0.8200 (msp 0.8000); at the "
                               "hardest level median 0.6750 (msp 0.6500), gain mean Δ +0.025 [")
    assert "beats msp in 50.0 % (1 up, 1 down), sign test p 1;" in lines[0] and lines[1].startswith("ours: det_vim")
    code, out, _ = _run(capsys, "compare", "detectors", "-w", str(detector_workspace), "--model", "timm-b",
                        "--format", "json")
    assert code == 0 and [(r["kappa"], r["hardest_gain"]) for r in json.loads(out)] == [("det_knn", pytest.approx(0.1))]
    code, out, _ = _run(capsys, "compare", "detector_levels", "-w", str(detector_workspace), "--format", "csv")
    assert code == 0 and pl.read_csv(out.encode()).height == 5


# ---- uebench compare ------------------------------------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compare_prints_statistics_then_rows(both: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "compare", "metric_vs_accuracy", "-w", str(both), "--metric", "cood_mean_auroc",
                          "--x", "accuracy", "--origin", "ours", "--n-boot", "50", "--seed", "7")
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("ours: cood_mean_auroc vs accuracy, n=5: Spearman ρ 0.900 [")
    assert first.endswith("(95% percentile bootstrap, 50 resamples, seed 7)")
    assert "timm-vit_base_patch16_224.augreg_in1k" in out and "published" not in out
    code, out, err = _run(capsys, "compare", "regime_pairs", "-w", str(both), "--regime", "distilled",
                          "--metric", "auroc", "--format", "csv")
    assert code == 0 and "ours: distilled − plain, auroc, 1 pairs: mean Δ +0.01" in err
    rows = pl.read_csv(out.encode())
    assert rows["origin"].to_list() == ["ours", "published"] and rows["difference"].to_list() == pytest.approx(
        [0.01, 0.02])
    code, out, _ = _run(capsys, "compare", "ts_effect", "-w", str(both), "--statistics", "--format", "json",
                        "--metric", "auroc", "--origin", "published")
    assert code == 0
    [row] = json.loads(out)
    assert row["n_pairs"] == 3 and row["models_moved"] == 2
    code, out, _ = _run(capsys, "compare", "model_percentile", "-w", str(both), "--model",
                        "timm-deit_base_distilled_patch16_224.fb_in1k", "--metric", "accuracy", "--format", "json")
    assert code == 0
    assert {(r["origin"], r["percentile"]) for r in json.loads(out)} == {("ours", 50.0), ("published", 100.0)}
    code, out, _ = _run(capsys, "compare", "--list")
    assert code == 0 and len(out.splitlines()) == len(cmp.COMPARISONS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("compare", "metric_vs_acuracy"), "error: unknown comparison 'metric_vs_acuracy'; did you mean "
                                           "metric_vs_accuracy?"),
        (("compare",), "error: give a comparison: metric_vs_accuracy, "),
        (("compare", "regime_groups", "--metric", "top1"), "error: unknown metric 'top1' for regime_groups; one of "
                                                          "accuracy, auroc, aurc, ece15, cood_mean_auroc"),
        (("compare", "metric_vs_accuracy", "--regime", "clip"), "error: --regime does not apply to "
                                                                "metric_vs_accuracy (its options: --metric, --x, "
                                                                "--family)"),
        (("compare", "model_percentile", "--model", "timm-deit_base_patch16_224.fb_in1"),
         "error: no model 'timm-deit_base_patch16_224.fb_in1' in model_percentile (both origin); did you mean "
         "timm-deit_base_patch16_224.fb_in1k"),
        (("compare", "regime_groups", "--statistics"), "error: regime_groups has no statistics"),
        (("compare", "ts_effect", "--origin", "theirs"), "error: --origin must be one of both, ours, published"),
        (("compare", "ts_effect", "--n-boot", "0"), "error: --n-boot must be >= 1, got 0"),
    ],
)
def test_compare_errors_are_one_line(both: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                                     message: str) -> None:
    code, out, err = _run(capsys, *args, "-w", str(both))
    assert code == 2 and out == "" and err.startswith(message) and err.count("\n") == 1, err


def test_compare_without_a_workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "compare", "ts_effect", "-w", str(tmp_path / "nowhere"))
    assert code == 2 and err.startswith("error: workspace not found")
