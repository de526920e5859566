"""pipelines.analysis_options: one frozen AnalysisOptions whose defaults the config, the CLI and the analyses read."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import typer

from pipelines.analyses.cood import analyse_cood
from pipelines.analyses.cood_benchmark import build_benchmark
from pipelines.analyses.hsc import analyse_hsc
from pipelines.analyses.selective import analyse_selective
from pipelines.analysis_options import DEFAULTS, LOGIT_KAPPAS, AnalysisOptions
from pipelines.engine.run_config import parse_config

MINIMAL = {"models": ["timm:resnet18"], "datasets": {"val": {"kind": "id", "root": "val"}}}


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.cood_window = 5  # type: ignore[misc]


def test_a_config_without_analysis_keys_gets_the_defaults(tmp_path) -> None:
    config = parse_config(MINIMAL, tmp_path)
    assert config.analysis == DEFAULTS
    assert config.seed == DEFAULTS.seed


def test_config_keys_land_in_the_options(tmp_path) -> None:
    raw = {
        **MINIMAL,
        "seed": 3,
        "cood": {"window": 5, "levels": 4},
        "hsc": {"repetitions": 7},
        "inference": {"model_confidences": ["odin", "mcd_pred"]},
    }
    config = parse_config(raw, tmp_path)
    assert config.analysis == AnalysisOptions(
        seed=3, cood_window=5, cood_levels=4, hsc_repetitions=7, cood_kappas=(*LOGIT_KAPPAS, "odin")
    )
    assert config.seed == 3 and config.inference.seed == 3


@pytest.mark.parametrize(
    ("function", "parameters"),
    [
        (analyse_selective, {"kappas": "selective_kappas", "split_seed": "seed", "n_fit": "n_fit"}),
        (analyse_cood, {"window": "cood_window", "num_levels": "cood_levels"}),
        (build_benchmark, {"window": "cood_window", "num_levels": "cood_levels"}),
        (analyse_hsc, {"alphas": "hsc_alphas", "repetitions": "hsc_repetitions", "seed": "seed"}),
    ],
)
def test_analysis_keyword_defaults_are_the_options(function, parameters: dict[str, str]) -> None:
    signature = inspect.signature(function)
    for parameter, option in parameters.items():
        assert signature.parameters[parameter].default == getattr(DEFAULTS, option), (function.__name__, parameter)


def _option(command_path: tuple[str, ...], name: str):
    from pipelines.cli.app import app

    command = typer.main.get_command(app)
    for part in command_path:
        command = command.commands[part]
    return next(param for param in command.params if param.name == name)


@pytest.mark.parametrize(
    ("command_path", "name", "option"),
    [
        (("run",), "window", "cood_window"),
        (("run",), "levels", "cood_levels"),
        (("cood", "build"), "window", "cood_window"),
        (("cood", "build"), "levels", "cood_levels"),
        (("hsc", "calibrate"), "seed", "seed"),
        (("demo",), "seed", "seed"),
    ],
)
def test_cli_options_default_to_none_and_name_the_dataclass_default(command_path, name, option) -> None:
    param = _option(command_path, name)
    assert param.default is None
    assert f"default {getattr(DEFAULTS, option)}" in param.help


def test_analyses_leave_provenance_to_the_caller() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 200)
    frame = analyse_selective("m", logits, labels, n_fit=20)
    assert frame["run_id"].null_count() == frame.height
    assert "run_id" not in inspect.signature(analyse_selective).parameters
    assert not {"run_id", "code_sha"} & set(inspect.signature(analyse_cood).parameters)
    assert "run_id" not in inspect.signature(analyse_hsc).parameters
