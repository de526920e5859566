"""pipelines.analyses.cood and ``uebench cood build`` over a small synthetic workspace."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from cood import confidence
from cood.imagenet21k import build_split, write_manifest
from cood.severity import class_severity, severity_levels
from pipelines.analyses.cood import analyse_cood
from pipelines.analyses.cood_benchmark import build_benchmark
from pipelines.cli import main
from pipelines.data.datasets import ood_manifest_path as manifest_path
from pipelines.engine.outputs import shard_path, write_shard
from pipelines.errors import UserError
from results.schema import TABLES
from results.store import Store, database_path

NUM_ID_CLASSES = 8
NUM_OOD_CLASSES = 14


def make_workspace(root: Path, *, store_logits: bool = True) -> Path:
    """ID outputs (80 samples over 8 classes), OOD outputs over a 14-class split (9 est + 3 test each)."""
    rng = np.random.default_rng(0)
    data = root / "imagenet21k"
    for c in range(NUM_OOD_CLASSES):
        folder = data / f"n{c + 1:08d}"
        folder.mkdir(parents=True)
        for i in range(13 + c % 3):
            (folder / f"img_{i:02d}.JPEG").write_bytes(b"")
    manifest = build_split(data, seed=5, per_class=12, n_estimation=9, min_images=12, pool_version="test-v1")
    workspace = root / "ws"
    write_manifest(manifest, manifest_path(workspace, "imagenet21k"))

    id_labels = np.repeat(np.arange(NUM_ID_CLASSES), 10)
    id_logits = rng.normal(0, 1, (80, NUM_ID_CLASSES)).astype(np.float32)
    id_logits[np.arange(80), id_labels] += 2.5
    class_shift = rng.normal(0, 1.0, NUM_OOD_CLASSES)
    ood_logits = rng.normal(0, 1, (len(manifest.paths), NUM_ID_CLASSES)).astype(np.float32)
    ood_logits[:, 0] += class_shift[manifest.class_index].astype(np.float32) + 1.0
    for dataset, ids, labels, logits in (
        ("imagenet-val", [f"val/{i:03d}.JPEG" for i in range(80)], id_labels, id_logits),
        ("imagenet21k", list(manifest.paths), manifest.class_index, ood_logits),
    ):
        write_shard(shard_path(workspace, "toy", dataset, 0), ids, labels, logits, {"msp": confidence.msp(logits)})
    return workspace


def test_analyse_cood_tables_follow_the_schema() -> None:
    rng = np.random.default_rng(1)
    ood_class = np.repeat(np.arange(40), 8)
    role = np.tile(np.array(["estimation"] * 6 + ["test"] * 2), 40)
    ood_conf = rng.normal(size=ood_class.size)
    wnids = [f"n{i:08d}" for i in range(40)]
    tables = analyse_cood(
        "m",
        "msp",
        id_conf=rng.normal(1, 1, 100),
        id_correct=rng.random(100) < 0.8,
        ood_conf=ood_conf,
        ood_class=ood_class,
        ood_role=role,
        class_wnids=wnids,
        window=10,
        num_levels=4,
        split_seed=5,
    )
    con = duckdb.connect()
    for name, frame in tables.items():
        con.execute(TABLES[name])
        assert [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()] == frame.columns
        con.register("rows", frame)
        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM rows")
        con.unregister("rows")
    estimation = role == "estimation"
    severity = class_severity(ood_conf[estimation], ood_class[estimation], 40)
    levels = severity_levels(severity, num_levels=4, window=10)
    classes = tables["cood_level_classes"]
    assert classes.height == 40
    for level in range(4):
        assert sorted(classes.filter(pl.col("level") == level)["wnid"]) == sorted(
            wnids[i] for i in levels.classes[level]
        )
    assert tables["cood_class_severity"]["s"].to_list() == severity.tolist()
    assert tables["cood_class_severity"]["n_est"].to_list() == [6] * 40
    assert tables["cood_levels"]["n_ood"].to_list() == [20] * 4
    as_bool = analyse_cood(
        "m",
        "msp",
        id_conf=np.ones(3),
        id_correct=np.array([1, 0, 1]),
        ood_conf=ood_conf,
        ood_class=ood_class,
        ood_role=estimation,
        class_wnids=wnids,
        window=10,
        num_levels=4,
    )
    assert as_bool["cood_level_classes"].equals(tables["cood_level_classes"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ood_role": np.array(["estimation", "train", "test", "test"])}, r"'train'"),
        ({"ood_role": np.ones(3, bool)}, r"shape \(4,\)"),
        ({"class_wnids": ["n1", "n1"]}, "duplicates"),
        ({"window": 3}, "need at least window=3"),
    ],
)
def test_analyse_cood_bad_input(change: dict, message: str) -> None:
    args = {
        "id_conf": np.ones(2),
        "id_correct": np.array([True, False]),
        "ood_conf": np.arange(4.0),
        "ood_class": np.array([0, 0, 1, 1]),
        "ood_role": np.array([True, False, True, False]),
        "class_wnids": ["n1", "n2"],
        "window": 1,
        "num_levels": 2,
    }
    args.update(change)
    with pytest.raises(ValueError, match=message):
        analyse_cood("m", "msp", **args)


def test_cood_build_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workspace = make_workspace(tmp_path)
    args = ["cood", "build", "--model", "toy", "--kappa", "msp", "--workspace", str(workspace)]
    args += ["--window", str(NUM_ID_CLASSES), "--levels", "5"]
    code = main(args)
    assert code == 0
    assert "C-OOD levels" in capsys.readouterr().out
    folder = workspace / "cood" / "toy" / "msp"
    levels = pl.read_parquet(folder / "cood_levels.parquet")
    assert levels.height == 5 and levels["K"].to_list() == [NUM_OOD_CLASSES] * 5
    assert levels["pool_version"][0] == "test-v1" and levels["split_seed"][0] == 5
    assert levels["n_ood"].to_list() == [NUM_ID_CLASSES * 3] * 5 and levels["n_id"][0] == 80
    assert np.all(np.diff(levels["severity"].to_numpy()) >= 0)
    assert pl.read_parquet(folder / "cood_level_classes.parquet").height == 5 * NUM_ID_CLASSES
    reference = pl.read_csv(folder / "toy_softmax_n5.csv")
    assert reference["ood-auroc"].to_list() == levels["ood_auroc"].to_list()
    for _ in range(2):  # re-running replaces the rows of this (model, κ), never duplicates them
        with Store.open(database_path(workspace), read_only=True) as store:
            counts = store.query(
                "SELECT (SELECT count(*) FROM cood_levels), (SELECT count(*) FROM cood_level_classes), "
                "(SELECT count(*) FROM cood_class_severity)"
            ).row(0)
        assert counts == (5, 5 * NUM_ID_CLASSES, NUM_OOD_CLASSES)
        assert main(args) == 0
    info = json.loads((folder / "benchmark.json").read_text())
    manifest_file = manifest_path(workspace, "imagenet21k")
    assert info["manifest_sha256"] == json.loads(manifest_file.with_suffix(".json").read_text())["csv_sha256"]


def test_kappa_is_computed_from_logits_when_not_stored(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    tables, folder = build_benchmark(
        "toy", "margin", workspace=workspace, window=NUM_ID_CLASSES, num_levels=3, output=tmp_path / "out"
    )
    assert folder == tmp_path / "out" and (folder / "toy_margin_n3.csv").is_file()
    stored, _ = build_benchmark("toy", "msp", workspace=workspace, window=NUM_ID_CLASSES, num_levels=3)
    assert tables["cood_levels"]["ood_auroc"].to_list() != stored["cood_levels"]["ood_auroc"].to_list()
    assert tables["cood_levels"]["id_accuracy"].to_list() == stored["cood_levels"]["id_accuracy"].to_list()
    args = ["cood", "build", "-m", "toy", "-k", "energy", "-w", str(workspace), "--window", "8", "--no-ingest"]
    assert main(args) == 0
    assert (workspace / "cood" / "toy" / "energy" / "toy_energy_n11.csv").is_file()
    assert not database_path(workspace).exists()


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workspace = make_workspace(tmp_path)
    base = ["cood", "build", "--model", "toy", "--workspace", str(workspace), "--window", str(NUM_ID_CLASSES)]
    cases = [
        (["--kappa", "odin"], "unknown confidence function 'odin'"),
        (
            ["--kappa", "msp", "--window", "100"],
            "need at least window=100 OOD classes to build severity levels, got K=14",
        ),
        (["--kappa", "msp", "--ood-dataset", "other"], "no outputs for model 'toy' on dataset 'other'"),
        (["--kappa", "msp", "--levels", "1"], "--levels >= 2"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err


def test_manifest_problems(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    manifest_file = manifest_path(workspace, "imagenet21k")
    data = tmp_path / "imagenet21k"
    # Another seed samples other images: some output rows are no longer in the manifest.
    write_manifest(build_split(data, seed=6, per_class=12, n_estimation=9, min_images=12), manifest_file)
    with pytest.raises(UserError, match="not in the split manifest"):
        build_benchmark("toy", "msp", workspace=workspace, window=NUM_ID_CLASSES)
    # A new class sorted first keeps every sample but shifts the class indices of the others.
    (data / "n00000000").mkdir()
    for i in range(12):
        (data / "n00000000" / f"x{i}.jpg").write_bytes(b"")
    write_manifest(build_split(data, seed=5, per_class=12, n_estimation=9, min_images=12), manifest_file)
    with pytest.raises(UserError, match="labels disagree with the manifest's class index"):
        build_benchmark("toy", "msp", workspace=workspace, window=NUM_ID_CLASSES)
    manifest_file.with_suffix(".json").unlink()
    manifest_file.unlink()
    with pytest.raises(UserError, match="no OOD split manifest at"):
        build_benchmark("toy", "msp", workspace=workspace, window=NUM_ID_CLASSES)


def test_ranking_keys_prefer_the_stored_column_then_logits_and_need_both_sides() -> None:
    """MSP ranks by log-MSP (cood.md §5): stored column, else computed from logits; one side without either
    makes both sides rank by the κ values (None, None)."""
    from pipelines.analyses.cood_benchmark import ranking_keys
    from pipelines.engine.outputs import Outputs

    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(6, 5)) * 30).astype(np.float32)
    stored = np.linspace(-3.0, -1.0, 6)

    def outputs(with_logits: bool, columns: dict) -> Outputs:
        return Outputs([f"s{i}" for i in range(6)], np.zeros(6, np.int64), logits if with_logits else None,
                       np.zeros(6, np.int64), columns)

    id_key, ood_key = ranking_keys(outputs(True, {}), outputs(False, {"log_msp": stored}), "msp")
    np.testing.assert_array_equal(id_key, confidence.log_msp(logits))
    assert ood_key is stored
    assert ranking_keys(outputs(True, {}), outputs(False, {"msp": np.ones(6)}), "msp") == (None, None)
    assert ranking_keys(outputs(True, {}), outputs(True, {}), "neg_entropy") == (None, None)
