"""Streaming inference on Ray Data: image files -> decoded crops -> resident models -> verified Parquet outputs.

For each preprocessing signature one Ray Data pipeline runs over every (dataset, shard) that some model of that
signature still needs (docs/engine.md):

1. **Listing** (driver): blocks of at most ``batch_size`` rows (dataset, shard, block, sample index, and where
   the image is: a local file, or a container and the offset in it), one shard per block, so a block's
   MC-dropout seed and its rows never depend on scheduling.
2. **Decode** (CPU ``map_batches`` tasks, ``decode_cpus`` each): each image decoded and cropped once per
   signature (pipelines.data.preprocess); an image that cannot be decoded becomes an error string in its row.
3. **Models** (``map_batches`` over an actor pool, :class:`ModelStage`): each actor loads its models once, in
   its constructor, and keeps them resident for every block of every shard. ``models_per_actor`` splits a
   signature's models over a chain of stages; the crops flow through the chain, so they are decoded once.
4. **Sink** (driver): each block's rows are appended to one streaming Parquet writer per (model, shard); when
   a shard's last block arrives its files are committed and their manifests written (pipelines.engine.identity).
   With ``keep_features`` the actors also ship each model's penultimate features as float16 and the sink writes
   them, one more file per (model, dataset, shard) (pipelines.engine.outputs.feature_path).

Workers read only the dataset (same path or URI on every node) and never the workspace: crops and outputs travel
through Ray's object store, whose share for this pipeline is capped by ``budget_bytes`` (Ray Data's
``resource_limits.object_store_memory``): decode stops running ahead when the models fall behind, so memory is
bounded by configuration, not by the dataset. Only the driver writes files.
"""

from __future__ import annotations

import gc
import json
import logging
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.data.datasets import ImageDataset
from pipelines.engine import identity
from pipelines.engine.inference import InferenceOptions, InferenceReport, TaskResult
from pipelines.engine.outputs import ShardWriter, feature_path, feature_table, shard_path, shard_table
from pipelines.zoo import ModelSpec

DEFAULT_BUDGET_BYTES = 1 << 30


@dataclass(frozen=True)
class EngineSettings:
    """How the pipeline uses the cluster.

    num_shards: shards per dataset (fixed by configuration; see pipelines.engine.identity); budget_bytes: the
    object-store bytes Ray Data may hold for one pipeline (decoded crops and outputs in flight); model_actors:
    actors per model stage (None: GPUs / gpus_per_actor on a GPU cluster, else (CPUs − decode_cpus) /
    cpus_per_actor, at least 1); models_per_actor: models held by one actor (0: all models of a signature);
    cpus_per_actor / gpus_per_actor: resources of one model actor; decode_cpus: CPUs of one decode task;
    actor_resources: custom Ray resources every model actor needs (e.g. to pin model work to GPU nodes).
    A model actor that dies (node lost, OOM-killed) is restarted by Ray Data and its blocks retried.
    """

    num_shards: int = identity.DEFAULT_SHARDS
    budget_bytes: int = DEFAULT_BUDGET_BYTES
    model_actors: int | None = None
    models_per_actor: int = 0
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    decode_cpus: float = 1.0
    actor_resources: dict[str, float] = field(default_factory=dict)


def stores_logits(dataset: ImageDataset, opts: InferenceOptions) -> bool:
    """Whether ``dataset``'s outputs keep the full logits: always for ID sets, for OOD sets only with
    ``opts.ood_logits`` (cood.md §8; every κ is stored as its own column either way)."""
    return dataset.kind != "ood" or opts.ood_logits


def identity_options(opts: InferenceOptions, dataset: ImageDataset) -> dict[str, Any]:
    """The inference options that change an output's numbers or columns (part of its identity); with detectors,
    their names and the fit set's fingerprint (the fitted statistics follow from these and the model's weights)."""
    detectors = {"detectors": list(opts.detectors), "detector_fit_sha256": opts.detector_fit_sha256,
                 "detector_params": opts.detector_params}
    return {
        **(detectors if opts.detectors else {}),
        "confidences": list(opts.confidences),
        "model_confidences": list(opts.model_confidences),
        "mc_passes": opts.mc_passes if opts.model_confidences else None,
        "seed": opts.seed if opts.model_confidences else None,
        "drop_rate": opts.drop_rate,
        "precision": opts.precision(),
        "store_logits": stores_logits(dataset, opts),
        "max_image_pixels": opts.max_image_pixels,
        "batch_size": opts.batch_size if opts.model_confidences else None,  # MC-dropout seeds are per block
    }


# -- the Ray Data stages ---------------------------------------------------------------------------------------


def crop_column(j: int) -> str:
    """The batch column holding the crops of a pipeline's ``j``-th preprocessing signature."""
    return f"crop{j}"


