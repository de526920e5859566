"""The analyses the driver runs after inference, each reading per-sample outputs and returning table rows.

Every analysis is a pure function of the stored outputs (infer once, analyse many times): rerunning one never
re-runs a model. Each returns ``{table name: polars.DataFrame}`` in the schema of ``results/schema.py``; the
per-model functions here add the run's provenance (``run_id``) to the numbers the analysis functions return.

Options come as one frozen :class:`~pipelines.analysis_options.AnalysisOptions` (``RunContext.options``), whose
defaults are the only ones.

Each analysis is a per-model function mapped over the run's models (:func:`map_models`): one Ray task per model
when there are several, so the hierarchical threshold study of hundreds of models spreads over the cluster
instead of running one model after another in the driver. A model whose analysis fails is left out with an
:class:`~pipelines.engine.driver.ModelAnalysisFailed` warning (the driver records it); the other models' rows stand.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.analysis_options import AnalysisOptions
from pipelines.data.datasets import ImageDataset
from pipelines.engine.driver import Analysis, ModelAnalysisFailed, RunContext
from pipelines.engine.outputs import read_outputs
from pipelines.zoo import ModelSpec
from results.schema import with_values

__all__ = ["REGISTRY", "REQUIRES", "AnalysisInputs", "AnalysisOptions", "cood", "hsc", "map_models", "selective"]

Tables = dict[str, pl.DataFrame]


@dataclass(frozen=True)
class AnalysisInputs:
    """What a per-model analysis needs (picklable, sent to Ray tasks): workspace, run id, options, datasets."""

    workspace: Path
    run_id: str
    options: AnalysisOptions
    id_dataset: ImageDataset | None
    ood_dataset: ImageDataset | None


def _concat(parts: list[Tables]) -> Tables:
    tables: dict[str, list[pl.DataFrame]] = {}
    for part in parts:
        for name, frame in part.items():
            tables.setdefault(name, []).append(frame)
    return {name: pl.concat(frames, how="diagonal_relaxed") for name, frames in tables.items()}


def _guarded(fn: Callable[[AnalysisInputs, ModelSpec], Tables], inputs: AnalysisInputs, ms: ModelSpec):
    """(tables or None, one-line error or None, warning messages) for one model, in whatever process runs it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tables, error = fn(inputs, ms), None
        except Exception as exc:  # reported per model by map_models
            tables, error = None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
    return tables, error, [str(w.message) for w in caught]


def map_models(ctx: RunContext, fn: Callable[[AnalysisInputs, ModelSpec], Tables]) -> Tables:
    """``fn(inputs, model)`` for every model of the run; Ray tasks (1 CPU each) when Ray is up and there are
    several models. ``ctx.on_model_done(model_id)`` (if set) is called as each model finishes.

    Each model's tables go, as that model finishes, to ``ctx.on_model_tables(tables)`` when it is set (the driver
    ingests them there, so it holds one model's rows at a time; BENCHMARKS.md "Runs H, I, J") and are then not kept,
    and an exception it raises propagates; otherwise they are returned, concatenated in model order. Failed models
    raise :class:`ModelAnalysisFailed` warnings; if every model failed, a RuntimeError carries the first error."""
    ids, oods = ctx.id_datasets(), ctx.ood_datasets()
    inputs = AnalysisInputs(ctx.workspace, ctx.run_id, ctx.options, ids[0] if ids else None, oods[0] if oods else None)
    import ray

    done = ctx.on_model_done or (lambda model_id: None)
    kept: list[Tables | None] = [None] * len(ctx.models)  # without on_model_tables: returned in model order
    errors: list[str] = []
    succeeded = 0

    def take(i: int, outcome: tuple[Tables | None, str | None, list[str]]) -> None:
        nonlocal succeeded
        ms, (tables, error, notes) = ctx.models[i], outcome
        for note in notes:  # warnings raised in a Ray worker reach the driver's notes this way
            warnings.warn(f"{ms.model_id}: {note}", UserWarning, stacklevel=3)
        if error is None:
            succeeded += 1
            if ctx.on_model_tables is None:
                kept[i] = tables
            else:
                ctx.on_model_tables(tables)
        else:
            errors.append(error)
            warnings.warn(f"{ms.model_id}: {error}", ModelAnalysisFailed, stacklevel=3)
        done(ms.model_id)

    if ray.is_initialized() and len(ctx.models) > 1:
        task = ray.remote(num_cpus=1, max_retries=1)(_guarded)
        inputs_ref = ray.put(inputs)
        refs = [task.remote(fn, inputs_ref, ms) for ms in ctx.models]
        position = {ref: i for i, ref in enumerate(refs)}
        waiting = list(refs)
        while waiting:  # in completion order, so that progress shows (and rows leave) as models finish
            ready, waiting = ray.wait(waiting, num_returns=1)
            take(position[ready[0]], ray.get(ready[0]))
    else:
        for i, ms in enumerate(ctx.models):
            take(i, _guarded(fn, inputs, ms))
    if errors and not succeeded:
        raise RuntimeError(f"failed for every model; first: {errors[0]}")
    return _concat([tables for tables in kept if tables is not None])


