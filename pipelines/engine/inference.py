"""Inference: idempotent Ray tasks per (model, dataset, shard) over a decode-once crop cache.

Scheduling (architecture.md §6): for every (dataset, shard) and every preprocessing signature, one *decode*
task fills the uint8 crop cache (pipelines.engine.decode_cache) and one *model* task per model of that signature
reads it, normalises on its device, runs the forward pass and writes the shard's Parquet output atomically.
Only what is missing is scheduled: a shard whose output exists and validates is reported as
``skipped_existing``; a signature whose models are all done decodes nothing.

Reliability: a model that raises is reported as ``failed`` with its error and the run goes on; worker deaths
(system failures) are retried by Ray (``max_retries``); errors classified as transient (:class:`TransientError`:
CUDA launch/ECC/NCCL errors, lost connections) are retried too; an out-of-memory batch is halved and retried
down to batch size 1. Workers never open the results database.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.data.datasets import ImageDataset
from pipelines.engine.decode_cache import CacheEntry, build_entry, remove_entry
from pipelines.engine.outputs import shard_is_complete, shard_path, write_shard
from pipelines.zoo import ModelSpec

# log_msp: MSP's tie-free ranking key, used by C-OOD for MSP (cood.md §5); same exp pass as the others
DEFAULT_CONFIDENCES = ("msp", "log_msp", "neg_entropy", "max_logit", "energy")
FAULT_ENV = "UEBENCH_FAULT_ONCE"  # testing only: path of a marker; a model task exits hard once (see _inject_fault)
TRANSIENT_MARKERS = ("CUDA error: unspecified launch failure", "ECC error", "NCCL", "Connection reset", "timed out")


# The model most recently used by this worker process, reused by later shards of the same model.
_LOADED: dict[tuple[str, str, bool, float | None], tuple[Any, dict[str, Any]]] = {}
_CODE_VERSION: list[str] = []


class TransientError(RuntimeError):
    """An error worth retrying (device hiccup, lost connection): Ray retries the task."""


@dataclass(frozen=True)
class InferenceOptions:
    """How model tasks run. device: "auto" (CUDA when the task has a GPU, else CPU) | "cpu" | "cuda";
    amp: bf16 autocast on CUDA (logits stored in fp32); channels_last: NHWC memory format on CUDA;
    confidences: logit-based κ columns written by workers (cood.confidence names);
    model_confidences: model-in-the-loop columns (pipelines.engine.model_confidence: odin, msp_t2, mcd_neg_entropy,
    mcd_pred), computed per batch next to the forward pass; mc_passes / seed: MC-dropout passes and base seed
    (batch b of shard s uses seed + 1_000_003 · s + b, recorded in the shard metadata); drop_rate: timm
    models are built with this classifier dropout (None = timm's default, often 0: nothing for MC dropout);
    ood_logits: store full logits for OOD datasets too (ID logits are always stored; cood.md §8);
    keep_decode_cache: keep each decoded-crop cache shard after all its models succeeded (default: delete it)."""

    batch_size: int = 32
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    threads: int = 1
    confidences: tuple[str, ...] = DEFAULT_CONFIDENCES
    model_confidences: tuple[str, ...] = ()
    mc_passes: int = 30
    seed: int = 0
    drop_rate: float | None = None
    ood_logits: bool = True
    keep_decode_cache: bool = False

    def precision(self) -> str:
        return "bf16-autocast" if self.amp else "fp32"


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
    batch_size: int | None = None
    device: str | None = None
    attempts: int | None = None  # executions in this run (Ray retries included); 0: not scheduled; None: unknown


@dataclass
class InferenceReport:
    """All task results plus the decode work done (images decoded, seconds)."""

    results: list[TaskResult]
    decoded: int = 0
    decode_seconds: float = 0.0


def shard_indices(n: int, shard: int, num_shards: int) -> np.ndarray:
    """Contiguous index range of ``shard`` out of ``num_shards`` over ``n`` samples (sorted sample ids)."""
    bounds = np.linspace(0, n, num_shards + 1).round().astype(int)
    return np.arange(bounds[shard], bounds[shard + 1])


def num_shards_for(n: int, shard_size: int) -> int:
    """Number of shards so that none holds more than ``shard_size`` samples (at least one)."""
    return max(1, -(-n // max(1, shard_size)))


def _is_oom(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"


def _host_batch(crops: np.ndarray, pin: bool):
    """``crops: (n, H, W, 3) uint8`` (a read-only slice of the decode cache) -> a torch tensor of its own, in
    page-locked memory when ``pin`` (CUDA: the copy to the device can then run asynchronously). One copy."""
    import torch

    batch = torch.empty(crops.shape, dtype=torch.uint8, pin_memory=pin)
    batch.numpy()[...] = crops
    return batch


def _forward_all(
    model, crops: np.ndarray, ms: ModelSpec, opts: InferenceOptions, device: str, shard: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Logits ``(N, 1000) float32`` of all crops and the requested model-in-the-loop columns (name -> (N,));
    halves the batch on out-of-memory. Returns (logits, model confidence columns, final batch size).

    The logits stay on the device until the end, so on CUDA the host copies the next batch into pinned memory
    while the device still runs the previous one (the model-in-the-loop columns synchronise per batch)."""
    import torch

    import pipelines.engine.model_confidence as model_confidence
    from pipelines.data.preprocess import normalise

    batch_size = opts.batch_size
    outputs: list[torch.Tensor] = []  # on the device: no per-batch synchronisation unless a column needs it
    extra: dict[str, list[np.ndarray]] = {name: [] for name in opts.model_confidences}
    start = 0
    batch_index = 0
    use_cuda = device.startswith("cuda")
    while start < len(crops):
        chunk = _host_batch(crops[start : start + batch_size], pin=use_cuda)
        try:
            x = normalise(chunk, ms.preprocess, device)  # outside inference mode: ODIN needs its gradient
            if use_cuda and opts.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_cuda and opts.amp):
                logits = model(x).float()
            columns = (
                model_confidence.compute(
                    model, x, ms.preprocess.std, opts.model_confidences, logits=logits.cpu().numpy(),
                    mc_passes=opts.mc_passes, seed=opts.seed + 1_000_003 * shard + batch_index,
                )
                if opts.model_confidences
                else {}
            )
        except RuntimeError as exc:
            if not _is_oom(exc) or batch_size == 1:
                raise
            batch_size //= 2
            if use_cuda:
                torch.cuda.empty_cache()
            continue
        outputs.append(logits)
        for name, values in columns.items():
            extra[name].append(values)
        start += len(chunk)
        batch_index += 1
    logits_all = torch.cat(outputs).cpu().numpy() if outputs else np.zeros((0, 1000), np.float32)
    return logits_all, {name: np.concatenate(parts) for name, parts in extra.items() if parts}, batch_size