def decode_block(batch: dict[str, np.ndarray], pres: list, max_pixels: int) -> dict[str, np.ndarray]:
    """Decode stage: each row's image -> ``crop<j> (n, S_j, S_j, 3) uint8`` for each preprocessing ``pres[j]`` (each
    image read and decoded once, then cropped per signature) and ``error`` ("" when decoded; zero crops else).

    A row names its image by locator (:func:`_listing_blocks`): ``format`` "file" reads the local file ``file``;
    any other format reads the bytes at ``(file, start, length)`` (pipelines.data.archives.read_samples: each
    container opened once per block, members read by offset). A read failure is the row's error, like a decode
    failure."""
    import io

    from pipelines.data.archives import read_samples
    from pipelines.data.preprocess import decode_crops_or_error

    n = len(batch["file"])
    crops = [np.zeros((n, pre.input_size, pre.input_size, 3), dtype=np.uint8) for pre in pres]
    errors = np.full(n, "", dtype=object)
    formats = [str(f) for f in batch["format"]]
    sources: list[Any] = [Path(str(f)) for f in batch["file"]]
    for fmt in sorted(set(formats) - {"file"}):
        rows = [i for i, f in enumerate(formats) if f == fmt]
        got = read_samples(fmt, [str(batch["file"][i]) for i in rows], batch["start"][rows], batch["length"][rows])
        for i, data in zip(rows, got, strict=True):
            sources[i] = io.BytesIO(data) if isinstance(data, bytes) else f"ImageError: {data}"
    for i, source in enumerate(sources):
        if isinstance(source, str):
            errors[i] = source
            continue
        decoded, error = decode_crops_or_error(source, pres, max_pixels)
        if decoded is None:
            errors[i] = error
        else:
            for column, crop in zip(crops, decoded, strict=True):
                column[i] = crop
    out = {key: value for key, value in batch.items() if key not in LOCATOR_COLUMNS}
    for j, column in enumerate(crops):
        out[crop_column(j)] = column
    out["error"] = errors
    return out


