"""Model-side inference: options, loading a model once per worker, the forward pass with its κ columns, Ray init.

The run engine (pipelines.engine.stream) keeps each model resident in a Ray Data actor (:func:`load_model` once per
actor) and calls :func:`forward_all` on every block of decoded crops. Reliability: an out-of-memory batch is halved
and retried down to batch size 1; errors whose message marks them as transient (:data:`TRANSIENT_MARKERS`: CUDA
launch/ECC/NCCL errors, lost connections) are retried on the next block; any other error fails that model only.
Workers never open the results database or the workspace.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common import DETECTOR_PREFIX
from pipelines.data.preprocess import DEFAULT_MAX_PIXELS
from pipelines.zoo import ModelSpec

# log_msp: MSP's tie-free ranking key, used by C-OOD for MSP (cood.md §5); same exp pass as the others
DEFAULT_CONFIDENCES = ("msp", "log_msp", "neg_entropy", "max_logit", "energy")
FAULT_ENV = "UEBENCH_FAULT_ONCE"  # testing only: path of a marker; a model actor exits hard once (see _inject_fault)
DEFAULT_FEATURE_STORAGE_BYTES = 64 << 30  # [detectors] feature_storage_gib default
TRANSIENT_MARKERS = ("CUDA error: unspecified launch failure", "ECC error", "NCCL", "Connection reset", "timed out")



def detector_column(name: str) -> str:
    """The κ column of feature-space detector ``name`` (``det_mahalanobis``, ...)."""
    return f"{DETECTOR_PREFIX}{name}"


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
    max_image_pixels: images with more pixels are bad files, not decoded (decompression bombs);
    detectors: feature-space detectors (cood.detectors names) scored next to the forward pass, one κ column
    ``det_<name>`` each, from statistics fitted on the fit set whose sample fingerprint is ``detector_fit_sha256``
    (pipelines.engine.detectors) with the hyper-parameter overrides ``detector_params`` (JSON, "" for none);
    keep_features: also store every evaluated image's penultimate features as float16 beside the outputs
    (pipelines.engine.outputs.feature_path; not part of an output's identity: the outputs' numbers do not change),
    within ``feature_storage_bytes`` on disk for the whole run (checked before it starts,
    pipelines.engine.stream.check_feature_storage)."""

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
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    detectors: tuple[str, ...] = ()
    detector_fit_sha256: str = ""
    detector_params: str = ""
    keep_features: bool = False
    feature_storage_bytes: int = DEFAULT_FEATURE_STORAGE_BYTES

    def kappa_columns(self) -> tuple[str, ...]:
        """Every per-sample κ column a model writes: logit κ, model-in-the-loop κ, then ``det_<name>``."""
        return (*self.confidences, *self.model_confidences, *(detector_column(n) for n in self.detectors))

    def precision(self) -> str:
        return "bf16-autocast" if self.amp else "fp32"


@dataclass
class TaskResult:
    """Outcome of one (model, dataset, shard) task, returned to the driver."""

    model_id: str
    dataset: str
    shard: int
    status: str  # ok (computed now) | reused (verified stored output) | failed
    error: str | None = None
    n_samples: int = 0
    seconds: float = 0.0
    output_path: str | None = None
    bad_files: list[tuple[str, str]] = field(default_factory=list)
    model_info: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    device: str | None = None
    attempts: int | None = None  # 1: computed in this run; 0: not scheduled (reused, or failed before inference)


@dataclass
class InferenceReport:
    """All (model, dataset, shard) outcomes plus what the engine did.

    recomputed: (model_id, dataset, shard, reason) of stored outputs that failed verification (shard -1: a stale
    file whose shard holds no images now); decoded: crops made (each file decoded once per pipeline, cropped
    once per signature its models need); weight_loads: model_id -> actors that built it; model_nodes:
    model_id -> Ray node ids its actors ran on; ray_tasks: Ray Data tasks scheduled (decode tasks + actor
    calls); peak_store_bytes: the most object-store bytes seen in use; signatures: distinct preprocessing
    signatures with work.
    """

    results: list[TaskResult]
    recomputed: list[tuple[str, str, int, str]] = field(default_factory=list)
    decoded: int = 0
    weight_loads: dict[str, int] = field(default_factory=dict)
    model_nodes: dict[str, list[str]] = field(default_factory=dict)
    ray_tasks: int = 0
    peak_store_bytes: int = 0
    signatures: int = 0


