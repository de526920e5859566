"""Per-level detection metrics (cood.md §3) against scikit-learn, brute force and properties."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from cood.evaluate import LEVEL_SCHEMA, evaluate_levels, level_metrics
from cood.severity import class_severity, severity_levels
from results.schema import TABLES


def brute_fpr95(id_conf: np.ndarray, ood_conf: np.ndarray) -> tuple[float, float]:
    """Both FPR@95 conventions by trying every observed score as a threshold."""
    candidates = np.unique(np.concatenate([id_conf, ood_conf]))
    t_id = max(t for t in candidates if np.mean(id_conf >= t) >= 0.95)
    t_ood = min(t for t in candidates if np.mean(ood_conf <= t) >= 0.95)
    return float(np.mean(ood_conf >= t_id)), float(np.mean(id_conf <= t_ood))


@pytest.mark.parametrize(("n_id", "n_ood", "decimals"), [(300, 200, 1), (57, 91, 2), (1000, 40, 0), (20, 20, 3)])
def test_level_metrics_match_sklearn_and_brute_force(n_id: int, n_ood: int, decimals: int) -> None:
    rng = np.random.default_rng(n_id + n_ood)
    id_conf = np.round(rng.normal(1.0, 1.0, n_id), decimals)
    ood_conf = np.round(rng.normal(0.0, 1.0, n_ood), decimals)
    metrics = level_metrics(np.sort(id_conf), np.sort(ood_conf))
    y = np.r_[np.ones(n_id), np.zeros(n_ood)]
    s = np.r_[id_conf, ood_conf]
    assert metrics["ood_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics["aupr_in"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert metrics["aupr_out"] == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    fpr_id, fpr_ood = brute_fpr95(id_conf, ood_conf)
    assert metrics["fpr95"] == fpr_id
    assert metrics["fpr95_oodpos"] == fpr_ood
    assert metrics["ood_avg_conf"] == pytest.approx(ood_conf.mean(), rel=1e-13)
    pairs = metrics["ood_auroc"] * 2 * n_id * n_ood
    assert pairs == pytest.approx(round(pairs), abs=1e-6)


def test_hand_computed_case() -> None:
    # ID {3, 2, 1}, OOD {2, 0}: pairs (3>2, 3>0, 2=2 -> ½, 2>0, 1<2, 1>0) = 4.5 of 6.
    metrics = level_metrics(np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0]))
    assert metrics["ood_auroc"] == 0.75
    # 95 % of 3 ID needs all 3: t = 1, OOD >= 1: {2} -> 1/2; 95 % of 2 OOD needs both: s = 2, ID <= 2: 2/3.
    assert metrics["fpr95"] == 0.5
    assert metrics["fpr95_oodpos"] == pytest.approx(2 / 3)


def synthetic_benchmark(seed: int, num_classes: int = 300, per_class: int = 20, noise: float = 0.3):
    """OOD classes with spread class means; each sample = class mean + noise (a separating model)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.0, num_classes)
    est_class = np.repeat(np.arange(num_classes), per_class)
    test_class = np.repeat(np.arange(num_classes), per_class // 2)
    est_conf = means[est_class] + rng.normal(0.0, noise, est_class.size)
    test_conf = means[test_class] + rng.normal(0.0, noise, test_class.size)
    id_conf = rng.normal(2.0, 1.0, 2_000)
    id_correct = rng.random(2_000) < 1 / (1 + np.exp(-2 * (id_conf - 1.5)))
    return est_conf, est_class, test_conf, test_class, id_conf, id_correct


def test_evaluate_levels_matches_per_level_sklearn() -> None:
    est_conf, est_class, test_conf, test_class, id_conf, id_correct = synthetic_benchmark(1)
    levels = severity_levels(class_severity(est_conf, est_class, 300), num_levels=11, window=50)
    table = evaluate_levels(levels, test_conf, test_class, id_conf, id_correct, model_id="m", kappa="msp")
    assert table.height == 11
    id_auroc = roc_auc_score(id_correct, id_conf)
    for row in table.iter_rows(named=True):
        in_level = np.isin(test_class, levels.classes[row["level"]])
        ood = test_conf[in_level]
        y = np.r_[np.ones(id_conf.size), np.zeros(ood.size)]
        s = np.r_[id_conf, ood]
        assert row["n_ood"] == 50 * 10 and row["n_id"] == 2_000
        assert row["ood_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert row["aupr_in"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert row["aupr_out"] == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
        assert (row["fpr95"], row["fpr95_oodpos"]) == brute_fpr95(id_conf, ood)
        assert row["ood_avg_conf"] == pytest.approx(ood.mean(), rel=1e-12)
        assert row["id_accuracy"] == pytest.approx(id_correct.mean())
        assert row["id_auroc"] == pytest.approx(id_auroc, abs=1e-12)
        assert row["id_avg_conf"] == pytest.approx(id_conf.mean())
        assert row["percentile"] == row["level"] / 10
        assert row["severity"] == pytest.approx(levels.scores[row["level"]])
        assert row["start_index"] == levels.starts[row["level"]]
        assert (row["model_id"], row["kappa"], row["K"]) == ("m", "msp", 300)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_degradation_properties_on_a_separating_model(seed: int) -> None:
    est_conf, est_class, test_conf, test_class, id_conf, id_correct = synthetic_benchmark(seed)
    levels = severity_levels(class_severity(est_conf, est_class, 300), num_levels=11, window=50)
    table = evaluate_levels(levels, test_conf, test_class, id_conf, id_correct)
    assert np.all(np.diff(table["severity"].to_numpy()) >= 0)
    assert np.all(np.diff(table["ood_avg_conf"].to_numpy()) >= 0)
    assert np.all(np.diff(table["ood_auroc"].to_numpy()) <= 0)
    assert np.all(np.diff(table["fpr95"].to_numpy()) >= 0)


def test_rows_fit_the_cood_levels_table() -> None:
    est_conf, est_class, test_conf, test_class, id_conf, id_correct = synthetic_benchmark(5)
    levels = severity_levels(class_severity(est_conf, est_class, 300), num_levels=5, window=100)
    table = evaluate_levels(
        levels,
        test_conf,
        test_class,
        id_conf,
        id_correct,
        model_id="m",
        kappa="odin",
        kappa_params={"T": 2, "eps": 1e-5},
        pool_version="v1",
        class_list_sha256="ab",
        split_seed=0,
        run_id="r",
        code_sha="c",
    )
    con = duckdb.connect()
    con.execute(TABLES["cood_levels"])
    declared = [row[0] for row in con.execute("DESCRIBE cood_levels").fetchall()]
    assert declared == list(LEVEL_SCHEMA) == table.columns
    con.register("level_rows", table)
    con.execute("INSERT INTO cood_levels BY NAME SELECT * FROM level_rows")
    assert con.execute("SELECT count(*), max(kappa_params->>'T') FROM cood_levels").fetchone() == (5, "2")


def test_id_auroc_is_nan_when_all_predictions_are_correct() -> None:
    levels = severity_levels(np.arange(4.0), num_levels=2, window=2)
    with pytest.warns(RuntimeWarning, match="auroc: all 5 samples are correct"):
        table = evaluate_levels(levels, np.arange(8.0), np.repeat(np.arange(4), 2), np.ones(5), np.ones(5, bool))
    assert table["id_auroc"].is_nan().all()
    assert table["id_accuracy"].to_list() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ood_class": np.array([0, 1, 2])}, "shape of ood_conf"),
        ({"ood_class": np.array([0, 1, 2, 9])}, r"\[0, 4\)"),
        ({"ood_class": np.array([0.0, 1.0, 2.0, 3.0])}, "integers"),
        ({"ood_conf": np.array([0.0, np.nan, 1.0, 2.0])}, "ood_conf contains NaN"),
        ({"id_conf": np.ones((2, 2))}, "id_conf must be a 1-D array"),
        ({"id_correct": np.array([0, 1, 2])}, "boolean"),
        ({"id_correct": np.ones(2, bool)}, "shape of id_conf"),
        ({"id_conf": np.zeros(0), "id_correct": np.zeros(0, bool)}, "id_conf is empty"),
        ({"ood_class": np.array([0, 0, 1, 1])}, "level 1 has no OOD test sample"),
    ],
)
def test_bad_evaluation_input(change: dict, message: str) -> None:
    levels = severity_levels(np.arange(4.0), num_levels=2, window=2)
    args = {
        "ood_conf": np.arange(4.0),
        "ood_class": np.arange(4),
        "id_conf": np.array([1.0, 2.0, 3.0]),
        "id_correct": np.array([True, False, True]),
    }
    args.update(change)
    with pytest.raises(ValueError, match=message):
        evaluate_levels(levels, **args)


