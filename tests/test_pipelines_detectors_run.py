"""`uebench run` with [detectors]: config errors, the fit set's disjointness, and a small end-to-end run whose
det_<name> κ columns equal cood.detectors fitted and scored directly on pipelines.zoo.features features (computed
here through timm's own transforms), with stored statistics reused or refitted on rerun."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from folders import imagenet_folder, timm_eval_batch

from cood import detectors as det
from pipelines.data.datasets import imagenet1k_wnids, load_folder
from pipelines.engine.detectors import check_disjoint, fit_set_sha256, sample_fit_set
from pipelines.engine.run_config import parse_config
from pipelines.errors import UserError

WNIDS = imagenet1k_wnids()[:3]
MODEL = "timm:test_vit@random"  # D = 64 features: a fit set of 75 images gives a full-rank covariance
MODEL_ID = "timm-test_vit-random"
NAMES = ("mahalanobis", "knn", "vim")

BASE = {"models": ["m"], "datasets": {"v": {"kind": "id", "root": "x"}, "t": {"kind": "fit", "root": "y"}}}


@pytest.mark.parametrize(
    ("detectors", "message"),
    [
        ({"names": ["mahalanobis", "odin"], "fit": "t"}, "names must be distinct registered detectors"),
        ({"names": ["knn"], "fit": "v"}, "fit must name the dataset of kind \"fit\""),
        ({"names": ["knn"]}, "fit must name the dataset of kind \"fit\""),
        ({"names": [], "fit": "t"}, "needs names"),
        ({"names": ["knn"], "fit": "t", "fit_per_class": 0}, "fit_per_class must be a positive integer"),
        ({"names": ["knn"], "fit": "t", "k": 5}, "unknown key(s) k in [detectors]"),
        (None, "has kind \"fit\" but there is no [detectors] table"),
        ({"names": ["knn"], "fit": "t", "params": {"vim": {"dim": 4}}}, "params.vim: 'vim' is not in names"),
        ({"names": ["knn"], "fit": "t", "params": {"knn": {"dim": 4}}}, "unknown key(s) dim in [detectors] params.knn"),
    ],
)
def test_bad_detector_configs_name_the_problem(tmp_path, detectors, message):
    raw = dict(BASE) if detectors is None else {**BASE, "detectors": detectors}
    with pytest.raises(UserError) as caught:
        parse_config(raw, tmp_path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_config_adds_one_kappa_column_per_detector(tmp_path):
    config = parse_config({**BASE, "detectors": {"names": ["knn", "vim"], "fit": "t", "fit_per_class": 3}}, tmp_path)
    assert config.inference.detectors == ("knn", "vim")
    assert config.inference.kappa_columns()[-2:] == ("det_knn", "det_vim")
    assert config.analysis.cood_kappas[-2:] == ("det_knn", "det_vim")
    assert config.analysis.selective_kappas == ("msp", "neg_entropy", "max_logit", "det_knn", "det_vim")
    assert (config.detectors.fit, config.detectors.fit_per_class, config.detectors.feature_budget_bytes) == (
        "t", 3, 1024 << 20)


def test_fit_sample_is_seeded_per_class_and_overlap_names_a_shared_file(tmp_path):
    root = imagenet_folder(tmp_path / "train", WNIDS, per_class=5)
    full = load_folder("train", root, "id")
    sample = sample_fit_set(full, 2, seed=3)
    labels = np.asarray(sample.labels)
    assert [int((labels == c).sum()) for c in sorted(set(full.labels))] == [2, 2, 2]
    assert set(sample.sample_ids) <= set(full.sample_ids) and list(sample.sample_ids) == sorted(sample.sample_ids)
    assert sample_fit_set(full, 2, seed=3).sample_ids == sample.sample_ids
    assert fit_set_sha256(sample) != fit_set_sha256(sample_fit_set(full, 3, seed=3))
    # the same folder reached through a symlink is still the same files
    (tmp_path / "alias").symlink_to(root)
    with pytest.raises(UserError) as caught:
        check_disjoint(sample, [load_folder("val", tmp_path / "alias", "id")])
    assert "share 6 image(s)" in str(caught.value) and str(root) in str(caught.value)
    other = load_folder("val", imagenet_folder(tmp_path / "val", WNIDS, per_class=2, seed=1), "id")
    check_disjoint(sample, [other])  # distinct files: no error


def _uebench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, timeout=600)


def _write_config(tmp_path: Path, fit_root: str, fit_per_class: int) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(
        f'models = ["{MODEL}"]\nanalyses = ["cood", "selective"]\nseed = 5\n'
        '[datasets.val]\nkind = "id"\nroot = "val"\n'
        '[datasets.ood]\nkind = "ood"\nroot = "ood"\nper_class = 6\nn_estimation = 4\n'
        f'[datasets.train]\nkind = "fit"\nroot = "{fit_root}"\n'
        f'[detectors]\nnames = {json.dumps(list(NAMES))}\nfit = "train"\nfit_per_class = {fit_per_class}\n'
        '[cood]\nwindow = 2\nlevels = 3\n'
        '[ray]\nnum_cpus = 2\n'
        '[inference]\nbatch_size = 8\nshards = 2\n'
    )
    return path


def _features(ms, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Oracle features and logits: timm's own eval transform, then the model's forward_features/forward_head."""
    from pipelines.zoo import build_model

    model = build_model(ms)
    batch = timm_eval_batch(ms, dataset)
    with torch.inference_mode():
        fmap = model.forward_features(batch)
        return model.forward_head(fmap, pre_logits=True).double().numpy(), model.forward_head(fmap).double().numpy()


