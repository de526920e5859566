"""pipelines.analyses.selective: the seeded stratified split and the per-model metrics bundle, checked
against direct calls of hsc.selective / cood.confidence and against the DuckDB schema."""

from __future__ import annotations

import hashlib
import math

import duckdb
import numpy as np
import polars as pl
import pytest

from cood import confidence
from hsc import selective as S
from pipelines.analyses.selective import (
    COLUMNS,
    analyse_selective,
    analyse_selective_tables,
    stratified_split,
)
from results.schema import PRIMARY_KEYS, TABLES
from results.store import Store, database_path, ingest_frames


def _model(n_per_class: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    rng.shuffle(labels)
    z = rng.normal(size=(labels.size, classes)) * 1.5
    z[np.arange(labels.size), labels] += rng.normal(2.0, 1.5, labels.size)
    return (z * 1.4).astype(np.float32), labels  # over-confident by 1.4


# ----------------------------------------------------------------------------------------------- split


def test_split_imagenet_shape_is_five_per_class():
    labels = np.repeat(np.arange(1000), 50)
    fit, ev, sha = stratified_split(labels, n_fit=5000, seed=0)
    assert fit.size == 5000 and ev.size == 45000
    assert np.array_equal(np.bincount(labels[fit]), np.full(1000, 5))
    assert np.array_equal(np.union1d(fit, ev), np.arange(50000)) and np.intersect1d(fit, ev).size == 0
    mask = np.zeros(50000, dtype=np.uint8)
    mask[fit] = 1
    assert sha == hashlib.sha256(mask.tobytes()).hexdigest()


def test_split_is_seeded_and_deterministic():
    labels = np.repeat(np.arange(20), 30)
    a = stratified_split(labels, n_fit=60, seed=3)
    b = stratified_split(labels.copy(), n_fit=60, seed=3)
    c = stratified_split(labels, n_fit=60, seed=4)
    assert np.array_equal(a[0], b[0]) and a[2] == b[2]
    assert a[2] != c[2]
    assert np.array_equal(np.bincount(labels[a[0]]), np.full(20, 3))


def test_split_tiny_and_unbalanced_data():
    labels = np.array([0] * 40 + [1] * 25 + [2] * 7)  # 72 samples: a tenth is 7
    fit, ev, _ = stratified_split(labels, n_fit=5000, seed=0)
    per_class = np.bincount(labels[fit], minlength=3)
    assert per_class.sum() == 7 and np.all(per_class >= 1)
    assert np.all(np.bincount(labels[ev], minlength=3) >= 1)
    singleton = np.array([0, 1, 1, 2])  # classes 0 and 2 have a single sample: they stay in the eval part
    fit, ev, _ = stratified_split(singleton, n_fit=10, seed=0)
    assert fit.size == 1 and labels[fit].size == 1 and singleton[fit][0] == 1


def test_split_bad_input():
    with pytest.raises(ValueError, match="labels must be a 1-D integer"):
        stratified_split(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="at least 2"):
        stratified_split(np.array([0]))
    with pytest.raises(ValueError, match="n_fit must be"):
        stratified_split(np.array([0, 1, 1]), n_fit=0)


# ----------------------------------------------------------------------------------------------- bundle


def test_columns_match_the_schema():
    con = duckdb.connect()
    con.execute(TABLES["selective_metrics"])
    described = [row[0] for row in con.execute("DESCRIBE selective_metrics").fetchall()]
    assert described == list(COLUMNS)
    assert PRIMARY_KEYS["selective_metrics"] == ("model_id", "kappa", "temperature_scaled", "subset")


@pytest.fixture(scope="module")
def bundle():
    z, y = _model(40, 25, seed=1)
    return z, y, analyse_selective("toy", z, y, split_seed=7, n_fit=100)


def test_bundle_rows_and_keys(bundle):
    df = bundle[2]
    assert df.columns == list(COLUMNS) and df.height == 9
    keys = df.select("kappa", "temperature_scaled", "subset").rows()
    assert len(set(keys)) == 9
    assert set(keys) == {
        (k, ts, sub)
        for k in ("msp", "neg_entropy", "max_logit")
        for ts, sub in ((False, "all"), (False, "ts_eval"), (True, "ts_eval"))
    }
    assert df["n"].to_list() == [1000, 900, 900] * 3
    assert (df["split_seed"] == 7).all() and df["split_sha256"].n_unique() == 1
    con = duckdb.connect()
    con.execute(TABLES["selective_metrics"])
    con.register("rows", df.to_arrow())
    con.execute("INSERT INTO selective_metrics SELECT * FROM rows")
    assert con.execute("SELECT count(*) FROM selective_metrics").fetchone()[0] == 9


def test_bundle_values_match_direct_computation(bundle):
    z, y, df = bundle
    fit_idx, eval_idx, sha = stratified_split(y, n_fit=100, seed=7)
    correct = z.argmax(axis=1) == y
    t = S.fit_temperature(z[fit_idx], y[fit_idx])
    assert t > 1.0  # the toy model is over-confident (logits scaled by 1.4): TS softens it
    row = df.filter((pl.col("kappa") == "msp") & ~pl.col("temperature_scaled") & (pl.col("subset") == "all"))
    msp = confidence.msp(z)
    assert row["accuracy"][0] == pytest.approx(correct.mean(), abs=1e-15)
    assert row["auroc"][0] == pytest.approx(S.auroc(msp, correct), abs=1e-12)
    assert row["aurc"][0] == pytest.approx(S.aurc(msp, correct), abs=1e-12)
    assert row["ece15"][0] == pytest.approx(S.ece(msp, correct), abs=1e-12)
    assert row["sac95"][0] == pytest.approx(S.coverage_at_accuracy(msp, correct, 0.95), abs=1e-12)
    assert row["nll"][0] == pytest.approx(S.nll(z, y), rel=1e-12)
    assert row["split_sha256"][0] == sha and row["temperature"][0] == 1.0
    ts_row = df.filter((pl.col("kappa") == "neg_entropy") & pl.col("temperature_scaled"))
    assert ts_row["temperature"][0] == pytest.approx(t, rel=1e-12)
    ent = confidence.neg_entropy(z[eval_idx].astype(np.float64) / t)
    assert ts_row["auroc"][0] == pytest.approx(S.auroc(ent, correct[eval_idx]), abs=1e-12)
    assert ts_row["augrc"][0] == pytest.approx(S.augrc(ent, correct[eval_idx]), abs=1e-12)
    assert ts_row["nll"][0] == pytest.approx(S.nll(z[eval_idx], y[eval_idx], temperature=t), rel=1e-12)
    assert ts_row["ece15"][0] is None  # calibration only for probability-valued κ
    assert ts_row["nll_after"][0] <= ts_row["nll_before"][0]


def test_bundle_max_logit_ranking_is_temperature_invariant(bundle):
    _, _, df = bundle
    ml = df.filter((pl.col("kappa") == "max_logit") & (pl.col("subset") == "ts_eval")).sort("temperature_scaled")
    for col in ("auroc", "aurc", "augrc", "sac95_max", "risk_at_80"):
        a, b = ml[col].to_list()
        assert (a is None and b is None) or a == pytest.approx(b, abs=1e-12)
    assert ml["conf_mean"][1] == pytest.approx(ml["conf_mean"][0] / ml["temperature"][1], rel=1e-12)


def test_bundle_other_kappas_and_bad_input():
    z, y = _model(20, 10, seed=2)
    df = analyse_selective("toy", z, y, kappas=("energy",), n_fit=20)
    row = df.filter(~pl.col("temperature_scaled") & (pl.col("subset") == "all"))
    correct = z.argmax(axis=1) == y
    assert row["auroc"][0] == pytest.approx(S.auroc(confidence.energy(z), correct), abs=1e-12)
    with pytest.raises(ValueError, match="kappas must be"):
        analyse_selective("toy", z, y, kappas=("nope",))
    bad = z.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="logits must be finite"):
        analyse_selective("toy", bad, y)
    with pytest.raises(ValueError, match="labels must have shape"):
        analyse_selective("toy", z, y[:-1])