def test_frame_dtypes_are_the_schema() -> None:
    levels = severity_levels(np.arange(4.0), num_levels=2, window=2)
    table = evaluate_levels(levels, np.arange(4.0), np.arange(4), np.ones(3), np.array([True, False, True]))
    assert dict(table.schema) == {k: v for k, v in LEVEL_SCHEMA.items()}
    assert table["level"].dtype == pl.Int32


def test_ranking_keys_break_saturation_ties_and_leave_the_averages_to_the_values() -> None:
    """MSP rounds to 1.0 for very confident samples; log-MSP does not. Oracle: the same evaluation with the
    ranking keys passed as the scores themselves (every ranking metric), and the MSP means (averages)."""
    est_conf, est_class, test_conf, test_class, id_conf, id_correct = synthetic_benchmark(5)
    levels = severity_levels(class_severity(est_conf, est_class, 300), num_levels=11, window=50)
    # log-MSP-like keys: a third of the ID and OOD samples are extremely confident (gaps of 40-60 nats)
    rng = np.random.default_rng(6)
    id_key = -np.exp(-id_conf)
    ood_key = -np.exp(-test_conf)
    id_key[::3] = -np.exp(-rng.uniform(40, 60, id_key[::3].size))
    ood_key[::3] = -np.exp(-rng.uniform(40, 60, ood_key[::3].size))
    id_msp, ood_msp = np.exp(id_key), np.exp(ood_key)  # == 1.0 exactly for the confident third
    assert (id_msp[::3] == 1.0).all() and (ood_msp[::3] == 1.0).all()
    ranked = evaluate_levels(levels, ood_msp, test_class, id_msp, id_correct, ood_rank=ood_key, id_rank=id_key)
    oracle = evaluate_levels(levels, ood_key, test_class, id_key, id_correct)
    plain = evaluate_levels(levels, ood_msp, test_class, id_msp, id_correct)
    for column in ("ood_auroc", "aupr_in", "aupr_out", "fpr95", "fpr95_oodpos", "id_auroc"):
        np.testing.assert_array_equal(ranked[column].to_numpy(), oracle[column].to_numpy())
    for column in ("ood_avg_conf", "id_avg_conf"):
        np.testing.assert_allclose(ranked[column].to_numpy(), plain[column].to_numpy(), rtol=1e-13)
    assert not np.array_equal(plain["ood_auroc"].to_numpy(), ranked["ood_auroc"].to_numpy())  # ties mattered
    with pytest.raises(ValueError, match="ood_rank and id_rank must be given together"):
        evaluate_levels(levels, ood_msp, test_class, id_msp, id_correct, ood_rank=ood_key)
    with pytest.raises(ValueError, match="id_rank and ood_rank must have the shapes"):
        evaluate_levels(levels, ood_msp, test_class, id_msp, id_correct, ood_rank=ood_key, id_rank=id_key[:-1])
