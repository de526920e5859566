"""Per-sample inference outputs: one Parquet file per (model, dataset, shard), written atomically.

Layout (architecture.md §5)::

    <workspace>/outputs/model=<model_id>/dataset=<dataset>/part-<shard>.parquet

Columns: ``sample_id`` (path relative to the dataset root), ``label`` (ImageNet-1k index, or OOD class index),
``logits`` (fixed-size float32 list), ``pred``, and one float64 column per confidence function (``msp``,
``neg_entropy``, ``max_logit``, ``energy``, …). A file exists only once it is complete: it is written to a
temporary name in the same folder and renamed; its manifest ``part-<shard>.json`` (pipelines.engine.identity)
is written after it and says what produced it.

Kept features (``[detectors] keep_features = true``; docs/detectors.md "Keeping features")::

    <workspace>/features/model=<model_id>/dataset=<dataset>/part-<shard>.parquet

Columns: ``sample_id`` and ``features`` (fixed-size list of float16, Parquet's Float16 logical type), the same
rows as the output shard; written atomically by the same writer, with a manifest ``part-<shard>.json`` holding the
output's identity and the SHA-256 of the output file it was written with (:func:`read_features` reads them back).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common import temp_path
from pipelines.errors import UserError


def output_dir(workspace: Path, model_id: str, dataset: str) -> Path:
    """Folder holding the shards of one (model, dataset)."""
    return Path(workspace) / "outputs" / f"model={model_id}" / f"dataset={dataset}"


def shard_path(workspace: Path, model_id: str, dataset: str, shard: int) -> Path:
    """Path of one shard's Parquet file."""
    return output_dir(workspace, model_id, dataset) / f"part-{shard:05d}.parquet"


def feature_dir(workspace: Path, model_id: str, dataset: str) -> Path:
    """Folder holding the kept features of one (model, dataset)."""
    return Path(workspace) / "features" / f"model={model_id}" / f"dataset={dataset}"


def feature_path(workspace: Path, model_id: str, dataset: str, shard: int) -> Path:
    """Path of one shard's kept features (same shard, same rows as :func:`shard_path`)."""
    return feature_dir(workspace, model_id, dataset) / f"part-{shard:05d}.parquet"


def feature_table(sample_ids: list[str], features: np.ndarray) -> pa.Table:
    """``sample_id`` (N strings) and ``features``: ``(N, D) float16`` stored as a fixed-size list of float16."""
    features = np.ascontiguousarray(features)
    if features.dtype != np.float16 or features.ndim != 2 or features.shape[0] != len(sample_ids):
        raise ValueError(f"feature_table needs ({len(sample_ids)}, D) float16, got {features.shape} {features.dtype}")
    return pa.table({
        "sample_id": pa.array(sample_ids, type=pa.string()),
        "features": pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1)), features.shape[1]),
    })


def shard_table(
    sample_ids: list[str],
    labels: np.ndarray,
    logits: np.ndarray | None,
    confidences: dict[str, np.ndarray],
    store_logits: bool = True,
    *,
    pred: np.ndarray | None = None,
) -> pa.Table:
    """The rows of (part of) one shard as an Arrow table.

    sample_ids: N relative paths; labels: (N,) int; logits: (N, C) float32 (stored as a fixed-size list);
    confidences: name -> (N,) float64. ``pred`` is the first maximal logit. ``store_logits=False`` leaves the
    logits column out (large OOD sets: every κ is then read from its stored column); then ``logits`` may be None
    with ``pred`` (N,) given instead (the engine ships no unstored logits from its workers). A ``pred`` given
    with logits is taken as their first maximal logit, not recomputed.
    """
    n = len(sample_ids)
    if logits is None:
        if store_logits or pred is None:
            raise ValueError("shard_table without logits needs store_logits=False and pred")
        pred = np.asarray(pred, dtype=np.int32)
    else:
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        if logits.ndim != 2 or logits.shape[0] != n:
            raise ValueError(f"shard arrays disagree: {n} sample_ids, logits {logits.shape}")
        if pred is None:  # the engine's workers send pred with the logits: no second argmax over 1000 columns
            pred = logits.argmax(axis=1).astype(np.int32) if n else np.zeros(0, np.int32)
        pred = np.asarray(pred, dtype=np.int32)
    if len(labels) != n or pred.shape != (n,):
        raise ValueError(f"shard arrays disagree: {n} sample_ids, labels {np.shape(labels)}, pred {pred.shape}")
    columns: dict[str, pa.Array] = {
        "sample_id": pa.array(sample_ids, type=pa.string()),
        "label": pa.array(np.asarray(labels, dtype=np.int32)),
    }
    if store_logits:
        columns["logits"] = pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), logits.shape[1])
    columns["pred"] = pa.array(pred)
    for name, values in confidences.items():
        columns[name] = pa.array(np.asarray(values, dtype=np.float64))
    return pa.table(columns)


