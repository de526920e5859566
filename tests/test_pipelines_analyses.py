"""map_models: per-model analyses, failure isolation and note forwarding (no Ray: the in-process path; the demo
test covers the Ray path)."""

from __future__ import annotations

import warnings

import polars as pl
import pytest

from pipelines.analyses import map_models
from pipelines.engine.driver import ModelAnalysisFailed, RunContext
from pipelines.zoo import resolve_all


@pytest.fixture(autouse=True)
def no_ray():
    """The in-process path: no Ray instance left over from another test module."""
    import ray

    ray.shutdown()


def _context(tmp_path) -> RunContext:
    models = resolve_all(["timm:test_vit@random", "timm:test_efficientnet@random", "timm:test_convnext@random"])
    return RunContext(workspace=tmp_path, run_id="r1", models=models, datasets=[], options={"k": 3})


def _rows(inputs, ms):
    if ms.model_id == "timm-test_efficientnet-random":
        raise ValueError("boom\nsecond line")
    warnings.warn(f"note from {ms.model_id}", UserWarning, stacklevel=1)
    return {"t": pl.DataFrame({"model_id": [ms.model_id], "k": [inputs.options["k"]], "run": [inputs.run_id]})}


def test_a_failing_model_is_reported_and_the_others_are_kept(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tables = map_models(_context(tmp_path), _rows)
    assert tables["t"].rows() == [("timm-test_vit-random", 3, "r1"), ("timm-test_convnext-random", 3, "r1")]
    failed = [str(w.message) for w in caught if issubclass(w.category, ModelAnalysisFailed)]
    assert failed == ["timm-test_efficientnet-random: ValueError: boom second line"]
    notes = sorted(str(w.message) for w in caught if not issubclass(w.category, ModelAnalysisFailed))
    assert notes == [
        "timm-test_convnext-random: note from timm-test_convnext-random",
        "timm-test_vit-random: note from timm-test_vit-random",
    ]


def test_every_model_failing_raises(tmp_path):
    def always(inputs, ms):
        raise KeyError(ms.model_id)

    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="failed for every model; first: KeyError"):
        warnings.simplefilter("ignore")
        map_models(_context(tmp_path), always)


def test_progress_callback_sees_every_model_once(tmp_path):
    context = _context(tmp_path)
    seen: list[str] = []
    context.on_model_done = seen.append
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        map_models(context, _rows)
    assert seen == [ms.model_id for ms in context.models]  # the failed model counts as done too


def _first_model_slow(inputs, ms):
    import time

    if ms.model_id == "timm-test_vit-random":
        time.sleep(1.5)
    return {"t": pl.DataFrame({"model_id": [ms.model_id]})}


def test_ray_path_reports_models_as_they_finish_and_keeps_model_order(tmp_path):
    import sys

    import ray

    from pipelines.engine.inference import init_ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    init_ray(num_cpus=3)
    try:
        context = _context(tmp_path)
        seen: list[str] = []
        context.on_model_done = seen.append
        tables = map_models(context, _first_model_slow)
    finally:
        ray.shutdown()
    order = [ms.model_id for ms in context.models]
    assert tables["t"]["model_id"].to_list() == order  # rows in model order, whatever the completion order
    assert sorted(seen) == sorted(order) and seen[-1] == "timm-test_vit-random"  # the slow one finished last