def test_run_scores_detectors_as_kappa_columns_equal_to_direct_scoring(tmp_path):
    from pipelines.demo.data import OOD_PHOTOS
    from pipelines.engine.outputs import read_outputs
    from pipelines.zoo import resolve_all
    from results.store import Store

    imagenet_folder(tmp_path / "val", WNIDS, per_class=4)
    imagenet_folder(tmp_path / "train", WNIDS, per_class=26, seed=2)
    ood_wnids = sorted({photo.wnid for photo in OOD_PHOTOS})[:5]
    imagenet_folder(tmp_path / "ood", ood_wnids, seed=1)

    # the fit set may not be the evaluated ID set: a one-line error before anything runs
    overlap = _uebench("run", str(_write_config(tmp_path, "val", 4)))
    assert overlap.returncode == 2 and "Traceback" not in overlap.stderr
    assert overlap.stderr.strip().count("\n") == 0 and "share 12 image(s)" in overlap.stderr

    result = _uebench("run", str(_write_config(tmp_path, "train", 25)))
    assert result.returncode == 0, result.stderr[-3000:]
    for name in NAMES:
        assert f"detectors: {MODEL_ID} {name} fitted (not fitted yet)" in result.stdout
        assert result.stdout.count(f"det_{name}") >= 2  # a row of the printed selective and C-OOD tables
    assert "selective prediction on val (one row per model and κ" in result.stdout
    workspace = tmp_path / "uebench-workspace"
    (ms,) = resolve_all([MODEL])
    fit_set = sample_fit_set(load_folder("train", tmp_path / "train", "id"), 25, seed=5)
    fit_features, fit_logits = _features(ms, fit_set)
    inputs = det.DetectorInputs(features=fit_features, logits=fit_logits, labels=np.asarray(fit_set.labels))
    head = det.LinearHead(*(p.detach().double().numpy() for p in _classifier(ms)))
    sha = fit_set_sha256(fit_set)
    for dataset in ("val", "ood"):
        out = read_outputs(workspace, MODEL_ID, dataset)
        root = tmp_path / dataset
        images = load_folder(dataset, root, "id" if dataset == "val" else "ood")
        order = [images.sample_ids.index(s) for s in out.sample_ids]
        query, logits = _features(ms, images)
        for name in NAMES:
            stats = det.DETECTORS[name].fit(inputs, head, fit_set_sha256=sha)
            expected = det.score(stats, det.DetectorInputs(features=query[order], logits=logits[order]))
            got = out.confidences[f"det_{name}"]
            assert got.dtype == np.float64
            np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())
            params = out.kappa_params(f"det_{name}")
            assert params["fit_set_sha256"] == sha and params["n_fit"] == len(fit_set)
            stored = det.load_stats(workspace / "detectors" / MODEL_ID / f"{name}.npz")
            assert stored.provenance.fit_set_sha256 == sha
    with Store.open(workspace / "uebench.duckdb", read_only=True) as store:
        kappas = set(store.query("SELECT DISTINCT kappa FROM cood_levels")["kappa"].to_list())
        selective = store.query("SELECT * FROM selective_metrics WHERE kappa LIKE 'det_%' AND subset = 'all'")
    assert {f"det_{name}" for name in NAMES} <= kappas
    # ID selective metrics of every detector: AUROC of κ separating correct from wrong predictions, brute force
    out = read_outputs(workspace, MODEL_ID, "val")
    correct = out.pred == out.labels
    assert sorted(selective["kappa"].to_list()) == sorted(f"det_{name}" for name in NAMES)
    assert not selective["temperature_scaled"].any() and selective["ece15"].is_null().all()
    for row in selective.iter_rows(named=True):
        assert (row["n"], row["accuracy"]) == (len(correct), pytest.approx(correct.mean()))
        kappa = out.confidences[row["kappa"]]
        diff = kappa[correct][:, None] - kappa[~correct][None, :]
        if diff.size:  # random weights: often no correct prediction, when AUROC is undefined (null)
            assert row["auroc"] == pytest.approx(((diff > 0) + 0.5 * (diff == 0)).mean(), abs=1e-12)
        else:
            assert row["auroc"] is None

    again = _uebench("run", str(_write_config(tmp_path, "train", 25)))
    assert again.returncode == 0, again.stderr[-3000:]
    for name in NAMES:
        assert f"detectors: {MODEL_ID} {name} reused" in again.stdout
    assert "0 to compute" in again.stdout  # same fit set: every output verified and reused

    refit = _uebench("run", str(_write_config(tmp_path, "train", 24)))
    assert refit.returncode == 0, refit.stderr[-3000:]
    for name in NAMES:
        assert f"detectors: {MODEL_ID} {name} fitted (fit_set_sha256 changed)" in refit.stdout
    assert "0 to compute" not in refit.stdout  # outputs carry the fit set's fingerprint: recomputed
    out = read_outputs(workspace, MODEL_ID, "val")
    assert out.kappa_params("det_knn")["n_fit"] == 72  # 24 per class × 3 classes