class ModelStage:
    """A Ray Data actor holding ``specs`` resident: built once in the constructor, used for every block.

    Output columns per model ``k`` (the run's model index): ``m<k>.pred (n,) int32`` (first maximal logit),
    ``m<k>.logits (n, 1000) float32`` only for blocks of the datasets in ``logits_for`` (those whose logits are
    stored: an OOD block ships no 1000-wide rows it would drop), ``m<k>.<κ>`` (n,) float64, ``m<k>.error``
    ("" or the model's one-line error: a model that fails to build or to run is
    reported, never raised, so the others go on), ``m<k>.info`` (JSON: state-dict digest, params, device,
    κ parameters). Model ``j`` of ``specs`` reads its crops from batch column ``crop_columns[j]`` (its
    signature's, :func:`crop_column`). ``actor`` names the actor and its node, ``<actor id>@<node id>``
    (weight loads = distinct actors per model). ``detector_stats``: model index -> {detector name: fitted
    statistics} (cood.detectors; each value may be a Ray object reference to that mapping): a model with
    statistics runs through :func:`pipelines.zoo.features.feature_extractor`, logits and features from one
    forward pass, and adds the column ``m<k>.det_<name>`` per detector of ``opts.detectors``. With
    ``opts.keep_features`` every model runs through its feature extractor and adds ``m<k>.features (n, D)
    float16`` (pipelines.zoo.features.features_to_fp16; zeros on undecodable rows; absent on a block the model
    failed; features beyond float16's range fail the model with that error).
    """

    def __init__(self, specs: list[ModelSpec], indices: list[int], opts: InferenceOptions, keep_crops: bool,
                 logits_for: frozenset[int] = frozenset(), crop_columns: list[str] | None = None,
                 detector_stats: Any = None):
        import ray
        import torch

        from pipelines.engine.inference import load_model

        torch.set_num_threads(max(1, opts.threads))
        self.opts = opts
        self.keep_crops = keep_crops
        self.logits_for = logits_for
        self.crop_columns = crop_columns or [crop_column(0)] * len(specs)  # model j reads its signature's crops
        self.indices = indices
        context = ray.get_runtime_context()
        self.actor = f"{context.get_actor_id() or 'local'}@{context.get_node_id()}"
        self.detector_stats: dict[int, dict[str, Any]] = {
            k: ray.get(v) if isinstance(v, ray.ObjectRef) else v for k, v in (detector_stats or {}).items()
        }
        self.models: list[tuple[ModelSpec, Any, str, str | None]] = []
        self.extractors: list[Any] = []
        for k, ms in zip(indices, specs, strict=True):
            try:
                model, info, _ = load_model(ms, opts)
                extractor = None
                if opts.detectors or opts.keep_features:
                    from pipelines.zoo.features import feature_extractor

                    extractor = feature_extractor(model, ms.source)
                if opts.detectors:
                    from cood.detectors import kappa_params
                    from pipelines.engine.inference import detector_column

                    stats = self.detector_stats[k]
                    info["kappa_params"].update({
                        detector_column(name): json.loads(kappa_params(stats[name])) for name in opts.detectors
                    })
                self.models.append((ms, model, json.dumps(info, sort_keys=True), None))
                self.extractors.append(extractor)
            except Exception as exc:
                self.models.append((ms, None, "{}", _one_line(exc)))
                self.extractors.append(None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cood.confidence import compute
        from pipelines.engine.inference import forward_all
        from pipelines.zoo.features import features_to_fp16

        n = len(batch["error"])
        good = np.flatnonzero(batch["error"] == "")
        out = {key: value for key, value in batch.items() if not key.startswith("crop") or self.keep_crops}
        out["actor"] = np.full(n, self.actor, dtype=object)
        seed_key = int(batch["shard"][0]) * 4096 + int(batch["block"][0]) if n else 0
        ship_logits = bool(n) and int(batch["ds"][0]) in self.logits_for  # a block holds one dataset's rows
        for j, (k, (ms, model, info, error)) in enumerate(zip(self.indices, self.models, strict=True)):
            logits = np.zeros((n, 1000), dtype=np.float32)
            columns: dict[str, np.ndarray] = {}
            kept: np.ndarray | None = None
            if error is None and len(good):
                try:
                    crops = batch[self.crop_columns[j]]
                    features: list[np.ndarray] = []
                    part, extra, _ = forward_all(
                        model, crops[good], ms, self.opts, seed_key, extractor=self.extractors[j], features=features
                    )
                    if part.shape[1] != 1000:
                        raise ValueError(f"model emitted {part.shape[1]} logits, expected the 1000 ImageNet-1k classes")
                    logits[good] = part
                    if self.opts.detectors:
                        extra.update(detector_columns(self.detector_stats[k], np.concatenate(features), part))
                    if self.opts.keep_features:
                        half = features_to_fp16(np.concatenate(features))
                        kept = np.zeros((n, half.shape[1]), dtype=np.float16)
                        kept[good] = half
                    for name, values in {**compute(part, self.opts.confidences), **extra}.items():
                        full = np.zeros(n, dtype=np.float64)
                        full[good] = values
                        columns[name] = full
                except Exception as exc:
                    error = _one_line(exc)
                    if not _is_transient(error):  # a model broken on one block is broken: stop spending on it
                        self.models[j] = (ms, None, info, error)
            out[f"m{k}.pred"] = logits.argmax(axis=1).astype(np.int32)
            if ship_logits:
                out[f"m{k}.logits"] = logits
            if kept is not None and error is None:
                out[f"m{k}.features"] = kept
            for name in self.opts.kappa_columns():
                out[f"m{k}.{name}"] = columns.get(name, np.zeros(n, dtype=np.float64))
            out[f"m{k}.error"] = np.full(n, error or "", dtype=object)
            out[f"m{k}.info"] = np.full(n, info, dtype=object)
        return out


def detector_columns(stats: dict[str, Any], features: np.ndarray, logits: np.ndarray) -> dict[str, np.ndarray]:
    """``det_<name> (n,) float64`` κ of every detector in ``stats`` (name -> fitted statistics) on one batch:
    ``features (n, D)``, ``logits (n, C)`` from the same forward pass (cood.detectors, higher = more ID)."""
    from cood.detectors import DetectorInputs, score
    from pipelines.engine.inference import detector_column

    inputs = DetectorInputs(features=features, logits=logits)
    return {detector_column(name): np.asarray(score(s, inputs), dtype=np.float64) for name, s in stats.items()}


def _is_transient(message: str) -> bool:
    from pipelines.engine.inference import TRANSIENT_MARKERS

    return any(marker in message for marker in TRANSIENT_MARKERS)


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
    return f"{type(exc).__name__}: {message}{where}"


# -- planning --------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a run must compute: ``todo[(model index, dataset name)]`` = shards to compute, with the identity
    each will carry; ``results`` holds the reused outputs and the models that failed before inference."""

    shards: dict[str, identity.ShardPlan]
    identities: dict[tuple[int, str, int], dict[str, Any]]
    todo: dict[tuple[int, str], list[int]]
    results: list[TaskResult]
    recomputed: list[tuple[str, str, int, str]]  # (model, dataset, shard, why) of quarantined/changed outputs


def plan_run(
    models: list[ModelSpec], datasets: list[ImageDataset], workspace: Path, opts: InferenceOptions,
    num_shards: int, quarantine: Path,
) -> Plan:
    """Verify every stored output against what this run would produce; list what must be computed. With
    ``opts.keep_features`` a reused output also needs its kept features (:func:`verify_features`); a shard whose
    features are missing or fail verification is computed again, outputs and features, and the reason recorded."""
    shards = {d.name: identity.plan_shards(d, num_shards) for d in datasets}
    identities: dict[tuple[int, str, int], dict[str, Any]] = {}
    todo: dict[tuple[int, str], list[int]] = {}
    results: list[TaskResult] = []
    recomputed: list[tuple[str, str, int, str]] = []
    for k, ms in enumerate(models):
        try:
            weights = identity.weights_identity(ms)
        except Exception as exc:  # e.g. a weights package that is not installed
            for d in datasets:
                for s in shards[d.name].fingerprints:
                    results.append(TaskResult(ms.model_id, d.name, s, "failed", error=_one_line(exc), attempts=0))
            continue
        for d in datasets:
            plan = shards[d.name]
            options = identity_options(opts, d)
            folder = shard_path(workspace, ms.model_id, d.name, 0).parent
            live = {shard_path(workspace, ms.model_id, d.name, s).name for s in plan.fingerprints}
            kept = feature_path(workspace, ms.model_id, d.name, 0).parent
            for where in (folder, kept) if opts.keep_features else (folder,):
                for stale in sorted(where.glob("part-*.parquet")) if where.is_dir() else []:
                    if stale.name not in live:  # its class folders are gone, or the shard count changed
                        why = "shard holds no images now"
                        identity.move_to_quarantine(stale, quarantine / where.relative_to(workspace), why)
                        label = stale.name if where == folder else f"kept features {stale.name}"
                        recomputed.append((ms.model_id, d.name, -1, f"{label}: {why}"))
            for s in plan.fingerprints:
                expected = identity.output_identity(ms, weights, options, d.name, s, plan)
                identities[(k, d.name, s)] = expected
                path = shard_path(workspace, ms.model_id, d.name, s)
                verdict = identity.verify_output(path, expected, quarantine / path.parent.relative_to(workspace))
                if verdict.reuse and opts.keep_features:
                    verdict = verify_features(workspace, ms.model_id, d.name, s, expected, verdict, quarantine)
                if verdict.reuse:
                    manifest = verdict.manifest or {}
                    results.append(TaskResult(
                        ms.model_id, d.name, s, "reused", n_samples=int(manifest.get("rows", 0)),
                        output_path=str(path), attempts=0,
                        bad_files=[tuple(b) for b in manifest.get("bad_files", [])],
                        model_info={"params": manifest.get("params"),
                                    "weights_sha256": manifest.get("state_dict_sha256")},
                    ))
                else:
                    todo.setdefault((k, d.name), []).append(s)
                    if verdict.reason != "no output yet":
                        recomputed.append((ms.model_id, d.name, s, verdict.reason))
    return Plan(shards, identities, todo, results, recomputed)


def verify_features(
    workspace: Path, model_id: str, dataset: str, shard: int, expected: dict[str, Any], output: identity.Verdict,
    quarantine: Path,
) -> identity.Verdict:
    """The verdict on a verified output (``output``) once its kept features are checked too: they must carry the
    output's identity ``expected`` and their own checksum (identity.verify_output, which quarantines them with the
    reason otherwise) and name the stored output's SHA-256 (written beside this very file). Reuse keeps
    ``output``'s manifest; any failure is a one-line reason starting "kept features"."""
    path = feature_path(workspace, model_id, dataset, shard)
    where = quarantine / path.parent.relative_to(workspace)
    verdict = identity.verify_output(path, expected, where)
    if not verdict.reuse:
        reason = "missing" if verdict.reason == "no output yet" else verdict.reason
        return identity.Verdict(False, f"kept features {reason}", verdict.quarantined)
    written_with = (verdict.manifest or {}).get("output_sha256")
    if written_with != (output.manifest or {}).get("parquet_sha256"):
        reason = "kept features were written with another output file"
        identity.move_to_quarantine(path, where, reason)
        return identity.Verdict(False, reason, True)
    return output


