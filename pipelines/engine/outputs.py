"""Per-sample inference outputs: one Parquet file per (model, dataset, shard), written atomically.

Layout (architecture.md §5)::

    <workspace>/outputs/model=<model_id>/dataset=<dataset>/part-<shard>.parquet

Columns: ``sample_id`` (path relative to the dataset root), ``label`` (ImageNet-1k index, or OOD class index),
``logits`` (fixed-size float32 list), ``pred``, and one float64 column per confidence function (``msp``,
``neg_entropy``, ``max_logit``, ``energy``, …). A file exists only once it is complete: it is written to a
temporary name in the same folder and renamed.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import UserError


def output_dir(workspace: Path, model_id: str, dataset: str) -> Path:
    """Folder holding the shards of one (model, dataset)."""
    return Path(workspace) / "outputs" / f"model={model_id}" / f"dataset={dataset}"


def shard_path(workspace: Path, model_id: str, dataset: str, shard: int) -> Path:
    """Path of one shard's Parquet file."""
    return output_dir(workspace, model_id, dataset) / f"part-{shard:05d}.parquet"


def write_shard(
    path: Path,
    sample_ids: list[str],
    labels: np.ndarray,
    logits: np.ndarray,
    confidences: dict[str, np.ndarray],
    metadata: dict[str, str] | None = None,
    store_logits: bool = True,
) -> Path:
    """Write one shard atomically.

    sample_ids: N relative paths; labels: (N,) int; logits: (N, C) float32 (stored as a fixed-size list);
    confidences: name -> (N,) float64. ``pred`` is the first maximal logit. ``metadata`` goes into the Parquet
    schema metadata (provenance). ``store_logits=False`` leaves the logits column out (large OOD sets: every
    κ is then read from its stored column).
    """
    n = len(sample_ids)
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    if logits.ndim != 2 or logits.shape[0] != n or len(labels) != n:
        raise ValueError(f"shard arrays disagree: {n} sample_ids, labels {np.shape(labels)}, logits {logits.shape}")
    num_classes = logits.shape[1]
    columns: dict[str, pa.Array] = {
        "sample_id": pa.array(sample_ids, type=pa.string()),
        "label": pa.array(np.asarray(labels, dtype=np.int32)),
        "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), num_classes),
        "pred": pa.array(logits.argmax(axis=1).astype(np.int32)),
    }
    if not store_logits:
        del columns["logits"]
    for name, values in confidences.items():
        columns[name] = pa.array(np.asarray(values, dtype=np.float64))
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata({k: str(v) for k, v in metadata.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def shard_is_complete(path: Path, expected_rows: int | None = None) -> bool:
    """True when ``path`` is a readable Parquet file (with ``expected_rows`` rows, if given)."""
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowInvalid):
        return False
    return expected_rows is None or rows == expected_rows


@dataclass(frozen=True)
class Outputs:
    """All shards of one (model, dataset), concatenated in sample_id order.

    sample_ids: N strings; labels: (N,) int64; logits: (N, C) float32 or None when not stored;
    pred: (N,) int64; confidences: name -> (N,) float64; metadata: the Parquet schema metadata of the first
    shard (provenance: model spec, preprocess signature, device, precision, kappa_params JSON).
    """

    sample_ids: list[str]
    labels: np.ndarray
    logits: np.ndarray | None
    pred: np.ndarray
    confidences: dict[str, np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)

    def kappa_params(self, kappa: str) -> dict | None:
        """Parameters of a model-in-the-loop κ recorded at inference (ODIN T, ε; MC-dropout passes, p), or None."""
        return json.loads(self.metadata.get("kappa_params", "{}")).get(kappa)

    def __len__(self) -> int:
        return len(self.sample_ids)


def read_outputs(workspace: Path, model_id: str, dataset: str) -> Outputs:
    """Read every shard of (model, dataset), sorted by sample_id; raises UserError when there are none."""
    folder = output_dir(workspace, model_id, dataset)
    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        raise UserError(f"no outputs for model {model_id!r} on dataset {dataset!r} under {folder}")
    tables = [pq.read_table(f) for f in files]
    metadata = {k.decode(): v.decode() for k, v in (tables[0].schema.metadata or {}).items()}
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    table = table.sort_by("sample_id")
    reserved = {"sample_id", "label", "logits", "pred"}
    logits = None
    if "logits" in table.column_names:
        col = table.column("logits").combine_chunks()
        width = col.type.list_size
        logits = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, width).astype(np.float32, copy=False)
    return Outputs(
        sample_ids=table.column("sample_id").to_pylist(),
        labels=table.column("label").to_numpy().astype(np.int64),
        logits=logits,
        pred=table.column("pred").to_numpy().astype(np.int64),
        confidences={
            name: table.column(name).to_numpy().astype(np.float64)
            for name in table.column_names
            if name not in reserved
        },
        metadata=metadata,
    )


def workspace_dataset(workspace: Path, kind: str, fallback: str) -> str:
    """The name of the workspace's one dataset of ``kind`` ("id" | "ood"), or ``fallback`` when it holds none
    or several. Datasets are the ``dataset=<name>`` folders under ``outputs/``; an OOD one has its split
    manifest at ``datasets/<name>/manifest.csv`` (e.g. the demo's ``imagenet-val-demo`` / ``imagenet21k-demo``)."""
    from pipelines.data.datasets import ood_manifest_path

    workspace = Path(workspace)
    names = {folder.name.removeprefix("dataset=") for folder in workspace.glob("outputs/model=*/dataset=*")}
    ood = {name for name in names if ood_manifest_path(workspace, name).is_file()}
    chosen = sorted(ood if kind == "ood" else names - ood)
    return chosen[0] if len(chosen) == 1 else fallback
