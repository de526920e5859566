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


def _severity(inputs, ms):
    """One cood_class_severity row per model; test_convnext's rows have a column the table lacks (an ingest
    failure) and arrive last (it sleeps), after the other models' rows are already inside the transaction."""
    import time

    rerun = bool(inputs.options.get("bad_last"))
    row = {"model_id": [ms.model_id], "kappa": ["msp"], "wnid": ["n00000001"], "s": [0.9 if rerun else 0.5],
           "n_est": [3]}
    if ms.model_id == "timm-test_convnext-random" and rerun:
        time.sleep(1.5)
        row["no_such_column"] = [1]
    return {"cood_class_severity": pl.DataFrame(row)}


def test_tables_are_handed_over_per_model_and_not_kept(tmp_path):
    context = _context(tmp_path)
    handed: list[dict[str, pl.DataFrame]] = []
    context.on_model_tables = handed.append
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        returned = map_models(context, _rows)
    assert returned == {}
    assert [t["t"]["model_id"].to_list() for t in handed] == [["timm-test_vit-random"], ["timm-test_convnext-random"]]


def _stored_severity(db_path) -> list[tuple[str, float]]:
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        return sorted(con.execute("SELECT model_id, s FROM cood_class_severity").fetchall())


def test_the_driver_ingests_per_model_in_one_transaction_and_an_ingest_failure_rolls_back_all(tmp_path):
    import io
    import sys

    import ray
    from rich.console import Console

    from pipelines.analyses import map_models as mapped
    from pipelines.engine.driver import RunLog, analyse_and_ingest
    from pipelines.engine.inference import init_ray
    from results.store import database_path

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    db_path = database_path(tmp_path)
    log = RunLog(tmp_path / "logs" / "r1.log", Console(file=io.StringIO()))
    init_ray(num_cpus=3)
    try:
        context = _context(tmp_path)
        seen: list[int] = []

        def ingest_spy(ctx):  # how many models' rows reached the driver's open transaction, model by model
            sink = ctx.on_model_tables
            ctx.on_model_tables = lambda tables: (seen.append(len(seen) + 1), sink(tables))
            return mapped(ctx, _severity)

        assert analyse_and_ingest("cood", ingest_spy, context, db_path, log) == []
        assert seen == [1, 2, 3]  # three hand-overs of one model each, not one of three
        assert _stored_severity(db_path) == sorted((ms.model_id, 0.5) for ms in context.models)
        assert context.on_model_tables is None and context.on_model_done is None

        # a rerun whose last model's rows cannot be ingested: the first two models' new rows (s = 0.9) were
        # ingested inside the same transaction, which rolls back, so the first run's rows stay (s = 0.5)
        context = _context(tmp_path)
        context.options = {"k": 3, "bad_last": True}
        errors = analyse_and_ingest("cood", lambda ctx: mapped(ctx, _severity), context, db_path, log)
    finally:
        ray.shutdown()
        log.close()
    assert len(errors) == 1 and errors[0].startswith("cood: ingest failed: StoreError: ")
    assert "no_such_column" in errors[0]
    assert _stored_severity(db_path) == sorted((ms.model_id, 0.5) for ms in context.models)