def check_feature_storage(models: list[ModelSpec], datasets: list[ImageDataset], budget_bytes: int) -> int:
    """Bytes the kept features of a run take on disk: Σ over models of (images of the evaluated ``datasets``) × D × 2
    (float16; D from :func:`pipelines.engine.inference.feature_width`, Parquet's few bytes per row left out).
    UserError (one line) when that exceeds ``budget_bytes`` or a model's D cannot be read."""
    from pipelines.engine.inference import feature_width
    from pipelines.errors import UserError

    images = sum(len(d) for d in datasets)
    widths = {}
    for ms in models:
        try:
            widths[ms.model_id] = feature_width(ms)
        except Exception as exc:
            raise UserError(f"[detectors] keep_features: cannot read the feature width of {ms.model_id} "
                            f"({_one_line(exc)})") from None
    need = images * sum(widths.values()) * 2
    if need > budget_bytes:
        widest = max(widths, key=widths.__getitem__)
        raise UserError(
            f"[detectors] keep_features: {len(models)} model(s) × {images} images need {need / 2**30:.2f} GiB of "
            f"float16 features (Σ images × D × 2 bytes; widest D = {widths[widest]}, {widest}), over "
            f"feature_storage_gib = {budget_bytes / 2**30:g}; raise it, or keep features for fewer models or images"
        )
    return need


# -- execution -------------------------------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]  # (stage description, images done, images total)


LOCATOR_COLUMNS = ("format", "file", "start", "length")


def _locator_columns(d: ImageDataset, part: np.ndarray) -> dict[str, pa.Array]:
    """Where the rows ``part`` (dataset positions) read their image: ``format`` ("file" for local image files,
    else the dataset's container format), ``file`` (path or URI), ``start``/``length`` (the locator)."""
    n = len(part)
    if d.locators is None:
        return {
            "format": pa.array(["file"] * n, type=pa.string()),
            "file": pa.array([str(d.path(int(i))) for i in part], type=pa.string()),
            "start": pa.array(np.zeros(n, dtype=np.int64)),
            "length": pa.array(np.full(n, -1, dtype=np.int64)),
        }
    loc = d.locators
    return {
        "format": pa.array([loc.format] * n, type=pa.string()),
        "file": pa.array([loc.location(f) for f in loc.file[part].tolist()], type=pa.string()),
        "start": pa.array(loc.start[part].astype(np.int64)),
        "length": pa.array(loc.length[part].astype(np.int64)),
    }