def model_confidence_params(model, ms: ModelSpec, opts: InferenceOptions, device: str) -> dict[str, dict]:
    """Provenance of the model-in-the-loop columns: ODIN's T and ε; MC dropout's passes, base seed and the
    dropout sites it samples (module names with p, and functional-dropout p) for this model."""
    import torch

    import pipelines.engine.model_confidence as model_confidence

    params: dict[str, dict] = {}
    if {"odin", "msp_t2"} & set(opts.model_confidences):
        odin = {"temperature": model_confidence.ODIN_TEMPERATURE, "epsilon": model_confidence.ODIN_EPSILON}
        params.update({name: odin for name in ("odin", "msp_t2") if name in opts.model_confidences})
    if {"mcd_neg_entropy", "mcd_pred"} & set(opts.model_confidences):
        size = ms.preprocess.input_size
        probe = torch.zeros((1, 3, size, size), device=device)
        report = model_confidence.dropout_report(model, probe)
        mcd = {
            "passes": opts.mc_passes, "seed": opts.seed, "dropout_modules": [list(m) for m in report.modules],
            "functional_dropout_p": list(report.functional),
        }
        params.update({name: mcd for name in ("mcd_neg_entropy", "mcd_pred") if name in opts.model_confidences})
    return params


def _attempt_file(attempt_log: Path, model_id: str, dataset: str, shard: int) -> Path:
    return attempt_log / hashlib.sha256(f"{model_id}\0{dataset}\0{shard}".encode()).hexdigest()[:32]


def record_attempt(attempt_log: Path, model_id: str, dataset: str, shard: int) -> int | None:
    """Append one byte to this task's attempt log (a file per task under ``attempt_log``, in the workspace, so
    it survives a killed worker); returns the number of attempts so far, this one included, or None when the
    log cannot be written (counting never fails a task)."""
    try:
        with _attempt_file(attempt_log, model_id, dataset, shard).open("ab") as log:
            log.write(b".")
            return log.tell()
    except OSError:
        return None


def attempts_made(attempt_log: Path, model_id: str, dataset: str, shard: int) -> int:
    """Number of attempts :func:`record_attempt` logged for a task (0: it never started)."""
    try:
        return _attempt_file(attempt_log, model_id, dataset, shard).stat().st_size
    except FileNotFoundError:
        return 0


