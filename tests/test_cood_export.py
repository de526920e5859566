"""Reference-format export and re-import (cood.md §4, §9.10)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cood.evaluate import evaluate_levels
from cood.export import (
    REFERENCE_COLUMNS,
    export_benchmark,
    read_reference_csv,
    reference_file_name,
    reference_frame,
    write_reference_csv,
)
from cood.severity import severity_levels

# Published rows of the reference results (paper_results/all_paper_results.csv, COOD_benchmarking):
# float noise in `percentile`, negative κ values and ood-auroc with 16 significant digits included.
REFERENCE_HEADER = (
    "severity level,percentile,ood-auroc,ood_avg_conf,id-acc,id-auroc,id_avg_conf,"
    "model name,confidence function,model name - confidence function\n"
)
REFERENCE_TEXT = (
    REFERENCE_HEADER
    + """\
0,0.0,0.9007992140000001,-4.022904396057129,0.7760199999999999,0.8181147385514055,-1.4153994321823118,adv_inception_v3,entropy,adv_inception_v3-entropy
1,0.09999999999999998,0.8775073268000001,-3.7449700832366943,0.7760199999999999,0.8181147385514055,-1.4153994321823118,adv_inception_v3,entropy,adv_inception_v3-entropy
3,0.30000000000000004,0.7444813659999999,0.3211828172206879,0.56552,0.8488387501800844,0.5831129550933838,alexnet_torchvision,softmax,alexnet_torchvision-softmax
10,1.0,0.5107909032,0.5756152868270874,0.56552,0.8488387501800844,0.5831129550933838,alexnet_torchvision,softmax,alexnet_torchvision-softmax
0,0.0,0.8697592204000001,0.046831786632537835,0.5654600000000001,0.8219767288725965,0.2876884043216705,alexnet_torchvision,odin_temperature-2_noise_mag-1e-05,alexnet_torchvision-odin_temperature-2_noise_mag-1e-05
"""
)


def test_reference_csv_round_trips_losslessly(tmp_path: Path) -> None:
    source = tmp_path / "all_paper_results.csv"
    source.write_text(REFERENCE_TEXT)
    frame = read_reference_csv(source)
    assert frame.columns == list(REFERENCE_COLUMNS)
    assert frame["percentile"][1] == 0.09999999999999998
    assert frame["ood-auroc"][0] == 0.9007992140000001
    assert frame["severity level"].dtype == pl.Int64
    copy = tmp_path / "copy.csv"
    digest = write_reference_csv(frame, copy)
    assert copy.read_text() == REFERENCE_TEXT
    assert digest == hashlib.sha256(REFERENCE_TEXT.encode()).hexdigest()
    assert read_reference_csv(copy).equals(frame)


def test_code_generated_columns_are_kept(tmp_path: Path) -> None:
    lines = REFERENCE_TEXT.splitlines()
    text = "\n".join(
        [lines[0] + ",id dataset,ood dataset", *(line + ",ImageNet_1K,ImageNet_21K" for line in lines[1:])]
    )
    source = tmp_path / "generated.csv"
    source.write_text(text + "\n")
    frame = read_reference_csv(source)
    assert frame.columns[-2:] == ["id dataset", "ood dataset"]
    write_reference_csv(frame, tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_text() == text + "\n"


def test_not_a_reference_csv(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("level,auroc\n0,0.5\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_reference_csv(path)


def small_benchmark(kappa: str = "msp"):
    rng = np.random.default_rng(0)
    levels = severity_levels(rng.normal(size=30), num_levels=3, window=10)
    ood_class = np.repeat(np.arange(30), 4)
    table = evaluate_levels(
        levels,
        rng.normal(size=120),
        ood_class,
        rng.normal(1, 1, 50),
        rng.random(50) < 0.7,
        model_id="resnet50_torchvision",
        kappa=kappa,
        pool_version="v1",
        class_list_sha256="c" * 64,
        split_seed=3,
    )
    wnids = np.array([f"n{i:08d}" for i in range(30)])
    level_classes = pl.DataFrame(
        {
            "model_id": "resnet50_torchvision",
            "kappa": kappa,
            "level": np.repeat(np.arange(3), 10),
            "wnid": wnids[levels.classes.reshape(-1)],
        }
    )
    return table, level_classes


def test_export_writes_reference_csv_class_lists_and_hashes(tmp_path: Path) -> None:
    table, level_classes = small_benchmark()
    paths = export_benchmark(tmp_path / "out", levels=table, level_classes=level_classes, manifest_sha256="m" * 64)
    reference = read_reference_csv(paths["reference_csv"])
    assert paths["reference_csv"].name == "resnet50_torchvision_softmax_n3.csv"
    assert reference["confidence function"].to_list() == ["softmax"] * 3
    assert reference["model name - confidence function"][0] == "resnet50_torchvision-softmax"
    assert reference["ood-auroc"].to_list() == table["ood_auroc"].to_list()
    assert reference["percentile"].to_list() == [0.0, 0.5, 1.0]
    assert reference["id-acc"].to_list() == table["id_accuracy"].to_list()
    classes = pl.read_csv(paths["level_classes_csv"])
    assert classes.columns == ["level", "wnid"] and classes.height == 30
    assert sorted(classes.filter(pl.col("level") == 1)["wnid"]) == sorted(
        level_classes.filter(pl.col("level") == 1)["wnid"]
    )
    info = json.loads(paths["benchmark_json"].read_text())
    assert info["manifest_sha256"] == "m" * 64 and info["window"] == 10 and info["num_levels"] == 3
    for role in ("reference_csv", "levels_csv", "level_classes_csv"):
        file = paths[role]
        assert info["files_sha256"][file.name] == hashlib.sha256(file.read_bytes()).hexdigest()
    levels_back = pl.read_csv(paths["levels_csv"])
    assert levels_back["ood_auroc"].to_list() == table["ood_auroc"].to_list()


def test_unknown_kappa_keeps_its_own_name_and_file_names_are_path_safe() -> None:
    table, _ = small_benchmark(kappa="energy")
    assert reference_frame(table)["confidence function"][0] == "energy"
    assert reference_file_name("CLIP_ViT-L/14@336px", "max_logit", 11) == "CLIP_ViT-L~14@336px_max_logit_n11.csv"


def test_export_needs_one_model_kappa_pair(tmp_path: Path) -> None:
    table, level_classes = small_benchmark()
    mixed = pl.concat([table, table.with_columns(pl.lit("energy").alias("kappa"))])
    with pytest.raises(ValueError, match="exactly one"):
        export_benchmark(tmp_path, levels=mixed, level_classes=level_classes, manifest_sha256=None)
