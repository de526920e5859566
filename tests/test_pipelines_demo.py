"""The demo end to end on a reduced setting, its determinism and its idempotence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.demo.data import ID_DATASET, ID_PHOTOS, OOD_DATASET, OOD_PHOTOS, build_demo_data, folder_digest

REDUCED_MODELS = ("efficientnet_lite:lite0", "timm:mobilenetv3_small_100@random")
IMAGES_PER_CLASS = 5  # 2 per class fit the detectors, 3 are evaluated


def test_demo_data_is_deterministic_and_imagenet_shaped(tmp_path):
    a = build_demo_data(tmp_path / "a", images_per_class=4, seed=7)
    b = build_demo_data(tmp_path / "b", images_per_class=4, seed=7)
    c = build_demo_data(tmp_path / "c", images_per_class=4, seed=8)
    for name in (ID_DATASET, OOD_DATASET):
        assert folder_digest(a[name]) == folder_digest(b[name])
        assert folder_digest(a[name]) != folder_digest(c[name])
    id_classes = sorted(p.name for p in a[ID_DATASET].iterdir())
    assert id_classes == sorted({p.wnid for p in ID_PHOTOS})
    assert all(len(list((a[ID_DATASET] / w).glob("*.jpg"))) == 4 for w in id_classes)
    ood_classes = sorted(p.name for p in a[OOD_DATASET].iterdir())
    assert ood_classes == sorted({p.wnid for p in OOD_PHOTOS})


def test_demo_ood_classes_are_imagenet21k_and_unrelated_to_imagenet1k():
    """Every OOD photo's wnid is in the C-OOD class pool (21k fall11 minus WordNet relatives of the 1k)."""
    from cood.pool import ood_class_pool

    pool = set(ood_class_pool().wnids)
    assert {p.wnid for p in OOD_PHOTOS} <= pool
    from pipelines.data.datasets import imagenet1k_wnids

    assert {p.wnid for p in ID_PHOTOS} <= set(imagenet1k_wnids())


@pytest.fixture(scope="module")
def demo_workspace(tmp_path_factory):
    from pipelines.demo import run_demo

    workspace = tmp_path_factory.mktemp("demo")
    run_demo(workspace, images_per_class=IMAGES_PER_CLASS, models=REDUCED_MODELS)
    return workspace


def _table_counts(workspace: Path) -> dict[str, int]:
    from results.store import Store

    with Store.open(workspace / "uebench.duckdb", read_only=True) as store:
        return {t: store.query(f"SELECT count(*) AS n FROM {t}")["n"][0] for t in store.tables()}


def test_demo_writes_one_output_row_per_image(demo_workspace):
    from pipelines.demo import fit_images_per_class
    from pipelines.zoo import resolve_all

    n_images = {
        ID_DATASET: (IMAGES_PER_CLASS - fit_images_per_class(IMAGES_PER_CLASS)) * len({p.wnid for p in ID_PHOTOS}),
        OOD_DATASET: IMAGES_PER_CLASS * len({p.wnid for p in OOD_PHOTOS}),
    }
    for ms in resolve_all(list(REDUCED_MODELS)):
        for dataset, expected in n_images.items():
            folder = demo_workspace / "outputs" / f"model={ms.model_id}" / f"dataset={dataset}"
            files = sorted(folder.glob("part-*.parquet"))
            assert files and all(f.with_suffix(".json").is_file() for f in files)  # each shard with its manifest
            table = pa.concat_tables([pq.read_table(f) for f in files])
            assert table.num_rows == expected
            assert {"sample_id", "label", "logits", "pred", "msp"} <= set(table.column_names)
            logits = np.asarray(table.column("logits").combine_chunks().flatten()).reshape(expected, -1)
            assert logits.shape[1] == 1000
            assert np.array_equal(logits.argmax(1), table.column("pred").to_numpy())
            assert len(set(table.column("sample_id").to_pylist())) == expected


def test_demo_database_has_one_row_per_model(demo_workspace):
    from results.store import Store

    with Store.open(demo_workspace / "uebench.duckdb", read_only=True) as store:
        assert store.query("SELECT count(*) AS n FROM models")["n"][0] == len(REDUCED_MODELS)
        assert store.query("SELECT count(*) AS n FROM runs WHERE status = 'ok'")["n"][0] >= 1
        msp = store.query(
            "SELECT model_id, accuracy, auroc, aurc FROM selective_metrics "
            "WHERE kappa = 'msp' AND NOT temperature_scaled AND subset = 'all'"
        )
    assert msp.height == len(REDUCED_MODELS)
    random_row = msp.filter(msp["model_id"].str.ends_with("-random"))
    assert random_row["accuracy"][0] < 0.5