def _inject_fault(out: Path) -> None:
    """Testing hook: when $UEBENCH_FAULT_ONCE names a marker that does not exist yet, create it and kill this
    worker process mid-task (after the forward pass, before the output exists) to exercise Ray's retries."""
    marker = os.environ.get(FAULT_ENV)
    if marker and not Path(marker).exists():
        Path(marker).write_text(str(out))
        os._exit(1)


def decode_task(workspace: Path, dataset: ImageDataset, ms: ModelSpec, shard: int, num_shards: int) -> CacheEntry:
    """Fill (or reuse) the crop cache of one (dataset, signature, shard)."""
    return build_entry(workspace, dataset, ms.preprocess, shard, shard_indices(len(dataset), shard, num_shards))


def model_task(
    ms: ModelSpec,
    dataset: ImageDataset,
    entry: CacheEntry,
    workspace: Path,
    shard: int,
    opts: InferenceOptions,
    attempt_log: Path | None = None,
) -> TaskResult:
    """Run one model over one cached shard and write its Parquet output (skip if already complete).
    ``attempt_log``: directory where each execution of the task is counted (:func:`record_attempt`)."""
    started = time.perf_counter()
    out = shard_path(workspace, ms.model_id, dataset.name, shard)
    result = TaskResult(ms.model_id, dataset.name, shard, "ok", output_path=str(out), bad_files=entry.bad_files)
    if attempt_log is not None:
        result.attempts = record_attempt(attempt_log, ms.model_id, dataset.name, shard)
    if shard_is_complete(out, len(entry.indices)):
        result.status = "skipped_existing"
        return result
    try:
        import torch

        from cood.confidence import compute
        from pipelines.engine.provenance import code_version, library_versions
        from pipelines.zoo import build_model, weights_fingerprint

        if not _CODE_VERSION:
            _CODE_VERSION.append(code_version())  # once per worker process (it may call git)

        torch.set_num_threads(max(1, opts.threads))
        device = opts.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        drop_rate = opts.drop_rate if ms.source == "timm" else None
        key = (ms.model_id, device, opts.channels_last, drop_rate)
        if key not in _LOADED:
            _LOADED.clear()  # keep one model per worker process: the next shard of the same model reuses it
            model = build_model(ms, drop_rate).to(device)
            if device.startswith("cuda") and opts.channels_last:
                model = model.to(memory_format=torch.channels_last)
            info = {
                "params": int(sum(p.numel() for p in model.parameters())),
                "weights_sha256": weights_fingerprint(model),
            }
            _LOADED[key] = (model, info)
        model, result.model_info = _LOADED[key]
        logits, model_columns, result.batch_size = _forward_all(model, entry.crops(), ms, opts, device, shard)
        if logits.shape[1] != 1000:
            raise ValueError(f"model emitted {logits.shape[1]} logits, expected the 1000 ImageNet-1k classes")
        _inject_fault(out)
        write_shard(
            out,
            sample_ids=[dataset.sample_ids[i] for i in entry.indices],
            labels=np.asarray([dataset.labels[i] for i in entry.indices], dtype=np.int64),
            logits=logits,
            confidences={**compute(logits, opts.confidences), **model_columns},
            store_logits=dataset.kind != "ood" or opts.ood_logits,
            metadata={"model_spec": ms.spec, "preprocess": ms.preprocess.signature, "device": device,
                      "precision": opts.precision(), "code_version": _CODE_VERSION[0],
                      "libraries": json.dumps(library_versions(), sort_keys=True),
                      "kappa_params": json.dumps(model_confidence_params(model, ms, opts, device), sort_keys=True)},
        )
        result.n_samples, result.device = len(entry.indices), device
    except Exception as exc:
        message = " ".join(str(exc).split())
        if any(marker in message for marker in TRANSIENT_MARKERS):
            raise TransientError(message) from exc
        result.status = "failed"
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
        result.error = f"{type(exc).__name__}: {message}{where}"
    result.seconds = time.perf_counter() - started
    return result


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """UserError within ``timeout_s`` when a ``host:port`` / ``ray://host:port`` address does not accept a TCP
    connection (ray.init itself retries for minutes and logs from C++ before giving up). ``auto`` is left to Ray."""
    import socket

    from pipelines.errors import UserError

    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot reach the Ray cluster at {address!r} ({exc.strerror or exc}); start it with `ray start --head` "
            "or drop [ray] address to run locally"
        ) from None


