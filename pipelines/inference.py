"""Inference: one idempotent Ray task per (model, dataset, shard) writing per-sample Parquet outputs.

Workers never open the results database: they write Parquet atomically (pipelines.outputs) and return a
:class:`TaskResult`; the driver ingests. A task whose output already exists and validates is skipped, so a
rerun after a crash only redoes what is missing. A failing model is reported as ``status="failed"`` with its
error and never stops the other tasks. Unreadable images are skipped and reported, never silently.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.datasets import ImageDataset
from pipelines.outputs import shard_is_complete, shard_path, write_shard
from pipelines.zoo import ModelSpec

DEFAULT_CONFIDENCES = ("msp", "neg_entropy", "max_logit", "energy")


@dataclass
class TaskResult:
    """Outcome of one (model, dataset, shard) task, returned to the driver."""

    model_id: str
    dataset: str
    shard: int
    status: str  # ok | skipped_existing | failed
    error: str | None = None
    n_samples: int = 0
    seconds: float = 0.0
    output_path: str | None = None
    bad_files: list[tuple[str, str]] = field(default_factory=list)
    model_info: dict[str, Any] = field(default_factory=dict)


def shard_indices(n: int, shard: int, num_shards: int) -> np.ndarray:
    """Contiguous index range of ``shard`` out of ``num_shards`` over ``n`` samples (sorted sample ids)."""
    bounds = np.linspace(0, n, num_shards + 1).round().astype(int)
    return np.arange(bounds[shard], bounds[shard + 1])


def _forward_batches(model, crops: list[np.ndarray], ms: ModelSpec, batch_size: int, device: str) -> np.ndarray:
    import torch

    from pipelines.preprocess import normalise

    outputs = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            batch = torch.from_numpy(np.stack(crops[start : start + batch_size]))
            logits = model(normalise(batch, ms.preprocess, device))
            outputs.append(logits.float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 1000), np.float32)


def run_task(
    ms: ModelSpec,
    dataset: ImageDataset,
    workspace: Path,
    shard: int = 0,
    num_shards: int = 1,
    batch_size: int = 32,
    device: str = "cpu",
    confidences: tuple[str, ...] = DEFAULT_CONFIDENCES,
    threads: int = 1,
) -> TaskResult:
    """Run one model over one shard of one dataset and write its Parquet output (skip if already complete)."""
    started = time.perf_counter()
    indices = shard_indices(len(dataset), shard, num_shards)
    out = shard_path(workspace, ms.model_id, dataset.name, shard)
    result = TaskResult(ms.model_id, dataset.name, shard, "ok", output_path=str(out))
    if shard_is_complete(out):
        result.status = "skipped_existing"
        return result
    try:
        import torch

        from cood.confidence import compute
        from pipelines.preprocess import decode
        from pipelines.zoo import build_model, weights_fingerprint

        torch.set_num_threads(max(1, threads))
        model = build_model(ms).to(device)
        result.model_info = {
            "params": int(sum(p.numel() for p in model.parameters())),
            "weights_sha256": weights_fingerprint(model),
        }
        crops, kept = [], []
        for i in indices:
            try:
                crops.append(decode(dataset.path(int(i)), ms.preprocess))
                kept.append(int(i))
            except (OSError, ValueError) as exc:
                result.bad_files.append((dataset.sample_ids[i], f"{type(exc).__name__}: {exc}"))
        logits = _forward_batches(model, crops, ms, batch_size, device)
        if logits.shape[1] != 1000:
            raise RuntimeError(f"model emitted {logits.shape[1]} logits, expected 1000 ImageNet-1k classes")
        write_shard(
            out,
            sample_ids=[dataset.sample_ids[i] for i in kept],
            labels=np.asarray([dataset.labels[i] for i in kept], dtype=np.int64),
            logits=logits,
            confidences=compute(logits, confidences),
            metadata={"model_spec": ms.spec, "preprocess": ms.preprocess.signature, "device": device},
        )
        result.n_samples = len(kept)
    except Exception as exc:  # a failing model is recorded, never fatal to the run
        result.status = "failed"
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" at {Path(last.filename).name}:{last.lineno}" if last else ""
        result.error = f"{type(exc).__name__}: {exc}{where}"
    result.seconds = time.perf_counter() - started
    return result


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start (or connect to) Ray quietly; ``address`` None = a local instance with ``num_cpus`` (all cores)."""
    import logging

    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ACCEPT_LOCAL_STORAGE_LIMIT", "1")
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)


def run_inference(
    models: list[ModelSpec],
    datasets: list[ImageDataset],
    workspace: Path,
    *,
    batch_size: int = 32,
    cpus_per_task: int = 1,
    on_result=None,
) -> list[TaskResult]:
    """Submit one Ray task per (model, dataset) and gather the results as they finish.

    ``on_result(result, done, total)`` is called on the driver after each task (progress reporting).
    """
    import ray

    remote = ray.remote(num_cpus=cpus_per_task, max_retries=2)(run_task)
    pending = {
        remote.remote(ms, ds, Path(workspace), 0, 1, batch_size, "cpu", DEFAULT_CONFIDENCES, cpus_per_task): (ms, ds)
        for ms in models
        for ds in datasets
    }
    results: list[TaskResult] = []
    total = len(pending)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        ref = ready[0]
        ms, ds = pending.pop(ref)
        try:
            result = ray.get(ref)
        except Exception as exc:  # the worker process died (OOM kill, crash) after its retries
            result = TaskResult(ms.model_id, ds.name, 0, "failed", error=f"{type(exc).__name__}: {exc}")
        results.append(result)
        if on_result is not None:
            on_result(result, len(results), total)
    return results