def test_demo_models_carry_params_weights_hash_gmacs_and_regime(demo_workspace):
    from pipelines.zoo import count_params, resolve_all
    from results.store import Store

    with Store.open(demo_workspace / "uebench.duckdb", read_only=True) as store:
        models = store.query("SELECT * FROM models ORDER BY model_id")
    specs = {ms.model_id: ms for ms in resolve_all(list(REDUCED_MODELS))}
    assert sorted(specs) == models["model_id"].to_list()
    for row in models.iter_rows(named=True):
        assert row["params"] == count_params(specs[row["model_id"]])  # the built module's count = the meta count
        assert len(row["weights_sha256"]) == 64 and row["gmacs_reason"] is None
    lite, random = models.row(0, named=True), models.row(1, named=True)
    for row in (lite, random):  # FlopCounterMode's count = a count by hand over the convolutions and linear layers
        assert row["gmacs"] == pytest.approx(_hand_gmacs(specs[row["model_id"]]), rel=1e-12)
    # published multiply-adds at 224 px (which also count some element-wise work): EfficientNet-Lite0 407 M
    # (TF model card), MobileNetV3-Small 1.0 56 M (paper)
    assert lite["gmacs"] == pytest.approx(0.407, rel=0.1) and random["gmacs"] == pytest.approx(0.056, rel=0.1)
    assert (lite["family"], lite["pretraining"], lite["metadata_source"]) == ("efficientnet", "in1k", "rules")
    assert (random["family"], random["pretraining"], random["clip"]) == ("mobilenet", None, False)


def _hand_gmacs(ms) -> float:
    """Multiply-adds of one image counted from each Conv2d's and Linear's shapes (forward hooks, meta device)."""
    import torch

    from pipelines.zoo.registry import lookup_source

    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    with torch.device("meta"):
        model = lookup_source(ms.source, ms.spec).architecture(ms).eval()
        for module in model.modules():
            module.register_forward_hook(count)
        size = ms.preprocess.input_size
        model(torch.empty(1, 3, size, size))
    return total / 1e9


def test_rerunning_the_demo_duplicates_nothing(demo_workspace):
    from pipelines.demo import run_demo

    before = _table_counts(demo_workspace)
    context = run_demo(demo_workspace, images_per_class=IMAGES_PER_CLASS, models=REDUCED_MODELS)
    after = _table_counts(demo_workspace)
    assert after.pop("runs") == before.pop("runs") + 1  # a rerun is a new run; everything else is replaced
    after.pop("run_tasks")
    before.pop("run_tasks")
    assert after == before
    from results.store import Store

    with Store.open(demo_workspace / "uebench.duckdb", read_only=True) as store:
        statuses = store.query(
            f"SELECT DISTINCT status, attempts FROM run_tasks WHERE run_id = '{context.run_id}'"
        )
        first_attempts = store.query("SELECT DISTINCT attempts FROM run_tasks WHERE status = 'ok'")
    assert statuses.rows() == [("reused", 0)]  # every output verified and reused, nothing scheduled again
    assert first_attempts["attempts"].to_list() == [1]  # the first run executed each task once