def test_a_stored_kappa_has_the_rows_without_ts_and_brute_force_metrics():
    z, y = _model(20, 10, seed=4)
    correct = z.argmax(axis=1) == y
    kappa = np.random.default_rng(0).normal(size=y.size) + correct
    kappa[:30] = np.round(kappa[:30], 1)  # ties
    tables = analyse_selective_tables("toy", z, y, kappas=("msp", "det_knn"), split_seed=3, n_fit=20,
                                      stored={"det_knn": kappa, "unused": np.zeros(3)})
    df = tables["selective_metrics"]
    rows = df.filter(pl.col("kappa") == "det_knn").sort("subset")
    assert rows.select("temperature_scaled", "subset").rows() == [(False, "all"), (False, "ts_eval")]
    assert rows["ece15"].is_null().all() and rows["temperature"].to_list() == [1.0, 1.0]
    _, eval_idx, _ = stratified_split(y, n_fit=20, seed=3)
    for subset, idx in (("all", np.arange(y.size)), ("ts_eval", eval_idx)):
        row = rows.filter(pl.col("subset") == subset).row(0, named=True)
        k, ok = kappa[idx], correct[idx]
        diff = k[ok][:, None] - k[~ok][None, :]  # every (correct, wrong) pair; a tie counts one half
        assert row["auroc"] == pytest.approx(((diff > 0) + 0.5 * (diff == 0)).mean(), abs=1e-12)
        msp_row = df.filter((pl.col("kappa") == "msp") & ~pl.col("temperature_scaled") & (pl.col("subset") == subset))
        assert row["accuracy"] == msp_row["accuracy"][0] and row["nll"] == msp_row["nll"][0]  # same classifier
    curves = tables["selective_curves"].filter(pl.col("kappa") == "det_knn")
    assert curves.select("temperature_scaled", "subset").unique().height == 2
    assert tables["reliability_bins"].filter(pl.col("kappa") == "det_knn").height == 0
    for bad, message in ((kappa[:-1], "one per sample"), (np.where(correct, np.nan, kappa), "finite")):
        with pytest.raises(ValueError, match=message):
            analyse_selective_tables("toy", z, y, kappas=("det_knn",), n_fit=20, stored={"det_knn": bad})
    with pytest.raises(ValueError, match="kappas must be"):
        analyse_selective_tables("toy", z, y, kappas=("det_vim",), n_fit=20, stored={"det_knn": kappa})


