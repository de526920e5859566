"""results.reference and ``uebench import-reference``: the published C-OOD CSV format (cood.md §4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


# ---- both published tables, detected by header; model names -> our ids; the export/import round trip -----------

DATA = Path("/work/shared/data")
if not DATA.is_dir():  # the shared excerpts sit beside the repository in a checkout of the project
    DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HSC_EXCERPT = DATA / "hsc_models_comparison_excerpt.csv"
COOD_EXCERPT = DATA / "cood_paper_results_excerpt.csv"
needs_excerpts = pytest.mark.skipif(not HSC_EXCERPT.is_file(), reason=f"published excerpts not found in {DATA}")


@needs_excerpts
def test_formats_are_told_apart_by_header(tmp_path: Path) -> None:
    from results.reference import COOD_FORMAT, HSC_FORMAT, detect_format

    assert detect_format(COOD_EXCERPT) == COOD_FORMAT and detect_format(HSC_EXCERPT) == HSC_FORMAT
    (tmp_path / "other.csv").write_text("model,top1\nresnet50,0.76\n")
    with pytest.raises(ValueError, match=r"unknown header \('model,top1'…\); expected the C-OOD"):
        detect_format(tmp_path / "other.csv")


@needs_excerpts
def test_hsc_excerpt_values_against_hand_read_cells() -> None:
    from results.reference import read_hsc_csv

    frame = read_hsc_csv(HSC_EXCERPT)
    assert frame.height == 6 * 90 and frame["model_name"].n_unique() == 6  # 91 columns: Architecture + 90 values

    def cell(model: str, column: str) -> dict:
        return frame.filter((pl.col("model_name") == model) & (pl.col("column_name") == column)).row(0, named=True)

    accuracy = cell("alexnet_torchvision", "Accuracy")  # 56.554 % in the CSV
    assert accuracy["value"] == pytest.approx(0.56554, abs=1e-15) and accuracy["unit"] == "fraction"
    assert accuracy["ours"] == "selective_metrics.accuracy" and not accuracy["temperature_scaled"]
    assert cell("resnet50.a1_in1k", "Accuracy_TS")["value"] == pytest.approx(0.8037111, abs=1e-15)
    climbing = cell("alexnet_torchvision", "hAURC_climbing_01")
    assert (climbing["value"], climbing["metric"], climbing["rule"], climbing["risk_type"]) == (
        0.13645943299219, "hAURC", "climbing", "01")
    gain = cell("convnext_tiny.fb_in1k", "Gain_maxcoverage_hier_TS")
    assert (gain["value"], gain["unit"], gain["rule"], gain["risk_type"], gain["temperature_scaled"]) == (
        10.90449386944148, "percent", "max_coverage", "severity", True)
    assert cell("resnet50.a1_in1k", "Coverage_for_Accuracy_99_nonstrict_TS")["value"] == 0.25468
    assert cell("resnet50.a1_in1k", "Coverage_for_Accuracy_99_nonstrict_TS")["ours"] == "selective_metrics.sac99"
    temperature = cell("convnext_tiny.fb_in1k", "Temperature")
    assert temperature["value"] == 0.85171 and temperature["temperature_scaled"]
    assert cell("deit_base_distilled_patch16_384.fb_in1k", "input size")["value"] == 384
    assert cell("resnet50.a1_in1k", "Parameters #")["value"] == 25557032
    assert cell("convnext_tiny.fb_in1k", "Gamma Correlation_TS")["value"] == 0.7284392670040339
    assert cell("resnet50.a1_in1k", "AURC")["value"] == 0.05031


@needs_excerpts
def test_cood_excerpt_values_against_hand_read_cells() -> None:
    frame = read_reference_csv(COOD_EXCERPT)
    row = frame.filter((pl.col("model_name") == "CLIP_ViT-B~32") & (pl.col("level") == 3)).row(0, named=True)
    assert (row["ood_auroc"], row["percentile"], row["percentile_raw"], row["kappa"]) == (
        0.7993430140000001, 0.3, 0.30000000000000004, "msp")
    deit = frame.filter((pl.col("model_name") == "deit_base_distilled_patch16_224") & (pl.col("level") == 0))
    assert deit.row(0, named=True)["id_accuracy"] == 0.8339


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        ("Architecture,Accuracy,Colour", "x,50,red", "does not: Colour"),
        ("Architecture,Accuracy,AURC", "x,50,n/a", "'AURC' holds a non-number ('n/a')"),
        ("Architecture,AURC", "x,0.1", "lacks the HSC column 'Accuracy'"),
    ],
)
def test_bad_hsc_files(tmp_path: Path, header: str, row: str, message: str) -> None:
    from results.reference import read_hsc_csv

    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_hsc_csv(_csv(tmp_path / "bad.csv", header, [row]))
    with pytest.raises(ValueError, match="appears more than once"):
        read_hsc_csv(_csv(tmp_path / "twice.csv", "Architecture,Accuracy", ["x,50", "x,51"]))


def test_nan_gains_are_null(tmp_path: Path) -> None:
    from results.reference import read_hsc_csv

    frame = read_hsc_csv(_csv(tmp_path / "clip.csv", "Architecture,Accuracy,Gain_climbing_01", ["CLIP_RN50,59.8,nan"]))
    assert frame.filter(pl.col("metric") == "Gain")["value"].to_list() == [None]


def test_published_names_map_to_model_ids() -> None:
    from results.reference import map_published_name, reference_models

    assert map_published_name("alexnet_torchvision")[:2] == ("torchvision-alexnet.IMAGENET1K_V1", "torchvision_v1")
    assert map_published_name("resnet50.a1_in1k")[:2] == ("timm-resnet50.a1_in1k", "timm_name")
    assert map_published_name("CLIP_ViT-B~32")[:2] == ("open_clip-ViT-B-32.openai", "clip_openai")
    assert map_published_name("CLIP_ViT-L~14@336px")[:2] == ("open_clip-ViT-L-14-336.openai", "clip_openai")
    assert map_published_name("timm-resnet18-random")[:2] == ("timm-resnet18-random", "model_id")
    assert map_published_name("resnet50")[:2] == (None, None)  # bare names need timm (the CLI's resolver)
    resolver = {"resnet50": ("resnet50.a1_in1k", "timm_default_tag")}.get
    assert map_published_name("resnet50", resolver) == ("timm-resnet50.a1_in1k", "timm_default_tag", "resnet50.a1_in1k")
    rows = reference_models(["vit_base_patch16_224_original", "resnet50", "CLIP_RN50"], resolve=resolver)
    assert rows["model_id"].to_list() == [None, "timm-resnet50.a1_in1k", "open_clip-RN50.openai"]
    assert rows["pretraining"].to_list() == ["in21k", "in1k", "openai"]
    assert rows["clip"].to_list() == [False, False, True]


def _our_levels() -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(3)
    ids = ["timm-resnet50.a1_in1k", "torchvision-alexnet.IMAGENET1K_V1", "open_clip-ViT-B-32.openai-templates80"]
    kappas = ["msp", "neg_entropy", "max_logit", "odin", "mcd_neg_entropy", "energy"]
    keys = [(m, k, level) for m in ids for k in kappas for level in range(11)]
    n = len(keys)
    levels = pl.DataFrame({
        "model_id": [k[0] for k in keys], "kappa": [k[1] for k in keys], "level": [k[2] for k in keys],
        "num_levels": [11] * n, "percentile": [k[2] / 10 for k in keys],
        **{c: rng.uniform(0, 1, n) for c in ("ood_auroc", "ood_avg_conf", "id_accuracy", "id_auroc", "id_avg_conf")},
    })
    models = pl.DataFrame({"model_id": ids, "spec": ids, "source": [i.split("-")[0] for i in ids],
                           "name": ["resnet50", "alexnet", "ViT-B-32"], "pretrained": [True] * 3})
    return models, levels


def test_export_import_round_trip_gives_identical_rows(tmp_path: Path, capsys) -> None:
    models, levels = _our_levels()
    db = database_path(tmp_path)
    ingest_frames(db, {"models": models, "cood_levels": levels})
    exported = tmp_path / "x.csv"
    export = ["sql", "-q", "cood_reference_export", "-o", str(exported), "--format", "csv", "-w", str(tmp_path)]
    assert main(export) == 0
    assert main(["import-reference", str(exported), "-w", str(tmp_path)]) == 0
    assert "3 of 3 model names map to a model id" in capsys.readouterr().out
    joined = run_query(db, canned_query("cood_vs_reference").sql)
    assert joined.height == levels.height
    assert (joined["reference_model"] == joined["model_id"]).all()
    assert joined["ood_auroc_difference"].to_list() == [0.0] * levels.height
    with Store.open(db, read_only=True) as store:
        reference = store.table("reference_cood_levels")
        regimes = store.table("reference_models").sort("model_name")
    columns = ["ood_auroc", "ood_avg_conf", "id_accuracy", "id_auroc", "id_avg_conf", "percentile"]
    ours = levels.select("model_id", "kappa", "level", *columns).sort("model_id", "kappa", "level")
    back = reference.select(pl.col("model_name").alias("model_id"), "kappa", "level", *columns).sort(
        "model_id", "kappa", "level")
    assert back.equals(ours)  # every value bit for bit, every κ back under our name
    assert regimes["model_id"].to_list() == regimes["model_name"].to_list()
    assert regimes["family"].to_list() == ["clip", "resnet", "alexnet"]


@needs_excerpts
def test_import_hsc_table_and_compare_with_ours(tmp_path: Path, capsys) -> None:
    db = database_path(tmp_path)
    model = "timm-resnet50.a1_in1k"
    ingest_frames(db, {
        "models": pl.DataFrame({"model_id": [model], "spec": ["timm:resnet50.a1_in1k"], "source": ["timm"],
                                "name": ["resnet50"], "pretrained": [True]}),
        "hsc_rules": pl.DataFrame({"model_id": [model], "rule": ["climbing"], "temperature_scaled": [False],
                                   "risk_type": ["01"], "haurc": [0.035], "gain": [7.0]}),
        "selective_metrics": pl.DataFrame({"model_id": [model, model], "kappa": ["msp", "msp"],
                                           "temperature_scaled": [False, True], "subset": ["all", "ts_eval"],
                                           "n": [50_000, 45_000], "accuracy": [0.80374, 0.8037111],
                                           "aurc_ref": [0.05, 0.051], "temperature": [1.0, 1.25474]}),
    })
    assert main(["import-reference", str(HSC_EXCERPT), "-w", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("imported 540 values (6 models × 90 columns) into reference_hsc_metrics")
    assert "6 of 6 model names map to a model id" in out
    hsc = run_query(db, canned_query("hsc_vs_reference").sql).row(0, named=True)
    assert hsc["reference_haurc"] == 0.034787678454779  # resnet50.a1_in1k hAURC_climbing_01, read by hand
    assert hsc["haurc_difference"] == pytest.approx(0.035 - 0.034787678454779)
    assert hsc["reference_gain"] is not None
    flat = run_query(db, canned_query("selective_vs_reference").sql)
    accuracy = flat.filter(pl.col("our_column") == "accuracy").sort("temperature_scaled")
    assert accuracy["difference"].to_list() == pytest.approx([0.0, 0.0], abs=1e-15)
    assert set(flat["our_column"]) == {"accuracy", "aurc_ref", "temperature"}  # the columns ours has values for
    temperature = flat.filter(pl.col("our_column") == "temperature")
    assert temperature["reference_value"].to_list() == [1.25474]
    assert temperature["temperature_scaled"].to_list() == [True]
    regimes = run_query(db, "SELECT model_name, family, pretraining, distilled FROM reference_models ORDER BY 1")
    assert regimes.row(by_predicate=pl.col("model_name") == "deit_base_distilled_patch16_224.fb_in1k") == (
        "deit_base_distilled_patch16_224.fb_in1k", "deit", "in1k", True)
    assert regimes.row(by_predicate=pl.col("model_name") == "vit_base_patch16_224.augreg_in21k_ft_in1k")[2] == "in21k"


def test_unknown_header_is_one_line_at_the_cli(tmp_path: Path, capsys) -> None:
    _csv(tmp_path / "other.csv", "model,top1", ["resnet50,0.76"])
    assert main(["import-reference", str(tmp_path / "other.csv"), "-w", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: other.csv: unknown header") and err.count("\n") == 1
