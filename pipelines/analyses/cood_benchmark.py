"""The C-OOD benchmark of one (model, κ) built from stored inference outputs (cood.md): κ read from its output
column or computed from stored logits, OOD rows aligned with the split manifest, then :func:`analyse_cood` and
the export of :func:`cood.export.export_benchmark` plus the three result tables as Parquet. Used by the run's
``cood`` analysis and by ``uebench cood build``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl

from common import atomic_write_bytes
from cood import confidence
from cood.export import export_benchmark
from cood.imagenet21k import SplitManifest, read_manifest
from pipelines.analyses.cood import analyse_cood
from pipelines.analysis_options import DEFAULTS
from pipelines.data.datasets import ood_manifest_path
from pipelines.engine.outputs import Outputs, read_outputs
from pipelines.engine.provenance import code_version
from pipelines.errors import UserError
from results.schema import with_values


def kappa_values(outputs: Outputs, kappa: str, what: str) -> np.ndarray:
    """κ of every sample: the stored column, else computed from the stored logits. Raises UserError."""
    if kappa in outputs.confidences:
        return outputs.confidences[kappa]
    if kappa not in confidence.REGISTRY:
        stored = ", ".join(sorted(outputs.confidences)) or "none"
        raise UserError(
            f"unknown confidence function {kappa!r} for {what}: stored columns {stored}; "
            f"computable from logits: {', '.join(sorted(confidence.REGISTRY))}"
        )
    if outputs.logits is None:
        raise UserError(f"{what} has no {kappa!r} column and no stored logits to compute it from")
    return confidence.REGISTRY[kappa](outputs.logits)


def ranking_keys(id_out: Outputs, ood_out: Outputs, kappa: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(ID, OOD) tie-free ranking keys of κ (``confidence.RANK_KEYS``: log-MSP for MSP), from the stored
    column or else from stored logits; (None, None) when κ needs none or either side has neither (then both
    sides rank by the κ values, as one key must serve both)."""
    name = confidence.RANK_KEYS.get(kappa)
    if name is None:
        return None, None
    keys = []
    for outputs in (id_out, ood_out):
        if name in outputs.confidences:
            keys.append(outputs.confidences[name])
        elif outputs.logits is not None:
            keys.append(confidence.REGISTRY[name](outputs.logits))
        else:
            return None, None
    return keys[0], keys[1]


def align_with_manifest(outputs: Outputs, manifest: SplitManifest, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Per OOD output row: (class index (M,) int64, is_estimation (M,) bool) from the manifest.

    Raises UserError when an output sample is not in the manifest or its label disagrees with it.
    """
    table = pl.DataFrame(
        {
            "sample_id": list(manifest.paths),
            "class_index": manifest.class_index,
            "is_estimation": manifest.is_estimation,
        }
    )
    rows = pl.DataFrame({"sample_id": outputs.sample_ids, "label": outputs.labels}).with_row_index("row")
    joined = rows.join(table, on="sample_id", how="left").sort("row")
    unknown = joined.filter(pl.col("class_index").is_null())
    if unknown.height:
        raise UserError(
            f"{unknown.height} {what} samples are not in the split manifest "
            f"(e.g. {unknown.item(0, 'sample_id')!r}); re-run inference over the manifest's images"
        )
    mismatched = joined.filter(pl.col("label") != pl.col("class_index"))
    if mismatched.height:
        raise UserError(
            f"{mismatched.height} {what} labels disagree with the manifest's class index "
            f"(e.g. {mismatched.item(0, 'sample_id')!r}: label {mismatched.item(0, 'label')}, "
            f"manifest {mismatched.item(0, 'class_index')})"
        )
    return joined["class_index"].to_numpy().astype(np.int64), joined["is_estimation"].to_numpy()


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    atomic_write_bytes(path, buffer.getvalue())



def build_benchmark(
    model_id: str,
    kappa: str,
    *,
    workspace: Path,
    id_dataset: str = "imagenet-val",
    ood_dataset: str = "imagenet21k",
    window: int = DEFAULTS.cood_window,
    num_levels: int = DEFAULTS.cood_levels,
    output: Path | None = None,
    run_id: str | None = None,
) -> tuple[dict[str, pl.DataFrame], Path]:
    """Run the C-OOD analysis of one (model, κ) over stored outputs and export it.

    The tables carry the provenance this caller adds: ``code_sha`` (this code's version) and ``run_id``
    (None outside a run). Returns (the three result tables, the export folder).
    """
    id_out = read_outputs(workspace, model_id, id_dataset)
    ood_out = read_outputs(workspace, model_id, ood_dataset)
    path = ood_manifest_path(workspace, ood_dataset)
    if not path.is_file():
        raise UserError(f"no OOD split manifest at {path}; write one with cood.imagenet21k.write_manifest")
    manifest = read_manifest(path)
    ood_class, is_estimation = align_with_manifest(ood_out, manifest, f"{ood_dataset!r} output")
    id_rank, ood_rank = ranking_keys(id_out, ood_out, kappa)
    tables = analyse_cood(
        model_id,
        kappa,
        id_conf=kappa_values(id_out, kappa, f"the {id_dataset!r} outputs of {model_id!r}"),
        id_correct=id_out.pred == id_out.labels,
        ood_conf=kappa_values(ood_out, kappa, f"the {ood_dataset!r} outputs of {model_id!r}"),
        ood_class=ood_class,
        ood_role=is_estimation,
        class_wnids=manifest.wnids,
        window=window,
        num_levels=num_levels,
        id_rank=id_rank,
        ood_rank=ood_rank,
        pool_version=manifest.pool_version,
        class_list_sha256=manifest.class_list_sha256,
        split_seed=manifest.seed,
        kappa_params=id_out.kappa_params(kappa),
    )
    tables = with_values(tables, code_sha=code_version(), run_id=run_id)
    folder = Path(output) if output is not None else Path(workspace) / "cood" / model_id / kappa
    export_benchmark(
        folder,
        levels=tables["cood_levels"],
        level_classes=tables["cood_level_classes"],
        class_severity=tables["cood_class_severity"],
        manifest_sha256=manifest.sha256,
    )
    for name, frame in tables.items():
        _write_parquet(frame, folder / f"{name}.parquet")
    return tables, folder