def _classifier(ms):
    from pipelines.zoo import build_model

    classifier = build_model(ms).get_classifier()
    return classifier.weight, classifier.bias


def test_fit_phase_respects_the_feature_budget_and_refits_when_parameters_change(tmp_path):
    """In-process fit phase: a budget below one model's n_fit × D × 4 bytes is a one-line error for that model;
    stored statistics are reused under the same identity and refitted when a hyper-parameter changes."""
    import ray

    from pipelines.engine.detectors import DetectorSettings, fit_all

    ray.shutdown()  # in-process: with Ray up (left by an earlier test module) the statistics would be object refs
    from pipelines.engine.inference import InferenceOptions
    from pipelines.zoo import resolve_all

    fit_set = load_folder("train", imagenet_folder(tmp_path / "train", WNIDS, per_class=3), "id")
    models = resolve_all([MODEL])
    opts = InferenceOptions(batch_size=4, device="cpu")
    sha = fit_set_sha256(fit_set)
    need = len(fit_set) * 64 * 4  # test_vit: D = 64, float32
    tight = DetectorSettings(("knn",), "train", feature_budget_bytes=need - 1)
    report = fit_all(models, fit_set, tmp_path / "ws", opts, tight, sha)
    assert not report.stats and "fit-set features need" in report.errors[0] and "\n" not in report.errors[0]
    enough = DetectorSettings(("knn",), "train", feature_budget_bytes=need)
    first = fit_all(models, fit_set, tmp_path / "ws", opts, enough, sha)
    assert first.lines == [f"detectors: {MODEL_ID} knn fitted (not fitted yet)"]
    assert first.stats[0]["knn"].k == 1 and first.stats[0]["knn"].bank.shape == (len(fit_set), 64)
    again = fit_all(models, fit_set, tmp_path / "ws", opts, enough, sha)
    assert again.lines == [f"detectors: {MODEL_ID} knn reused"]
    np.testing.assert_array_equal(again.stats[0]["knn"].bank, first.stats[0]["knn"].bank)
    k3 = DetectorSettings(("knn",), "train", feature_budget_bytes=need, params={"knn": {"k": 3}})
    changed = fit_all(models, fit_set, tmp_path / "ws", opts, k3, sha)
    assert changed.lines == [f"detectors: {MODEL_ID} knn fitted (params changed)"] and changed.stats[0]["knn"].k == 3
    # one detector reused, one fitted: both reported, the reused one read back from the workspace
    both = fit_all(models, fit_set, tmp_path / "ws", opts, dataclasses.replace(k3, names=("knn", "mahalanobis")), sha)
    assert both.lines == [f"detectors: {MODEL_ID} knn reused",
                          f"detectors: {MODEL_ID} mahalanobis fitted (not fitted yet)"]
    np.testing.assert_array_equal(both.stats[0]["knn"].bank, changed.stats[0]["knn"].bank)
    assert both.stats[0]["mahalanobis"].means.shape == (3, 64)