def test_bundle_on_a_model_that_is_always_wrong():
    z, y = _model(10, 5, seed=3)
    y = (z.argmax(axis=1) + 1) % 5
    with pytest.warns(RuntimeWarning, match="returning NaN"):
        df = analyse_selective("random", z, y.astype(np.int64), n_fit=10)
    assert df["auroc"].is_null().all() and (df["accuracy"] == 0.0).all()
    assert not any(isinstance(v, float) and math.isnan(v) for v in df.row(0))


# ------------------------------------------------------------------------ stored curves and calibration bins


@pytest.fixture(scope="module")
def tables():
    z, y = _model(40, 25, seed=1)
    return z, y, analyse_selective_tables("toy", z, y, split_seed=7, n_fit=100, curve_points=30)


def test_tables_hold_the_same_metrics_and_a_curve_and_bins_per_row(tables, bundle):
    _, _, out = tables
    assert set(out) == {"selective_metrics", "selective_curves", "reliability_bins"}
    assert out["selective_metrics"].equals(bundle[2])
    key = ["kappa", "temperature_scaled", "subset"]
    curves, bins = out["selective_curves"], out["reliability_bins"]
    assert curves.select(key).unique().sort(key).equals(out["selective_metrics"].select(key).sort(key))
    assert set(bins["kappa"].unique()) == {"msp"} and bins.height == 3 * 15  # probability κ only
    assert curves.group_by(key).len()["len"].max() <= 30