def _listing_blocks(
    datasets: list[ImageDataset], plan: Plan, wanted: dict[str, set[int]], batch_size: int
) -> tuple[list[pa.Table], dict[tuple[int, int], int]]:
    """Blocks of ≤ ``batch_size`` rows, one (dataset, shard) each; and the row count of every wanted shard.
    Rows carry their image's locator (:func:`_locator_columns`), so decode workers need nothing but the data."""
    blocks: list[pa.Table] = []
    counts: dict[tuple[int, int], int] = {}
    for di, d in enumerate(datasets):
        members = plan.shards[d.name].members
        for s in sorted(wanted.get(d.name, ())):
            idx = members[s]
            counts[(di, s)] = len(idx)
            for b, start in enumerate(range(0, len(idx), batch_size)):
                part = idx[start : start + batch_size]
                blocks.append(pa.table({
                    "ds": pa.array(np.full(len(part), di, dtype=np.int32)),
                    "shard": pa.array(np.full(len(part), s, dtype=np.int32)),
                    "block": pa.array(np.full(len(part), b, dtype=np.int32)),
                    "idx": pa.array(part.astype(np.int64)),
                    **_locator_columns(d, part),
                }))
    return blocks, counts


def _stage_capacity(settings: EngineSettings) -> int:
    """How many chained model stages (one actor each, at least) the cluster holds beside one decode task: the
    most for which :func:`_actor_count` does not refuse."""
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    decode = settings.decode_cpus if _decode_is_separate(settings) else 0.0
    capacity = int((cpus - decode + 1e-9) // max(settings.cpus_per_actor, 1e-9))
    if settings.gpus_per_actor > 0:
        capacity = min(capacity, int((gpus + 1e-9) // settings.gpus_per_actor))
    return capacity


def _actor_count(settings: EngineSettings, stages: int) -> int:
    """Actors per model stage: ``settings.model_actors``, else as many as the cluster's GPUs (or CPUs left
    after one decode task) allow for ``stages`` chained stages; UserError when not even one actor per stage and
    one decode task fit (the pipeline would wait forever)."""
    import ray

    from pipelines.errors import UserError

    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    decode = settings.decode_cpus if _decode_is_separate(settings) else 0.0
    need_cpus = stages * settings.cpus_per_actor + decode
    if need_cpus > cpus + 1e-9 or stages * settings.gpus_per_actor > gpus + 1e-9:
        raise UserError(
            f"the cluster has {cpus:g} CPUs and {gpus:g} GPUs; {stages} model stage(s) of {settings.cpus_per_actor:g} "
            f"CPU / {settings.gpus_per_actor:g} GPU per actor plus a {decode:g}-CPU decode task need more: lower "
            "[ray] cpus_per_task or raise [inference] models_per_actor"
        )
    if settings.model_actors:
        return settings.model_actors
    if settings.gpus_per_actor > 0:
        return max(1, int(gpus // (settings.gpus_per_actor * stages)))
    return max(1, int((cpus - decode) // (max(settings.cpus_per_actor, 1e-9) * stages)))


def _decode_is_separate(settings: EngineSettings) -> bool:
    """Whether decode runs as its own tasks: Ray Data fuses it into the first model stage's actors when both
    ask for the same resources (a CPU-only cluster with equal CPU counts); then the crops never leave the actor."""
    return bool(settings.gpus_per_actor or settings.actor_resources or settings.cpus_per_actor != settings.decode_cpus)


@dataclass
class _Sink:
    """Driver side of one signature's pipeline: streaming writers per (model, dataset, shard), and with
    ``opts.keep_features`` a second one per (model, dataset, shard) for the kept features (``feature_writers``)."""

    workspace: Path
    run_id: str
    models: list[ModelSpec]
    datasets: list[ImageDataset]
    plan: Plan
    opts: InferenceOptions
    needed: dict[tuple[int, int], list[int]]  # (ds, shard) -> model indices that need it
    counts: dict[tuple[int, int], int]
    code_version: str
    libraries: str
    received: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    writers: dict[tuple[int, int, int], ShardWriter] = field(default_factory=dict)
    feature_writers: dict[tuple[int, int, int], ShardWriter] = field(default_factory=dict)
    feature_dims: dict[int, int] = field(default_factory=dict)
    errors: dict[tuple[int, int, int], str] = field(default_factory=dict)
    bad: dict[tuple[int, int], list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    info: dict[int, dict[str, Any]] = field(default_factory=dict)
    actors: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    started: dict[tuple[int, int], float] = field(default_factory=dict)
    results: list[TaskResult] = field(default_factory=list)
    images: int = 0

    def add(self, batch: dict[str, np.ndarray]) -> None:
        keys = np.stack([batch["ds"], batch["shard"]], axis=1)
        for di, s in {tuple(int(v) for v in row) for row in keys}:
            rows = np.flatnonzero((batch["ds"] == di) & (batch["shard"] == s))
            self._add_rows(di, s, {name: value[rows] for name, value in batch.items()})

    def _add_rows(self, di: int, s: int, rows: dict[str, np.ndarray]) -> None:
        d = self.datasets[di]
        self.started.setdefault((di, s), time.perf_counter())
        errors = rows["error"]
        ok = errors == ""
        for i in np.flatnonzero(~ok):
            self.bad[(di, s)].append((d.sample_ids[int(rows["idx"][i])], str(errors[i])))
        ids = [d.sample_ids[int(i)] for i in rows["idx"][ok]]
        labels = np.asarray([d.labels[int(i)] for i in rows["idx"][ok]], dtype=np.int64)
        for k in self.needed[(di, s)]:
            if f"m{k}.error" not in rows:
                continue  # another stage's models
            self.actors[k].update(str(a) for a in rows["actor"])
            error = next((str(e) for e in rows[f"m{k}.error"] if e), None)
            if error is not None:
                self.errors.setdefault((k, di, s), error)
            if (k, di, s) in self.errors:
                continue
            if k not in self.info and len(rows[f"m{k}.info"]):
                self.info[k] = json.loads(str(rows[f"m{k}.info"][0]))
            confidences = {name: rows[f"m{k}.{name}"][ok] for name in self.opts.kappa_columns()}
            store = stores_logits(d, self.opts)
            logits = rows[f"m{k}.logits"][ok] if store else None
            table = shard_table(ids, labels, logits, confidences, store, pred=rows[f"m{k}.pred"][ok])
            self._writer(k, di, s).write(table)
            if self.opts.keep_features and ids:
                features = rows[f"m{k}.features"][ok]
                self.feature_dims.setdefault(k, features.shape[1])
                self._feature_writer(k, di, s).write(feature_table(ids, features))
        self.received[(di, s)] += len(errors)
        self.images += len(errors)
        if self.received[(di, s)] >= self.counts[(di, s)]:
            self._finish(di, s)

    def _writer(self, k: int, di: int, s: int) -> ShardWriter:
        key = (k, di, s)
        if key not in self.writers:
            ms, d = self.models[k], self.datasets[di]
            info = self.info.get(k, {})
            self.writers[key] = ShardWriter(shard_path(self.workspace, ms.model_id, d.name, s), {
                "model_spec": ms.spec, "preprocess": ms.preprocess.signature, "device": info.get("device", ""),
                "precision": self.opts.precision(), "code_version": self.code_version, "libraries": self.libraries,
                "kappa_params": json.dumps(info.get("kappa_params", {}), sort_keys=True),
            })
        return self.writers[key]

    def _feature_writer(self, k: int, di: int, s: int) -> ShardWriter:
        key = (k, di, s)
        if key not in self.feature_writers:
            ms, d = self.models[k], self.datasets[di]
            self.feature_writers[key] = ShardWriter(feature_path(self.workspace, ms.model_id, d.name, s), {
                "model_spec": ms.spec, "preprocess": ms.preprocess.signature, "dtype": "float16",
                "code_version": self.code_version, "libraries": self.libraries,
            })
        return self.feature_writers[key]

    def _commit_features(self, k: int, di: int, s: int, output: dict[str, Any]) -> None:
        """Commit the kept features of (model, dataset, shard) after its output (manifest ``output``): the same
        identity, plus the output file's SHA-256 they were written with (pipelines.engine.stream.verify_features)."""
        from pipelines.engine.inference import feature_width

        if (k, di, s) not in self.feature_writers:  # every image of the shard was bad: an empty file, width D
            self.feature_dims.setdefault(k, feature_width(self.models[k]))
            self._feature_writer(k, di, s).write(feature_table([], np.zeros((0, self.feature_dims[k]), np.float16)))
        writer = self.feature_writers.pop((k, di, s))
        path = writer.commit()
        identity.write_manifest(path, output["identity"], {
            "rows": writer.rows, "output_sha256": output["parquet_sha256"], "run_id": self.run_id,
            "dtype": "float16", "feature_dim": self.feature_dims.get(k), "code_version": self.code_version,
        })

    def _finish(self, di: int, s: int) -> None:
        d = self.datasets[di]
        seconds = time.perf_counter() - self.started.pop((di, s), time.perf_counter())
        bad = sorted(self.bad.pop((di, s), []))
        for k in self.needed[(di, s)]:
            ms = self.models[k]
            path = shard_path(self.workspace, ms.model_id, d.name, s)
            result = TaskResult(ms.model_id, d.name, s, "ok", output_path=str(path), bad_files=bad,
                                seconds=seconds, attempts=1)
            writer = self.writers.pop((k, di, s), None)
            error = self.errors.pop((k, di, s), None)
            if error is not None:
                for open_writer in (writer, self.feature_writers.pop((k, di, s), None)):
                    if open_writer is not None:
                        open_writer.abort()
                result.status, result.error, result.output_path = "failed", error, None
                self.results.append(result)
                continue
            if writer is None:  # every image of the shard was bad: an empty, still verifiable output
                writer = self._writer(k, di, s)
                writer.write(shard_table([], np.zeros(0), np.zeros((0, 1000), np.float32), {
                    name: np.zeros(0) for name in self.opts.kappa_columns()
                }, stores_logits(d, self.opts)))
            writer.commit()
            info = self.info.get(k, {})
            manifest = identity.write_manifest(path, self.plan.identities[(k, d.name, s)], {
                "rows": writer.rows, "bad_files": [list(b) for b in bad], "run_id": self.run_id,
                "state_dict_sha256": info.get("weights_sha256"), "params": info.get("params"),
                "device": info.get("device"), "code_version": self.code_version,
            })
            if self.opts.keep_features:
                self._commit_features(k, di, s, manifest)
            result.n_samples, result.device = writer.rows, info.get("device")
            result.model_info = {"params": info.get("params"), "weights_sha256": info.get("weights_sha256")}
            self.results.append(result)

    def fail_unfinished(self, error: str) -> None:
        """The pipeline stopped: every (model, shard) still open is failed with ``error``."""
        for (di, s) in list(self.counts):
            if self.received.get((di, s), 0) < self.counts[(di, s)] and (di, s) in self.needed:
                for k in self.needed[(di, s)]:
                    self.errors.setdefault((k, di, s), error)
                self.received[(di, s)] = self.counts[(di, s)]
                self._finish(di, s)

    def abort(self) -> None:
        for writer in (*self.writers.values(), *self.feature_writers.values()):
            writer.abort()
        self.writers.clear()
        self.feature_writers.clear()


def _configure_ray_data(budget_bytes: int) -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.resource_limits = ctx.execution_options.resource_limits.copy(
        object_store_memory=budget_bytes
    )
    ctx.execution_options.verbose_progress = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def run_inference(
    models: list[ModelSpec],
    datasets: list[ImageDataset],
    workspace: Path,
    *,
    options: InferenceOptions | None = None,
    settings: EngineSettings | None = None,
    run_id: str = "run",
    on_progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    detector_stats: dict[int, Any] | None = None,
) -> InferenceReport:
    """Compute every (model, dataset, shard) output that is missing or fails verification; reuse the rest.

    Returns every (model, dataset, shard) outcome: ``reused``, ``ok`` (computed now) or ``failed`` (with the
    model's error; the other models go on), plus what was recomputed and why, weight loads per model (distinct
    actors that built it), Ray Data tasks scheduled and the peak object-store bytes seen. ``detector_stats``:
    model index -> {detector: fitted statistics} for ``options.detectors`` (pipelines.engine.detectors), or a Ray
    object reference to that mapping (as the fit phase hands them over), put in Ray's object store once per model;
    each model actor fetches its own models' statistics.
    """
    import ray

    from pipelines.engine.provenance import code_version, library_versions

    opts = options or InferenceOptions()
    settings = settings or EngineSettings()
    workspace = Path(workspace)
    quarantine = workspace / "quarantine" / run_id
    plan = plan_run(models, datasets, workspace, opts, settings.num_shards, quarantine)
    if on_plan is not None:
        on_plan(plan)
    report = InferenceReport(list(plan.results), recomputed=plan.recomputed)
    todo = sorted({k for (k, _) in plan.todo}, key=lambda k: (models[k].preprocess.signature, k))
    if not todo:
        return report
    # Models go to actors in chunks (models_per_actor; default all), ordered by signature so a chunk's models
    # mostly share crops. One pipeline chains as many chunks as the cluster holds actors for at once, and
    # decodes each file once for all the signatures its models need: starts, drains and per-block costs are
    # paid once per pipeline, not once per signature.
    per_actor = settings.models_per_actor or len(todo)
    all_chunks = [todo[i : i + per_actor] for i in range(0, len(todo), per_actor)]
    stages = max(1, _stage_capacity(settings))
    groups = [all_chunks[i : i + stages] for i in range(0, len(all_chunks), stages)]
    _configure_ray_data(settings.budget_bytes)
    versions = json.dumps(library_versions(), sort_keys=True)
    version = code_version()
    names = {d.name: i for i, d in enumerate(datasets)}
    sampler = StoreSampler()
    seen_signatures: set[str] = set()
    stats_refs = {
        k: stats if isinstance(stats, ray.ObjectRef) else ray.put(stats) for k, stats in (detector_stats or {}).items()
    } if opts.detectors else {}
    for chunks in groups:
        indices = sorted(k for chunk in chunks for k in chunk)
        needed: dict[tuple[int, int], list[int]] = defaultdict(list)
        wanted: dict[str, set[int]] = defaultdict(set)
        for k in indices:
            for d in datasets:
                for s in plan.todo.get((k, d.name), []):
                    needed[(names[d.name], s)].append(k)
                    wanted[d.name].add(s)
        blocks, counts = _listing_blocks(datasets, plan, wanted, opts.batch_size)
        pres = list({models[k].preprocess.signature: models[k].preprocess for k in indices}.values())
        column = {pre.signature: crop_column(j) for j, pre in enumerate(pres)}
        actors = min(_actor_count(settings, len(chunks)), len(blocks))  # an idle actor would only load weights
        ds = ray.data.from_arrow(blocks)
        ds = ds.map_batches(
            decode_block, batch_size=None, batch_format="numpy", num_cpus=settings.decode_cpus,
            fn_kwargs={"pres": pres, "max_pixels": opts.max_image_pixels}, zero_copy_batch=True,
        )
        for c, chunk in enumerate(chunks):
            ds = ds.map_batches(
                ModelStage, batch_size=None, batch_format="numpy",
                fn_constructor_kwargs={
                    "specs": [models[k] for k in chunk], "indices": chunk, "opts": opts,
                    "keep_crops": c < len(chunks) - 1,
                    "logits_for": frozenset(di for di, d in enumerate(datasets) if stores_logits(d, opts)),
                    "crop_columns": [column[models[k].preprocess.signature] for k in chunk],
                    "detector_stats": {k: stats_refs[k] for k in chunk if k in stats_refs},
                },
                compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=settings.cpus_per_actor,
                num_gpus=settings.gpus_per_actor or None, resources=settings.actor_resources or None,
            )
        sink = _Sink(workspace, run_id, models, datasets, plan, opts, needed, counts, version, versions)
        total = sum(counts.values())
        description = f"{' + '.join(pre.signature for pre in pres)}: {len(indices)} model(s) × {total} images"
        if on_progress is not None:
            on_progress(description, 0, total)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
                sink.add(batch)
                sampler.sample()
                if on_progress is not None:
                    on_progress(description, sink.images, total)
        except BaseException as exc:
            sink.abort()
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: the caller handles it
                raise
            sink.fail_unfinished(f"pipeline failed: {_one_line(exc)}")
        sink.fail_unfinished("pipeline ended before this shard's rows arrived")
        # Ray Data releases a finished pipeline's actors by dropping its references to them; the handles sit in
        # reference cycles until Python's next collection (Ray's own collector thread runs about once a minute),
        # and until then the actors keep their CPUs/GPUs from the next pipeline and the analyses' tasks.
        del ds
        gc.collect()
        report.results.extend(sink.results)
        for k in indices:
            report.weight_loads[models[k].model_id] = len(sink.actors.get(k, ()))
            report.model_nodes[models[k].model_id] = sorted({a.rpartition("@")[2] for a in sink.actors.get(k, ())})
        report.ray_tasks += len(blocks) * (1 + len(chunks))
        report.decoded += total * len(pres)
        seen_signatures.update(pre.signature for pre in pres)
    report.signatures = len(seen_signatures)
    report.peak_store_bytes = sampler.peak
    _quarantine_other_weights(report, workspace, quarantine)
    return report


def _quarantine_other_weights(report: InferenceReport, workspace: Path, quarantine: Path) -> None:
    """A reused output whose manifest records other weights (state-dict digest) than this run's workers loaded
    for the same model (hub weights replaced under the same id) is quarantined and its task failed, naming
    both digests: the numbers of one model in one run come from one set of weights, and the rerun recomputes."""
    loaded = {r.model_id: (r.model_info or {}).get("weights_sha256") for r in report.results if r.status == "ok"}
    for r in report.results:
        digest = (r.model_info or {}).get("weights_sha256")
        now = loaded.get(r.model_id)
        if r.status != "reused" or not now or not digest or digest == now:
            continue
        why = f"weights changed: state-dict {digest[:12]} in this output, {now[:12]} loaded now; rerun to recompute"
        path = Path(r.output_path or "")
        identity.move_to_quarantine(path, quarantine / path.parent.relative_to(workspace), why)
        report.recomputed.append((r.model_id, r.dataset, r.shard, why))
        r.status, r.error, r.output_path = "failed", why, None


class StoreSampler:
    """Peak object-store bytes in use across the cluster, sampled at most every ``interval`` seconds
    (the GCS's per-node store statistics; cheap, one RPC)."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak = 0
        self._last = 0.0

    def sample(self) -> None:
        now = time.perf_counter()
        if now - self._last < self.interval:
            return
        self._last = now
        self.peak = max(self.peak, object_store_bytes_used())


def object_store_bytes_per_node() -> dict[str, int]:
    """Ray object store bytes in use per node (``node id -> bytes``), for the connected cluster ({} when Ray
    cannot say).

    Read from the GCS's resource view: a raylet reports its ``object_store_memory`` resource as capacity minus
    the plasma bytes in use (primary and secondary copies, pinned or not; spilled objects no longer count), so
    used = total − available. Costs ≈ 1 ms; the view lags the store by the raylet's report period (≲ 1 s).
    """
    import ray

    try:
        try:
            state = ray._private.state.state
            totals, available = state.total_resources_per_node(), state.available_resources_per_node()
        except AttributeError:  # private API moved: whole-cluster numbers from the public one
            totals = {"cluster": ray.cluster_resources()}
            available = {"cluster": ray.available_resources()}
        return {
            node: int(total.get("object_store_memory", 0) - available.get(node, {}).get("object_store_memory", 0))
            for node, total in totals.items()
        }
    except Exception:
        return {}


def object_store_bytes_used() -> int:
    """Bytes held in the object stores of all nodes now (0 when Ray cannot say)."""
    return max(0, sum(object_store_bytes_per_node().values()))
