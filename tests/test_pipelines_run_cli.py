"""`uebench run CONFIG.toml`: config validation, one-line errors for bad input, and a small end-to-end run with
model-in-the-loop confidences (ODIN, MC dropout) stored with their parameters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from folders import imagenet_folder

from pipelines.data.datasets import imagenet1k_wnids
from pipelines.engine.run_config import parse_config
from pipelines.errors import UserError

WNIDS = imagenet1k_wnids()[:4]




def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(body)
    return path


def _uebench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, timeout=300)


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"datasets": {"v": {"kind": "id", "root": "x"}}}, "needs `models"),
        ({"models": ["timm:resnet18"]}, "at least one [datasets"),
        ({"models": ["timm:resnet18"], "datasets": {"v": {"kind": "val", "root": "x"}}}, "kind must be"),
        ({"models": ["timm:resnet18"], "datasets": {"v": {"kind": "id"}}, "gpu": 1}, "gpu"),
        (
            {"models": ["m"], "datasets": {"a": {"kind": "id", "root": "x"}, "b": {"kind": "id", "root": "y"}}},
            "a run takes one id dataset, got 2 (a, b)",
        ),
        (
            {"models": ["m"], "datasets": {"v": {"kind": "id", "root": "x"}}, "inference": {"confidences": ["x"]}},
            "unknown confidences",
        ),
        (
            {"models": ["m"], "datasets": {"v": {"kind": "id", "root": "x"}},
             "inference": {"model_confidences": ["mahalanobis"]}},
            "unknown model_confidences ['mahalanobis']",
        ),
        (
            {"models": ["m"], "datasets": {"v": {"kind": "id", "root": "x"}}, "inference": {"mc_passes": 0}},
            "mc_passes must be a positive integer",
        ),
        (
            {"models": ["m"], "datasets": {"v": {"kind": "id", "root": "x"}}, "inference": {"drop_rate": 1.5}},
            "drop_rate must be in [0, 1)",
        ),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, raw, message):
    with pytest.raises(UserError) as caught:
        parse_config(raw, tmp_path)
    assert message in str(caught.value)


def test_config_paths_resolve_against_the_config_folder(tmp_path):
    config = parse_config(
        {
            "models": ["timm:resnet18"], "datasets": {"val": {"kind": "id", "root": "images/val"}},
            "inference": {"model_confidences": ["odin", "mcd_neg_entropy"], "mc_passes": 8, "drop_rate": 0.2},
            "seed": 3,
        },
        tmp_path,
    )
    assert config.datasets[0].root == tmp_path / "images" / "val"
    assert config.workspace == tmp_path / "uebench-workspace"
    assert config.inference.model_confidences == ("odin", "mcd_neg_entropy")
    assert (config.inference.mc_passes, config.inference.drop_rate, config.inference.seed) == (8, 0.2, 3)


def test_missing_dataset_folder_is_a_one_line_error(tmp_path):
    config = _config(tmp_path, 'models = ["timm:test_vit@random"]\n[datasets.val]\nkind = "id"\nroot = "nowhere"\n')
    _one_line_error(_uebench("run", str(config)), "nowhere")


def test_id_folder_with_non_imagenet1k_wnids_is_a_one_line_error(tmp_path):
    imagenet_folder(tmp_path / "val", ["n99999999"], per_class=1)
    config = _config(tmp_path, 'models = ["timm:test_vit@random"]\n[datasets.val]\nkind = "id"\nroot = "val"\n')
    _one_line_error(_uebench("run", str(config)), "n99999999")


def test_unknown_spec_and_non_imagenet1k_head_are_one_line_errors(tmp_path):
    imagenet_folder(tmp_path / "val", WNIDS[:1], per_class=1)
    for spec, fragment in (
        ("nosuchsource:resnet", "nosuchsource"),
        ("timm:no_such_architecture_xyz", "no_such_architecture_xyz"),
        ("timm:vit_base_patch16_224.augreg_in21k", "not the 1,000 ImageNet-1k classes"),
    ):
        config = _config(tmp_path, f'models = ["{spec}"]\n[datasets.val]\nkind = "id"\nroot = "val"\n')
        _one_line_error(_uebench("run", str(config)), fragment)
    assert not (tmp_path / "uebench-workspace" / "uebench.duckdb").exists()  # nothing written before validation


def test_unreachable_ray_address_is_a_quick_one_line_error(tmp_path):
    imagenet_folder(tmp_path / "val", WNIDS[:1], per_class=1)
    config = _config(
        tmp_path,
        'models = ["timm:test_vit@random"]\n[datasets.val]\nkind = "id"\nroot = "val"\n'
        '[ray]\naddress = "127.0.0.1:1"\n',
    )
    _one_line_error(_uebench("run", str(config)), "cannot reach the Ray cluster at '127.0.0.1:1'")


def test_run_stores_odin_and_mc_dropout_columns_with_their_parameters(tmp_path):
    """ODIN / MSP(T=2) / MC-dropout columns come out of inference, match independent recomputation, and their
    parameters (T, ε, passes, seed, dropout p) are recorded and reach the C-OOD rows."""
    from cood.confidence import msp
    from pipelines.engine.outputs import read_outputs
    from results.store import Store

    imagenet_folder(tmp_path / "val", WNIDS)
    from pipelines.demo.data import OOD_PHOTOS

    ood_wnids = sorted({photo.wnid for photo in OOD_PHOTOS})[:5]  # ImageNet-21k classes in the C-OOD pool
    imagenet_folder(tmp_path / "ood", ood_wnids, seed=1)
    config = _config(
        tmp_path,
        'models = ["timm:test_efficientnet@random"]\nanalyses = ["selective", "cood"]\nseed = 5\n'
        '[datasets.val]\nkind = "id"\nroot = "val"\n'
        '[datasets.ood]\nkind = "ood"\nroot = "ood"\nper_class = 6\nn_estimation = 4\n'
        '[cood]\nwindow = 2\nlevels = 3\n'
        '[ray]\nnum_cpus = 2\n'
        '[inference]\nbatch_size = 8\nmodel_confidences = ["odin", "msp_t2", "mcd_neg_entropy", "mcd_pred"]\n'
        "mc_passes = 6\ndrop_rate = 0.3\n",
    )
    result = _uebench("run", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    workspace = tmp_path / "uebench-workspace"
    out = read_outputs(workspace, "timm-test_efficientnet-random", "val")
    assert {"odin", "msp_t2", "mcd_neg_entropy", "mcd_pred"} <= set(out.confidences)
    np.testing.assert_allclose(out.confidences["msp_t2"], msp(out.logits.astype(np.float64) / 2.0), rtol=1e-6)
    assert np.all((out.confidences["odin"] > 0) & (out.confidences["odin"] <= 1))
    assert np.all(out.confidences["mcd_neg_entropy"] <= 1e-12)  # −H ≤ 0
    # dropout was sampled: the MC mean differs from the deterministic softmax far beyond float64 rounding
    # (a random-weight head is near-uniform, so the differences are small in absolute terms)
    assert np.abs(out.confidences["mcd_neg_entropy"] - out.confidences["neg_entropy"]).max() > 1e-12
    ood = read_outputs(workspace, "timm-test_efficientnet-random", "ood")
    assert ood.logits is None and {"msp", "odin", "mcd_neg_entropy"} <= set(ood.confidences)  # ood_logits off
    assert "uebench" in out.metadata["code_version"] and "torch" in json.loads(out.metadata["libraries"])
    mcd = out.kappa_params("mcd_neg_entropy")
    assert mcd["passes"] == 6 and mcd["seed"] == 5 and 0.3 in mcd["functional_dropout_p"]
    assert out.kappa_params("odin") == {"temperature": 2.0, "epsilon": 1e-5}
    with Store.open(workspace / "uebench.duckdb", read_only=True) as store:
        rows = store.query("SELECT DISTINCT kappa, kappa_params FROM cood_levels ORDER BY kappa")
        (run_id, run_config), = store.query("SELECT run_id, config FROM runs").rows()
        written_by = store.query(
            "SELECT DISTINCT run_id FROM cood_levels UNION SELECT DISTINCT run_id FROM selective_metrics"
        )
    # provenance added by the caller, and the analysis options the run used recorded with it
    assert written_by["run_id"].to_list() == [run_id]
    analysis = json.loads(run_config)["analysis"]
    assert (analysis["seed"], analysis["cood_window"], analysis["cood_levels"]) == (5, 2, 3)
    assert analysis["cood_kappas"] == ["msp", "neg_entropy", "max_logit", "odin", "msp_t2", "mcd_neg_entropy"]
    by_kappa = dict(rows.iter_rows())
    assert set(by_kappa) == {"msp", "neg_entropy", "max_logit", "odin", "msp_t2", "mcd_neg_entropy"}
    assert json.loads(by_kappa["odin"])["epsilon"] == 1e-5
    assert json.loads(by_kappa["mcd_neg_entropy"])["passes"] == 6


def test_flags_build_or_override_a_config(tmp_path):
    from pipelines.cli.run import config_from_flags

    raw = config_from_flags({}, ["timm:resnet18"], tmp_path / "val", tmp_path / "ood", "10.0.0.1:6379", ["selective"])
    config = parse_config(raw, tmp_path)
    assert config.models == ["timm:resnet18"] and config.analyses == ["selective"]
    assert [(d.name, d.kind, d.root) for d in config.datasets] == [
        ("imagenet-val", "id", tmp_path / "val"), ("imagenet21k", "ood", tmp_path / "ood")
    ]
    assert config.ray_address == "10.0.0.1:6379"
    # with a config file: the flag replaces the ID root and keeps the dataset's name and other keys
    base = {"models": ["a", "b"], "datasets": {"val": {"kind": "id", "root": "x", "ground_truth": "gt.csv"}}}
    merged = config_from_flags(base, None, tmp_path / "other", None, None, None)
    assert merged["models"] == ["a", "b"]
    assert merged["datasets"] == {"val": {"kind": "id", "root": str(tmp_path / "other"), "ground_truth": "gt.csv"}}
    assert base["datasets"]["val"]["root"] == "x"  # the parsed config is not modified


def test_run_without_config_or_flags_is_a_one_line_error():
    _one_line_error(_uebench("run"), "give a CONFIG.toml")


def test_code_version_from_a_source_tree_that_was_never_installed(monkeypatch):
    """PYTHONPATH=. without `pip install`: no package metadata, yet model tasks must still record provenance."""
    from importlib import metadata

    import pipelines.engine.provenance as provenance

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(provenance.metadata, "version", not_installed)
    assert provenance.code_version().startswith("uebench source")


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        ([], "Usage: uebench"),
        (["cood"], "Usage: uebench cood"),
        (["run", "--bogus"], "No such option: --bogus"),
        (["sql", "--nope", "SELECT 1"], "No such option: --nope"),
        (["hsc", "calibrate"], "Missing option"),
    ],
)
def test_usage_errors_show_usage_and_exit_2_without_a_traceback(argv, shown, capsys):
    # typer >= 0.2x raises the usage errors of its own copy of click, which is not click.ClickException
    from pipelines.cli import main

    assert main(argv) == 2
    captured = capsys.readouterr()
    shown_text = " ".join((captured.out + captured.err).split())
    assert shown in shown_text
