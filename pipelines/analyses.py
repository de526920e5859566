"""The analyses the driver runs after inference, each reading per-sample outputs and returning table rows.

Every analysis is a pure function of the stored outputs (infer once, analyse many times): rerunning one never
re-runs a model. Each returns ``{table name: polars.DataFrame}`` in the schema of ``results/schema.py``.
"""

from __future__ import annotations

import polars as pl

from pipelines.driver import Analysis, RunContext
from pipelines.outputs import read_outputs


def selective(ctx: RunContext) -> dict[str, pl.DataFrame]:
    """Selective-prediction metrics (hsc.selective) of every model on every ID dataset."""
    from pipelines.analysis_selective import analyse_selective

    frames = []
    for dataset in ctx.id_datasets():
        for ms in ctx.models:
            out = read_outputs(ctx.workspace, ms.model_id, dataset.name)
            frames.append(
                analyse_selective(
                    ms.model_id, out.logits, out.labels, split_seed=ctx.options.get("split_seed", 0),
                    run_id=ctx.run_id,
                )
            )
    return {"selective_metrics": pl.concat(frames, how="diagonal_relaxed")} if frames else {}


def _concat(parts: list[dict[str, pl.DataFrame]]) -> dict[str, pl.DataFrame]:
    tables: dict[str, list[pl.DataFrame]] = {}
    for part in parts:
        for name, frame in part.items():
            tables.setdefault(name, []).append(frame)
    return {name: pl.concat(frames, how="diagonal_relaxed") for name, frames in tables.items()}


def cood(ctx: RunContext) -> dict[str, pl.DataFrame]:
    """Per-(model, κ) C-OOD benchmarks: severity levels from the OOD estimation split, metrics on its test split.

    Options: ``cood_kappas`` (default msp, neg_entropy, max_logit), ``cood_window`` (default 1000 = |ImageNet-1k|),
    ``cood_levels`` (default 11). Each benchmark is also exported under ``<workspace>/cood/<model>/<κ>/``.
    """
    from pipelines.cmd_cood import build_benchmark

    id_set, ood_set = ctx.id_datasets()[0], ctx.ood_datasets()[0]
    parts = []
    for ms in ctx.models:
        for kappa in ctx.options.get("cood_kappas", ("msp", "neg_entropy", "max_logit")):
            tables, _ = build_benchmark(
                ms.model_id, kappa, workspace=ctx.workspace, id_dataset=id_set.name, ood_dataset=ood_set.name,
                window=ctx.options.get("cood_window", 1000), num_levels=ctx.options.get("cood_levels", 11),
                run_id=ctx.run_id,
            )
            parts.append(tables)
    return _concat(parts)


def hsc(ctx: RunContext) -> dict[str, pl.DataFrame]:
    """Hierarchical selective classification of every model on the first ID dataset (hsc.md §7).

    The hierarchy is the packaged ImageNet-1k WordNet tree; rows with temperature scaling use the T fitted on
    the same seeded split as the selective analysis. Options: ``hsc_repetitions`` (threshold-study splits,
    default 1000), ``hsc_alphas`` (default hsc.study.DEFAULT_ALPHAS), ``split_seed``.
    """
    from hsc.hierarchy import load_imagenet_hierarchy
    from hsc.study import DEFAULT_ALPHAS
    from hsc.temperature import fit_temperature_result
    from pipelines.analysis_hsc import analyse_hsc
    from pipelines.analysis_selective import stratified_split

    hierarchy = load_imagenet_hierarchy()
    seed = ctx.options.get("split_seed", 0)
    dataset = ctx.id_datasets()[0]
    parts = []
    for ms in ctx.models:
        out = read_outputs(ctx.workspace, ms.model_id, dataset.name)
        fit_idx, _, _ = stratified_split(out.labels, seed=seed)
        temperature = fit_temperature_result(out.logits[fit_idx], out.labels[fit_idx]).temperature
        parts.append(
            analyse_hsc(
                ms.model_id, out.logits, out.labels, hierarchy, temperature=temperature,
                alphas=ctx.options.get("hsc_alphas", DEFAULT_ALPHAS),
                repetitions=ctx.options.get("hsc_repetitions", 1000), seed=seed, run_id=ctx.run_id,
            )
        )
    return _concat(parts)


REGISTRY: dict[str, Analysis] = {
    "selective": selective,
    "cood": cood,
    "hsc": hsc,
}

# Dataset kinds an analysis needs (default: an ID dataset).
REQUIRES: dict[str, set[str]] = {"cood": {"id", "ood"}}