def _uebench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_the_built_commands():
    result = _uebench("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout


def test_unwritable_workspace_is_a_one_line_error():
    result = _uebench("demo", "--workspace", "/proc/forbidden")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: workspace /proc/forbidden is not writable")
    assert "Traceback" not in result.stderr + result.stdout


def test_demo_runs_every_analysis_and_writes_the_report(demo_workspace):
    """C-OOD levels, HSC rules/curves/thresholds for every model, and an HTML report with figures."""
    from results.store import Store

    with Store.open(demo_workspace / "uebench.duckdb", read_only=True) as store:
        rules = store.query("SELECT model_id, rule, risk_type, temperature_scaled, haurc, gain FROM hsc_rules")
        study = store.query("SELECT * FROM hsc_calibration WHERE method = 'conformal'")
        levels = store.query("SELECT model_id, kappa, level, num_levels, ood_auroc, run_id FROM cood_levels")
        manifests = store.query("SELECT kind, manifest_sha256 FROM datasets ORDER BY kind")
        run_ids = set(store.query("SELECT run_id FROM runs")["run_id"].to_list())
    # provenance: the C-OOD rows name their run; the OOD split manifest is fingerprinted (ID sets have none)
    assert set(levels["run_id"].to_list()) <= run_ids
    import hashlib

    from pipelines.data.datasets import ood_manifest_path

    expected = hashlib.sha256(ood_manifest_path(demo_workspace, OOD_DATASET).read_bytes()).hexdigest()
    assert manifests.rows() == [("id", None), ("ood", expected)]
    # 4 rules × 2 risks × with/without temperature scaling, per model
    assert rules.group_by("model_id").len()["len"].to_list() == [16] * len(REDUCED_MODELS)
    assert rules["haurc"].is_between(0, 1).all()
    # the real pretrained model ranks its hierarchical errors better than a random-weight one (0/1 risk, no TS)
    selective = {
        r["model_id"]: r["haurc"]
        for r in rules.filter(
            (rules["rule"] == "selective") & (rules["risk_type"] == "01") & ~rules["temperature_scaled"]
        ).iter_rows(named=True)
    }
    lite0 = next(m for m in selective if "lite0" in m)
    random_model = next(m for m in selective if m.endswith("-random"))
    assert selective[lite0] < selective[random_model]
    assert set(study["model_id"].to_list()) == set(selective)
    assert (study["repetitions"] > 0).all()
    assert levels.height > 0 and levels["ood_auroc"].drop_nulls().is_between(0, 1).all()
    for (_, _), group in levels.group_by("model_id", "kappa"):
        assert sorted(group["level"].to_list()) == list(range(group["num_levels"][0]))
    report = demo_workspace / "reports" / "report"
    overview = (report / "index.html").read_text()
    assert overview.count('class="plot-spec"') >= 5 and "hierarchical" in overview.lower()
    pages = {p.stem for p in (report / "models").glob("*.html")}
    assert pages == set(selective)  # one drill-down page per model, with the stored curves and bins drawn
    for page in (report / "models").glob("*.html"):
        text = page.read_text()
        assert 'data-target="risk-coverage"' in text and 'data-target="reliability"' in text, page.name


def test_cood_and_hsc_commands_find_the_demo_datasets_without_flags(demo_workspace):
    from pipelines.engine.outputs import workspace_dataset

    assert workspace_dataset(demo_workspace, "id", "x") == ID_DATASET
    assert workspace_dataset(demo_workspace, "ood", "x") == OOD_DATASET
    assert workspace_dataset(demo_workspace / "nowhere", "id", "fallback") == "fallback"
    result = _uebench("hsc", "calibrate", "-m", "efficientnet_lite-lite0.in1k", "--alpha", "0.1",
                      "-w", str(demo_workspace))
    assert result.returncode == 0, result.stderr
    assert f"on {ID_DATASET}: conformal θ" in " ".join(result.stdout.split())


def test_demo_scores_detectors_fitted_on_images_it_does_not_evaluate(demo_workspace):
    """Mahalanobis, KNN and ViM are fitted per model on 2 demo ID images per class, none of them evaluated,
    and each is a κ of the C-OOD benchmark of every model."""
    from cood.detectors import load_stats
    from pipelines.demo import DEMO_DETECTORS, fit_images_per_class
    from pipelines.engine.outputs import read_outputs
    from pipelines.zoo import resolve_all
    from results.store import Store

    n_classes = len({p.wnid for p in ID_PHOTOS})
    all_ids = {f"{w.name}/{f.name}" for w in (demo_workspace / "data" / ID_DATASET).iterdir() for f in w.iterdir()}
    with Store.open(demo_workspace / "uebench.duckdb", read_only=True) as store:
        levels = store.query("SELECT DISTINCT model_id, kappa FROM cood_levels")
        selective = store.query("SELECT DISTINCT model_id, kappa FROM selective_metrics WHERE kappa LIKE 'det_%'")
    for ms in resolve_all(list(REDUCED_MODELS)):
        out = read_outputs(demo_workspace, ms.model_id, ID_DATASET)
        evaluated = set(out.sample_ids)
        assert len(all_ids - evaluated) == fit_images_per_class(IMAGES_PER_CLASS) * n_classes
        for name in DEMO_DETECTORS:
            params = out.kappa_params(f"det_{name}")
            assert params["n_fit"] == len(all_ids - evaluated)
            stats = load_stats(demo_workspace / "detectors" / ms.model_id / f"{name}.npz")
            assert stats.provenance.fit_set_sha256 == params["fit_set_sha256"]
            assert np.isfinite(out.confidences[f"det_{name}"]).all()
        kappas = set(levels.filter(levels["model_id"] == ms.model_id)["kappa"].to_list())
        assert {f"det_{name}" for name in DEMO_DETECTORS} <= kappas
        # and of the selective metrics on the evaluated ID images
        stored = set(selective.filter(selective["model_id"] == ms.model_id)["kappa"].to_list())
        assert stored == {f"det_{name}" for name in DEMO_DETECTORS}
