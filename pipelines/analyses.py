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
                analyse_selective(ms.model_id, out.logits, out.labels, split_seed=ctx.options.get("split_seed", 0))
            )
    return {"selective_metrics": pl.concat(frames, how="diagonal_relaxed")} if frames else {}


REGISTRY: dict[str, Analysis] = {
    "selective": selective,
}