def test_stored_curve_ends_at_the_error_rate_and_follows_the_msp_ranking(tables):
    z, y, out = tables
    metrics, curves = out["selective_metrics"], out["selective_curves"]
    for row in metrics.iter_rows(named=True):
        curve = curves.filter(
            (pl.col("kappa") == row["kappa"]) & (pl.col("temperature_scaled") == row["temperature_scaled"])
            & (pl.col("subset") == row["subset"])
        ).sort("point")  # fmt: skip
        assert curve["point"].to_list() == list(range(curve.height))
        assert curve["coverage"][-1] == 1.0 and curve["accepted"][-1] == row["n"]
        assert curve["risk"][-1] == pytest.approx(1 - row["accuracy"], abs=1e-15)
        assert np.array_equal(curve["coverage"].to_numpy(), curve["accepted"].to_numpy() / row["n"])  # k/n exactly
    # brute force for MSP on every sample: ranked by log-MSP (distinct thresholds), thresholds reported as MSP
    log_msp = confidence.log_msp(z)
    correct = z.argmax(axis=1) == y
    curve = curves.filter((pl.col("kappa") == "msp") & (pl.col("subset") == "all")).sort("point")
    for k, risk in zip(curve["accepted"], curve["risk"], strict=True):
        threshold = np.sort(log_msp)[::-1][k - 1]
        accepted = log_msp >= threshold
        assert accepted.sum() == k  # a tie-block end: exactly k samples at or above the threshold
        assert risk == pytest.approx((~correct[accepted]).mean(), abs=1e-15)


def test_stored_bins_give_back_the_stored_ece(tables):
    z, y, out = tables
    metrics, bins = out["selective_metrics"], out["reliability_bins"]
    joined = bins.join(metrics.select("kappa", "temperature_scaled", "subset", "n", "ece15", "mce15"),
                       on=["kappa", "temperature_scaled", "subset"])  # fmt: skip
    for _, group in joined.group_by("kappa", "temperature_scaled", "subset"):
        filled = group.filter(pl.col("count") > 0)
        gaps = (filled["mean_conf"] - filled["accuracy"]).abs()
        assert (filled["count"] * gaps).sum() / group["n"][0] == pytest.approx(group["ece15"][0], rel=1e-12)
        assert gaps.max() == pytest.approx(group["mce15"][0], rel=1e-12)
        assert group["count"].sum() == group["n"][0]  # MSP > 1/C > 0: every sample is in a (lo,hi] bin
        assert (group["bin_convention"] == "(lo,hi]").all()
        empty = group.filter(pl.col("count") == 0)
        assert empty["mean_conf"].null_count() == empty.height
    # direct: the no-TS bins on every sample against hsc.selective.reliability_table of the MSP
    table = S.reliability_table(confidence.msp(z.astype(np.float64)), z.argmax(axis=1) == y)
    stored = bins.filter(~pl.col("temperature_scaled") & (pl.col("subset") == "all")).sort("bin")
    assert stored["count"].to_list() == table.count.tolist()


def test_tables_ingest_into_the_store(tables, tmp_path):
    _, _, out = tables
    assert ingest_frames(database_path(tmp_path), out) == {name: frame.height for name, frame in out.items()}
    with Store.open(database_path(tmp_path), read_only=True) as store:
        ece = store.query(
            "SELECT sum(b.count * abs(b.mean_conf - b.accuracy)) / any_value(m.n) AS ece, any_value(m.ece15) AS "
            "stored FROM reliability_bins b JOIN selective_metrics m USING (model_id, kappa, temperature_scaled, "
            "subset) WHERE b.count > 0 GROUP BY b.model_id, b.kappa, b.temperature_scaled, b.subset"
        )
    assert ece.height == 3
    for value, stored in ece.iter_rows():
        assert value == pytest.approx(stored, rel=1e-12)
