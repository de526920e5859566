"""results.reference and ``uebench import-reference``: the published C-OOD CSV format (cood.md §4)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines.cli import main
from results.reference import read_reference_csv
from results.sql import canned_query, run_query
from results.store import Store, database_path, ingest_frames

HEADER = (
    "severity level,percentile,ood-auroc,ood_avg_conf,id-acc,id-auroc,id_avg_conf,model name,"
    "confidence function,model name - confidence function"
)
# the example rows of cood.md §4 (published values), one with the documented percentile float noise
ROWS = [
    "0,0.0,0.9018132512,0.31964,0.76146,0.86410,0.79702,resnet50_torchvision,softmax,resnet50_torchvision-softmax",
    "5,0.5,0.8132029832,0.48367,0.76146,0.86410,0.79702,resnet50_torchvision,softmax,resnet50_torchvision-softmax",
    "10,1.0,0.6268992392,0.71262,0.76146,0.86410,0.79702,resnet50_torchvision,softmax,resnet50_torchvision-softmax",
    "0,0.0,0.9915244024,0.06399,0.81506,0.86814,0.86553,vit_large_patch32_384,softmax,vit_large_patch32_384-softmax",
    "3,0.30000000000000004,0.95,0.1,0.81506,0.86814,0.86553,vit_large_patch32_384,softmax,"
    "vit_large_patch32_384-softmax",
    "10,1.0,0.5107909032,0.57562,0.56552,0.84884,0.58311,alexnet_torchvision,softmax,alexnet_torchvision-softmax",
    "0,0.0,0.9784955852,18.7984,0.76946,0.68644,27.1616,CLIP_ViT-L~14@336px,max_logit,CLIP_ViT-L~14@336px-max_logit",
]


def _csv(path: Path, header: str = HEADER, rows: list[str] = ROWS) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_reads_the_published_example_rows(tmp_path: Path) -> None:
    frame = read_reference_csv(_csv(tmp_path / "ref.csv"))
    assert frame.height == len(ROWS)
    row = frame.filter((pl.col("model_name") == "resnet50_torchvision") & (pl.col("level") == 10)).row(0, named=True)
    assert row["ood_auroc"] == 0.6268992392 and row["id_accuracy"] == 0.76146 and row["kappa"] == "msp"
    assert row["confidence_function"] == "softmax" and row["source_file"] == "ref.csv"
    noisy = frame.filter(pl.col("level") == 3).row(0, named=True)
    assert noisy["percentile"] == 0.3 and noisy["percentile_raw"] == 0.30000000000000004
    clip = frame.filter(pl.col("model_name") == "CLIP_ViT-L~14@336px").row(0, named=True)
    assert clip["kappa"] == "max_logit" and clip["id_avg_conf"] == 27.1616


def test_code_generated_format_and_kappa_names(tmp_path: Path) -> None:
    header = "severity level,percentile,ood-auroc,ood_avg_conf,id-acc,id-auroc,id_avg_conf,model name,"
    header += "confidence function,id dataset,ood dataset"
    rows = [
        "0,0.0,0.9,0.3,0.76,0.86,0.79,resnet50,softmax_confidences,imagenet_val,imagenet21k",
        "0,0.0,0.8,0.3,0.76,0.86,0.79,resnet50,entropy_confidences,imagenet_val,imagenet21k",
        "0,0.0,0.7,0.3,0.76,0.86,0.79,resnet50,odin_temperature-2_noise_mag-1e-05,imagenet_val,imagenet21k",
        "0,0.0,0.6,0.3,0.76,0.86,0.79,resnet50,mcd_entropy,imagenet_val,imagenet21k",
        "0,0.0,0.5,0.3,0.76,0.86,0.79,resnet50,my_new_score,imagenet_val,imagenet21k",
    ]
    frame = read_reference_csv(_csv(tmp_path / "gen.csv", header, rows))
    assert frame["kappa"].to_list() == ["msp", "neg_entropy", "odin", "mcd_neg_entropy", "my_new_score"]
    assert frame["id_dataset"].unique().to_list() == ["imagenet_val"]


def test_kappa_name_table_reads_both_ways() -> None:
    from common import KAPPA_FROM_PUBLISHED, PUBLISHED_KAPPA_NAMES

    assert len(set(PUBLISHED_KAPPA_NAMES.values())) == len(PUBLISHED_KAPPA_NAMES)  # one published name per κ
    assert all(KAPPA_FROM_PUBLISHED[PUBLISHED_KAPPA_NAMES[ours]] == ours for ours in PUBLISHED_KAPPA_NAMES)
    assert PUBLISHED_KAPPA_NAMES["msp"] == "softmax" and KAPPA_FROM_PUBLISHED["entropy"] == "neg_entropy"  # cood.md §5


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (HEADER.replace("ood-auroc,", ""), [r.replace("0.9018132512,", "") for r in ROWS[:1]], "lacks the reference"),
        (HEADER + ",colour", [ROWS[0] + ",red"], "does not: colour"),
        (HEADER, [ROWS[0].replace("0.9018132512", "n/a")], "'ood_auroc' holds a non-number ('n/a')"),
        (HEADER, [ROWS[0].replace("0,0.0,", "-1,0.0,", 1)], "whole numbers >= 0"),
        (HEADER, [ROWS[0], ROWS[0]], "1 row(s) repeat"),
    ],
)
def test_bad_reference_files(tmp_path: Path, header: str, rows: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_reference_csv(_csv(tmp_path / "bad.csv", header, rows))


def test_import_command_and_join_with_our_levels(tmp_path: Path, capsys) -> None:
    db = database_path(tmp_path)
    models = pl.DataFrame(
        {
            "model_id": ["timm-vit_large_patch32_384.orig_in21k_ft_in1k"],
            "spec": ["timm:vit_large_patch32_384.orig_in21k_ft_in1k"],
            "source": ["timm"],
            "name": ["vit_large_patch32_384"],
            "pretrained": [True],
        }
    )
    levels = pl.DataFrame(
        {
            "model_id": ["timm-vit_large_patch32_384.orig_in21k_ft_in1k"] * 2,
            "kappa": ["msp", "msp"],
            "level": [0, 3],
            "num_levels": [11, 11],
            "percentile": [0.0, 0.3],
            "ood_auroc": [0.99, 0.94],
            "id_accuracy": [0.81506, 0.81506],
        }
    )
    ingest_frames(db, {"models": models, "cood_levels": levels})
    csv = _csv(tmp_path / "ref.csv")
    for _ in range(2):  # importing twice replaces, never duplicates
        assert main(["import-reference", str(csv), "-w", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("imported 7 rows (4 models; κ max_logit, msp)")
    with Store.open(db, read_only=True) as store:
        assert store.table("reference_cood_levels").height == 7
    joined = run_query(db, canned_query("cood_vs_reference").sql)
    assert joined["level"].to_list() == [0, 3]
    assert joined["ood_auroc_difference"].to_list() == pytest.approx([0.99 - 0.9915244024, 0.94 - 0.95])
    assert main(["import-reference", str(tmp_path / "missing.csv"), "-w", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: reference CSV not found")