def _is_oom(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"


def _host_batch(crops: np.ndarray, pin: bool):
    """``crops: (n, H, W, 3) uint8`` (a read-only block from Ray's object store) -> a torch tensor of its own, in
    page-locked memory when ``pin`` (CUDA: the copy to the device can then run asynchronously). One copy."""
    import torch

    batch = torch.empty(crops.shape, dtype=torch.uint8, pin_memory=pin)
    batch.numpy()[...] = crops
    return batch


def forward_all(
    model, crops: np.ndarray, ms: ModelSpec, opts: InferenceOptions, seed_key: int = 0, extractor=None,
    features: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Logits ``(N, 1000) float32`` of all crops and the requested model-in-the-loop columns (name -> (N,));
    halves the batch on out-of-memory. Returns (logits, model confidence columns, final batch size).

    The logits stay on the device until the end, so on CUDA the host copies the next batch into pinned memory
    while the device still runs the previous one (the model-in-the-loop columns synchronise per batch).
    ``seed_key``: MC dropout's batch b uses seed + 1_000_003 · seed_key + b (the engine passes shard · 4096 + block).
    ``extractor``: a :class:`pipelines.zoo.features.FeatureExtractor` of ``model``; then logits and penultimate
    features come from the same forward pass and each batch's ``(b, D) float32`` features are appended to
    ``features`` (in crop order)."""
    import torch

    import pipelines.engine.model_confidence as model_confidence
    from pipelines.data.preprocess import normalise

    device = str(next(model.parameters()).device) if any(True for _ in model.parameters()) else "cpu"
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
                if extractor is None:
                    logits = model(x).float()
                else:
                    logits, feats = extractor(x)
            columns = (
                model_confidence.compute(
                    model, x, ms.preprocess.std, opts.model_confidences, logits=logits.cpu().numpy(),
                    mc_passes=opts.mc_passes, seed=opts.seed + 1_000_003 * seed_key + batch_index,
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
        if extractor is not None and features is not None:
            features.append(feats.cpu().numpy())
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


def _inject_fault() -> None:
    """Testing hook: when $UEBENCH_FAULT_ONCE names a marker that does not exist yet, create it and kill this
    worker process (a model actor in its constructor) to exercise Ray's actor restarts and block retries."""
    marker = os.environ.get(FAULT_ENV)
    if marker and not os.path.exists(marker):
        with open(marker, "w") as handle:
            handle.write(str(os.getpid()))
        os._exit(1)


def feature_width(ms: ModelSpec) -> int:
    """D, the width of the features :func:`pipelines.zoo.features.feature_extractor` reads from ``ms``, from its
    architecture on PyTorch's ``meta`` device (no weights, no memory, ≈ 0.1 s): timm ``forward_head(
    forward_features(x), pre_logits=True)`` of a ``(1, 3, S, S)`` meta tensor (timm's ``num_features`` is not
    always that width: MobileNetV3's head adds a 1,024-wide layer after its 576 features); open_clip the image
    embedding's width; any other source the input width of its final 1,000-output ``nn.Linear``."""
    import torch

    from pipelines.zoo.features import _final_linear
    from pipelines.zoo.registry import lookup_source

    size = ms.preprocess.input_size
    with torch.device("meta"), torch.no_grad():
        model = lookup_source(ms.source, ms.spec).architecture(ms).eval()
        x = torch.zeros((1, 3, size, size))
        if ms.source == "timm":
            return int(model.forward_head(model.forward_features(x), pre_logits=True).shape[-1])
        if ms.source == "open_clip":
            return int(model.encode_image(x).shape[-1])
    return int(_final_linear(model)[1].in_features)


def load_model(ms: ModelSpec, opts: InferenceOptions) -> tuple[Any, dict[str, Any], str]:
    """Build ``ms`` on its device once: ``(model, info, device)``; info holds ``params``, ``weights_sha256`` (the
    state-dict digest), ``device`` and ``kappa_params`` (provenance of the model-in-the-loop columns)."""
    import torch

    from pipelines.zoo import build_model, weights_fingerprint

    _inject_fault()
    device = opts.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    drop_rate = opts.drop_rate if ms.source == "timm" else None
    model = build_model(ms, drop_rate).to(device)
    if device.startswith("cuda") and opts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    info = {
        "params": int(sum(p.numel() for p in model.parameters())),
        "weights_sha256": weights_fingerprint(model),
        "device": device,
        "kappa_params": model_confidence_params(model, ms, opts, device),
    }
    return model, info, device


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

    Raises UserError with the fix when a cluster address cannot be reached. A SIGTERM handler the caller
    installed (the CLI's: SIGTERM = Ctrl-C) survives; ``ray.init`` would replace it with ``sys.exit``.
    """
    import signal

    import ray

    if ray.is_initialized():
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        _init_ray(address, num_cpus, num_gpus)
    finally:
        if callable(handler) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)


def _init_ray(address: str | None, num_cpus: int | None, num_gpus: int | None) -> None:
    import logging

    import ray

    from pipelines.errors import UserError

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