def _selective_one(inputs: AnalysisInputs, ms: ModelSpec) -> Tables:
    from cood.confidence import REGISTRY as LOGIT_REGISTRY
    from pipelines.analyses.selective import analyse_selective_tables

    out = read_outputs(inputs.workspace, ms.model_id, inputs.id_dataset.name)
    options = inputs.options
    columns = [k for k in options.selective_kappas if k not in LOGIT_REGISTRY]
    missing = [k for k in columns if k not in out.confidences]
    if missing:
        raise ValueError(f"the outputs on {inputs.id_dataset.name!r} have no column {', '.join(missing)}")
    tables = analyse_selective_tables(
        ms.model_id, out.logits, out.labels, kappas=options.selective_kappas, split_seed=options.seed,
        n_fit=options.n_fit, stored={k: out.confidences[k] for k in columns},
    )
    return with_values(tables, run_id=inputs.run_id)


def selective(ctx: RunContext) -> Tables:
    """Selective-prediction metrics (hsc.selective) of every model on the ID dataset, with the stored
    risk–coverage points (``selective_curves``) and calibration bins (``reliability_bins``) the report draws.

    Options: ``selective_kappas`` (logit κ, and stored columns such as the detectors' ``det_<name>``), ``seed``
    and ``n_fit`` (the temperature-scaling split).
    """
    return map_models(ctx, _selective_one)


def _cood_one(inputs: AnalysisInputs, ms: ModelSpec) -> Tables:
    from pipelines.analyses.cood_benchmark import build_benchmark

    options = inputs.options
    parts = []
    for kappa in options.cood_kappas:
        tables, _ = build_benchmark(
            ms.model_id, kappa, workspace=inputs.workspace, id_dataset=inputs.id_dataset.name,
            ood_dataset=inputs.ood_dataset.name, window=options.cood_window, num_levels=options.cood_levels,
            run_id=inputs.run_id,
        )
        parts.append(tables)
    return _concat(parts)


def cood(ctx: RunContext) -> Tables:
    """Per-(model, κ) C-OOD benchmarks: severity levels from the OOD estimation split, metrics on its test split.

    Options: ``cood_kappas``, ``cood_window`` (|Y_ID|), ``cood_levels``. Each benchmark is also exported under
    ``<workspace>/cood/<model>/<κ>/``.
    """
    return map_models(ctx, _cood_one)


def _hsc_one(inputs: AnalysisInputs, ms: ModelSpec) -> Tables:
    from hsc.hierarchy import load_imagenet_hierarchy
    from pipelines.analyses.hsc import analyse_hsc
    from pipelines.analyses.selective import split_and_fit_temperature

    options = inputs.options
    out = read_outputs(inputs.workspace, ms.model_id, inputs.id_dataset.name)
    temperature = split_and_fit_temperature(out.logits, out.labels, seed=options.seed, n_fit=options.n_fit)[3]
    tables = analyse_hsc(
        ms.model_id, out.logits, out.labels, load_imagenet_hierarchy(), temperature=temperature.temperature,
        alphas=options.hsc_alphas, repetitions=options.hsc_repetitions, seed=options.seed,
    )
    return with_values(tables, run_id=inputs.run_id)


def hsc(ctx: RunContext) -> Tables:
    """Hierarchical selective classification of every model on the ID dataset (hsc.md §7).

    The hierarchy is the packaged ImageNet-1k WordNet tree; rows with temperature scaling use the T fitted on
    the same seeded split as the selective analysis (options ``seed``, ``n_fit``). Options of the threshold
    study: ``hsc_repetitions``, ``hsc_alphas``, ``seed``.
    """
    return map_models(ctx, _hsc_one)


REGISTRY: dict[str, Analysis] = {
    "selective": selective,
    "cood": cood,
    "hsc": hsc,
}

# Dataset kinds an analysis needs (default: an ID dataset).
REQUIRES: dict[str, set[str]] = {"cood": {"id", "ood"}}