def write_shard(
    path: Path,
    sample_ids: list[str],
    labels: np.ndarray,
    logits: np.ndarray,
    confidences: dict[str, np.ndarray],
    metadata: dict[str, str] | None = None,
    store_logits: bool = True,
) -> Path:
    """Write one whole shard atomically (:func:`shard_table`'s columns; ``metadata`` goes into the Parquet
    schema metadata as provenance)."""
    writer = ShardWriter(path, metadata)
    writer.write(shard_table(sample_ids, labels, logits, confidences, store_logits))
    return writer.commit()


class ShardWriter:
    """Streams the rows of one shard into a temporary Parquet file beside ``path``; :meth:`commit` renames it into
    place, :meth:`abort` deletes it. Page checksums are written.

    Rows arrive in blocks of a few dozen; they are gathered and written as one row group once ``row_group_bytes``
    are pending (and at :meth:`commit`), so a shard is a few large row groups instead of one per block. Memory:
    at most ``row_group_bytes`` plus one block per open writer.
    """

    def __init__(self, path: Path, metadata: dict[str, str] | None = None, row_group_bytes: int = 8 << 20) -> None:
        self.path = Path(path)
        self.metadata = {k: str(v) for k, v in (metadata or {}).items()}
        self.tmp = temp_path(self.path)
        self.row_group_bytes = row_group_bytes
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_bytes = 0
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_bytes += table.nbytes
        self.rows += table.num_rows
        if self._pending_bytes >= self.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_bytes = [], 0
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            schema = table.schema.with_metadata(self.metadata) if self.metadata else table.schema
            self._writer = pq.ParquetWriter(self.tmp, schema, write_page_checksum=True)
        self._writer.write_table(table.replace_schema_metadata(self._writer.schema.metadata))

    def commit(self) -> Path:
        if self._writer is None and not self._pending:
            raise ValueError(f"no rows were written for {self.path}")
        try:
            self._flush()
            self._writer.close()
            os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        self._pending, self._pending_bytes = [], 0
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


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


def _read_part(path: Path, what: str, pronoun: str) -> pa.Table:
    """One stored Parquet part; a damaged one is a one-line UserError saying how to recompute it."""
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise UserError(
            f"{what} {path} {'are' if pronoun == 'them' else 'is'} damaged ({' '.join(str(exc).split())[:120]}); "
            f"rerun `uebench run` to recompute {pronoun}"
        ) from None


def read_outputs(workspace: Path, model_id: str, dataset: str) -> Outputs:
    """Read every shard of (model, dataset), sorted by sample_id; raises UserError when there are none."""
    folder = output_dir(workspace, model_id, dataset)
    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        raise UserError(f"no outputs for model {model_id!r} on dataset {dataset!r} under {folder}")
    tables = [_read_part(f, "output", "it") for f in files]
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


def read_features(workspace: Path, model_id: str, dataset: str) -> tuple[list[str], np.ndarray]:
    """The kept features of (model, dataset): ``(sample_ids, features (N, D) float32)`` (stored float16, widened
    exactly), every shard concatenated in sample_id order, as :func:`read_outputs` orders the outputs.

    One-line UserError when there are none, a file is damaged, or a shard's features were not written with the
    output shard stored now (its manifest names another output checksum, e.g. outputs recomputed by a run without
    ``keep_features``): features are valid only with the outputs they were written beside."""
    from pipelines.engine.identity import read_manifest

    folder = feature_dir(workspace, model_id, dataset)
    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        raise UserError(f"no kept features for model {model_id!r} on dataset {dataset!r} under {folder}; run with "
                        "[detectors] keep_features = true")
    tables = []
    for f in files:
        manifest = read_manifest(f) or {}
        output = read_manifest(output_dir(workspace, model_id, dataset) / f.name) or {}
        if not manifest.get("output_sha256") or manifest.get("output_sha256") != output.get("parquet_sha256"):
            raise UserError(f"features {f} were not written with the outputs stored now; rerun `uebench run` with "
                            "[detectors] keep_features = true to recompute them")
        tables.append(_read_part(f, "features", "them"))
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables]).sort_by("sample_id")
    col = table.column("features").combine_chunks()
    values = col.flatten().to_numpy(zero_copy_only=False)
    return table.column("sample_id").to_pylist(), values.reshape(table.num_rows, col.type.list_size).astype(np.float32)


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
