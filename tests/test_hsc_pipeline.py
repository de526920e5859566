"""The hsc analysis rows (schema contract) and ``uebench hsc calibrate`` on small stored outputs."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from hsc import calibration, curves, rules
from hsc.hierarchy import load_imagenet_hierarchy
from hsc.study import StratifiedSplitter
from pipelines.analyses.hsc import analyse_hsc, downsample_indices, leaf_probabilities
from results.schema import TABLES

CLASSES = np.array([1, 5, 281, 282, 285, 967])


def demo_like(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = CLASSES[rng.integers(0, len(CLASSES), n)]
    logits = rng.normal(size=(n, 1000)).astype(np.float32)
    logits[np.arange(n), labels] += rng.uniform(0, 8, n).astype(np.float32)
    return logits, labels


def test_downsample_keeps_endpoints():
    assert downsample_indices(10).tolist() == list(range(10))
    idx = downsample_indices(100_000)
    assert len(idx) <= 512 and idx[0] == 0 and idx[-1] == 99_999 and (np.diff(idx) > 0).all()


@pytest.mark.parametrize("temperature", [None, 1.7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_leaf_probabilities_are_scipy_softmax(temperature, dtype):
    # several blocks of rows on the thread pool, a ragged last block; oracle: scipy's one-shot softmax, whose
    # operations (max shift, exp, row sum, division) are the same, so the values agree to the last bit
    from scipy.special import softmax

    H = load_imagenet_hierarchy()
    logits, _ = demo_like(n=1300, seed=3)
    logits = logits.astype(dtype)
    z = logits.astype(np.float64)
    want = softmax(z if temperature is None else z / temperature, axis=1)
    assert np.array_equal(leaf_probabilities(logits, H, temperature), want)


def test_leaf_probabilities_refuse_bad_logits():
    H = load_imagenet_hierarchy()
    logits, _ = demo_like(n=1100)
    logits[1050, 7] = np.nan  # in the last block
    with pytest.raises(ValueError, match="NaN or infinite"):
        leaf_probabilities(logits, H)
    with pytest.raises(ValueError, match="expected shape"):
        leaf_probabilities(logits[:, :999], H)
    with pytest.raises(ValueError, match="temperature"):
        leaf_probabilities(logits, H, 0.0)


def test_analysis_rows_match_schema_and_direct_computation():
    H = load_imagenet_hierarchy()
    logits, labels = demo_like()
    tables = analyse_hsc("demo:m", logits, labels, H, temperature=1.7, alphas=(0.2, 0.05), repetitions=30)
    con = duckdb.connect()
    for name, frame in tables.items():
        con.execute(TABLES[name])
        con.register("frame", frame.to_arrow())
        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM frame")  # exact column names, key uniqueness
        con.unregister("frame")
        schema_cols = [row[0] for row in con.execute(f"DESCRIBE {name}").fetchall()]
        assert frame.columns == schema_cols
    rules_df = tables["hsc_rules"]
    assert rules_df.height == 2 * 4 * 2
    probs = leaf_probabilities(logits, H)
    for row in rules_df.filter(~rules_df["temperature_scaled"]).iter_rows(named=True):
        assert row["haurc"] == pytest.approx(curves.haurc(H, probs, labels, row["rule"], row["risk_type"]), abs=1e-12)
        assert row["hierarchy_id"] == H.hierarchy_id and row["grid"] is None
    plain = {
        (r["rule"], r["risk_type"]): r for r in rules_df.filter(~rules_df["temperature_scaled"]).iter_rows(named=True)
    }
    assert plain["climbing", "01"]["gain"] == pytest.approx(
        100 * (plain["selective", "01"]["haurc"] - plain["climbing", "01"]["haurc"]) / plain["selective", "01"]["haurc"]
    )
    scaled_probs = leaf_probabilities(logits, H, 1.7)
    scaled = rules_df.filter(
        rules_df["temperature_scaled"] & (rules_df["rule"] == "climbing") & (rules_df["risk_type"] == "severity")
    )
    assert scaled["haurc"][0] == pytest.approx(curves.haurc(H, scaled_probs, labels, "climbing", "severity"))
    curves_df = tables["hsc_curves"]
    one = curves_df.filter(
        (curves_df["rule"] == "climbing") & (curves_df["risk_type"] == "01") & ~curves_df["temperature_scaled"]
    )
    assert one["theta"][0] == 0.0 and one["theta"][-1] == 1.0 and one.height <= 512
    assert one["coverage"][0] == pytest.approx(1.0)
    assert one["risk"][0] == pytest.approx(1 - np.mean(probs.argmax(1) == labels))
    cal = tables["hsc_calibration"]
    assert cal.height == 4 * 2 and set(cal["method"]) == {"conformal", "pac", "quantile", "darts"}
    assert cal.filter(cal["method"] == "pac")["delta"].to_list() == [0.1, 0.1]
    assert (cal["n_cal"] == 200).all() and (cal["repetitions"] == 30).all()


def test_analysis_rejects_wrong_class_count():
    H = load_imagenet_hierarchy()
    with pytest.raises(ValueError, match=r"logits: expected shape \(N, 1000\)"):
        analyse_hsc("m", np.zeros((4, 10), np.float32), np.zeros(4, int), H)


def test_cli_calibrate(tmp_path: Path, capsys):
    from pipelines.cli import main
    from pipelines.engine.outputs import shard_path, write_shard

    logits, labels = demo_like(300, seed=1)
    write_shard(shard_path(tmp_path, "m1", "imagenet-val", 0), [f"s{i:04d}" for i in range(300)], labels, logits, {})
    code = main(["hsc", "calibrate", "--model", "m1", "--alpha", "0.1", "-w", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    # Independent recomputation of the printed θ on the same seeded split.
    H = load_imagenet_hierarchy()
    order = np.argsort([f"s{i:04d}" for i in range(300)])
    y = labels[order]
    probs = leaf_probabilities(logits[order], H)
    cal = StratifiedSplitter(y, 150, 0, 1000).calibration_indices(0)
    theta = calibration.calibrate(H, probs[cal], y[cal], 0.1)
    test = np.setdiff1d(np.arange(300), cal)
    acc = H.is_correct(rules.climbing(H, probs[test], theta), y[test]).mean()
    assert f"θ = {theta:.6g}" in out and f"hierarchical accuracy {acc:.4f}" in out
    assert main(["hsc", "calibrate", "--model", "m1", "--alpha", "0.1", "--method", "pac", "-w", str(tmp_path)]) == 2
    assert "needs --delta" in capsys.readouterr().err
    assert main(["hsc", "calibrate", "--model", "zz", "--alpha", "0.1", "-w", str(tmp_path)]) == 2
    assert "no outputs" in capsys.readouterr().err