def init_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Start (or connect to) Ray quietly; ``address`` None = a local instance with ``num_cpus`` (all cores).

    Raises UserError with the fix when a cluster address cannot be reached.
    """
    import logging

    import ray

    from pipelines.errors import UserError

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(
                f"cannot reach the Ray cluster at {address!r} ({' '.join(str(exc).split())[:160]}); start it with "
                "`ray start --head` or drop [ray] address to run locally"
            ) from None
    else:
        # "local": always a new instance, even when a `ray start` cluster runs on this machine (ray.init() with
        # no address would join that one and then refuse num_cpus)
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=num_gpus, **kwargs)


def cluster_gpus() -> float:
    """GPUs the connected Ray cluster has in total (0 on CPU-only clusters)."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


ResultCallback = Callable[[TaskResult, int, int, int], None]


def run_inference(
    models: list[ModelSpec],
    datasets: list[ImageDataset],
    workspace: Path,
    *,
    options: InferenceOptions | None = None,
    shard_size: int = 10_000,
    cpus_per_task: int = 1,
    gpus_per_task: float = 0.0,
    max_retries: int = 3,
    on_result: ResultCallback | None = None,
) -> InferenceReport:
    """Schedule decode + model tasks for every (model, dataset, shard) that lacks a complete output.

    ``on_result(result, done, total, images_done)`` is called on the driver after each model task.
    """
    import ray

    opts = options or InferenceOptions(threads=cpus_per_task)
    workspace = Path(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    # each model task counts its executions here (Ray retries included); removed when the call returns
    with tempfile.TemporaryDirectory(prefix=".attempts-", dir=workspace, ignore_cleanup_errors=True) as log_dir:
        attempt_log = Path(log_dir)
        decode_remote = ray.remote(num_cpus=1, max_retries=max_retries)(decode_task)
        model_remote = ray.remote(
            num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=max_retries, retry_exceptions=[TransientError]
        )(model_task)

        groups: dict[str, list[ModelSpec]] = defaultdict(list)
        for ms in models:
            groups[ms.preprocess.signature].append(ms)
        results: list[TaskResult] = []
        pending: dict[Any, tuple[ModelSpec, str, int]] = {}
        # cache entry -> [model tasks still running, all succeeded so far, (dataset, preprocess, shard)]
        entry_state: dict[Any, list] = {}
        entry_of: dict[Any, Any] = {}
        decode_refs = []
        total = 0
        for dataset in datasets:
            dataset_ref = ray.put(dataset)
            n_shards = num_shards_for(len(dataset), shard_size)
            for shard in range(n_shards):
                for group in groups.values():
                    total += len(group)
                    todo = []
                    for ms in group:
                        path = shard_path(workspace, ms.model_id, dataset.name, shard)
                        if shard_is_complete(path):
                            results.append(TaskResult(ms.model_id, dataset.name, shard, "skipped_existing",
                                                      output_path=str(path), attempts=0))
                        else:
                            todo.append(ms)
                    if not todo:
                        continue
                    entry_ref = decode_remote.remote(workspace, dataset_ref, todo[0], shard, n_shards)
                    decode_refs.append(entry_ref)
                    entry_state[entry_ref] = [len(todo), True, (dataset.name, todo[0].preprocess, shard)]
                    for ms in todo:
                        ref = model_remote.remote(ms, dataset_ref, entry_ref, workspace, shard, opts, attempt_log)
                        pending[ref] = (ms, dataset.name, shard)
                        entry_of[ref] = entry_ref
        images = 0
        if on_result is not None:
            for done, result in enumerate(results, start=1):
                on_result(result, done, total, images)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            ms, dataset_name, shard = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # worker died after its retries, decode failed, or a transient error persisted
                message = " ".join(str(exc).split())
                error = f"{type(exc).__name__}: {message[:500]}"
                result = TaskResult(ms.model_id, dataset_name, shard, "failed", error=error)
            # the log also counts attempts whose worker died (their results never came back); None: no count
            # reached the log (a worker that cannot write to the workspace)
            logged = attempts_made(attempt_log, ms.model_id, dataset_name, shard)
            result.attempts = max(result.attempts or 0, logged) or None
            results.append(result)
            images += result.n_samples
            state = entry_state[entry_of.pop(ref)]
            state[0] -= 1
            state[1] = state[1] and result.status == "ok"
            if state[0] == 0 and state[1] and not opts.keep_decode_cache:
                remove_entry(workspace, *state[2])  # every model of this shard has its output: free the disk
            if on_result is not None:
                on_result(result, len(results), total, images)
        decoded, decode_seconds = 0, 0.0
        for ref in decode_refs:
            try:
                entry = ray.get(ref)
            except Exception:  # already reported through the model tasks that depended on it
                continue
            decoded += entry.decoded
            decode_seconds += entry.seconds
        return InferenceReport(results, decoded, decode_seconds)
