"""The detectors' fit phase: statistics of every model on the ID fit set, fitted before the main pipeline.

A run with ``[detectors]`` (pipelines.engine.run_config) first fits, for each model, every configured detector of
:mod:`cood.detectors` on the *fit set* (a dataset of role ``fit``: ImageNet-1k labelled images, optionally a
seeded per-class sample of it), then hands the statistics to the model actors, which score each detector as one
more κ column ``det_<name>`` from the same forward pass as the logits (pipelines.engine.stream).

The fit phase checks which stored statistics can be reused and saves the new ones **in the driver** (it owns the
workspace); the fitting itself, :func:`fit_model`, a pure function of (model, fit set, options, settings,
detector names) -> statistics, runs as **one Ray task per model** with a model actor's resources
(pipelines.engine.stream.EngineSettings) when Ray is initialised, else in process. It goes through the same model
loading (pipelines.engine.inference.load_model), decode (pipelines.engine.stream.decode_block) and feature code
(pipelines.zoo.features) as the actors; the task reads the fit set from its dataset root, never the workspace, and
returns the statistics through the object store. A task holds one model's fit-set features ``(n_fit, D) float32``
(plus its labels) while its detectors are fitted, then frees them; one model's must fit in
``feature_budget_bytes`` (checked after the first batch, one-line error otherwise), and :func:`fit_concurrency`
bounds the tasks in flight so their features together stay within it. Each model decodes the fit set again (one
signature's crops are never kept across models).

Statistics are stored as ``<workspace>/detectors/<model_id>/<name>.npz`` (cood.detectors.save_stats, atomic) next
to ``<name>.json``, the identity they were fitted under: the model's weights identity
(pipelines.engine.identity.weights_identity), its preprocessing, the fit set's fingerprint and the detector's
hyper-parameters. A rerun reuses them only when that identity matches, else refits and says why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common import atomic_write_text
from cood import detectors as det
from pipelines.data.datasets import ImageDataset
from pipelines.engine.identity import sample_stamps, weights_identity
from pipelines.engine.inference import InferenceOptions
from pipelines.engine.stream import EngineSettings
from pipelines.errors import UserError
from pipelines.zoo import ModelSpec

DEFAULT_FEATURE_BUDGET_BYTES = 1 << 30
STATS_FORMAT = 1


@dataclass(frozen=True)
class DetectorSettings:
    """``[detectors]`` of a run: ``names`` (cood.detectors registry names), ``fit`` (the fit dataset's name),
    ``fit_per_class`` (images sampled per class from it, None = all), ``seed`` (that sample's seed) and
    ``feature_budget_bytes`` (the most fit-set feature bytes held at once); ``params``: hyper-parameters that
    replace a detector's paper defaults (name -> {parameter: value}, e.g. ViM's ``dim`` for a fit set smaller
    than its principal space), recorded in the statistics' provenance and the outputs' identity."""

    names: tuple[str, ...]
    fit: str
    fit_per_class: int | None = None
    seed: int = 0
    feature_budget_bytes: int = DEFAULT_FEATURE_BUDGET_BYTES
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def params_of(self, name: str) -> dict[str, Any]:
        """``name``'s hyper-parameters: its registry defaults, then the configured overrides."""
        return {**det.detector(name).defaults, **self.params.get(name, {})}


@dataclass
class FitReport:
    """What the fit phase did: ``stats`` model index -> {detector name: fitted statistics}, or, when Ray is up, a Ray
    object reference to that mapping (held in the object store, which spills to disk, not in the driver: KNN's
    statistics are the whole fit-set feature bank, so the driver holds one model's at a time); ``errors`` model index
    -> one-line error (the model is failed for the run); ``lines`` what was fitted, reused or refitted and why;
    ``nodes`` model index -> the Ray node id of its fit task (models fitted on the cluster only)."""

    stats: dict[int, Any] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    nodes: dict[int, str] = field(default_factory=dict)


def sample_fit_set(dataset: ImageDataset, per_class: int | None, seed: int) -> ImageDataset:
    """``dataset`` itself (``per_class`` None) or a seeded sample of at most ``per_class`` images of each class
    (``np.random.default_rng(seed)`` permutation per class, in label order), kept in sample-id order."""
    if per_class is None:
        return dataset
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset.labels)
    keep: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        keep.append(members[rng.permutation(len(members))[:per_class]])
    order = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    return dataclasses.replace(
        dataset,
        sample_ids=tuple(dataset.sample_ids[i] for i in order),
        labels=tuple(dataset.labels[i] for i in order),
        locators=dataset.locators.take(order) if dataset.locators is not None else None,
    )


def fit_set_sha256(dataset: ImageDataset) -> str:
    """The fit set's fingerprint: SHA-256 over ``sample id, label, byte stamp`` lines (as an output shard's,
    pipelines.engine.identity), so a changed, added or removed image changes it."""
    digest = hashlib.sha256()
    for sid, label, stamp in zip(dataset.sample_ids, dataset.labels, sample_stamps(dataset), strict=True):
        digest.update(f"{sid}\t{label}\t{stamp}\n".encode())
    return digest.hexdigest()


def file_identities(dataset: ImageDataset) -> dict[str, str]:
    """File identity -> sample id: the resolved path of a local image, else the container (or object) location
    with the member's stamp (length, offset, container size, mtime and name; pipelines.data.datasets.Locators)."""
    if dataset.locators is None:
        return {str(dataset.path(i).resolve()): sid for i, sid in enumerate(dataset.sample_ids)}
    loc = dataset.locators
    stamps = loc.stamps()
    return {
        f"{loc.location(f)}\t{stamp}": sid
        for f, stamp, sid in zip(loc.file.tolist(), stamps, dataset.sample_ids, strict=True)
    }


def check_disjoint(fit_set: ImageDataset, datasets: list[ImageDataset]) -> None:
    """UserError naming a shared file when the fit set shares an image with an evaluation dataset."""
    fit_files = file_identities(fit_set)
    for d in datasets:
        shared = sorted(set(fit_files) & set(file_identities(d)))
        if shared:
            raise UserError(
                f"the fit set {fit_set.name!r} and the evaluation dataset {d.name!r} share {len(shared)} image(s), "
                f"e.g. {shared[0].split(chr(9))[0]}; fit the detectors on images the run does not evaluate"
            )


def stats_dir(workspace: Path, model_id: str) -> Path:
    """Where a model's fitted statistics live: ``<workspace>/detectors/<model_id>/``."""
    return Path(workspace) / "detectors" / model_id


def stats_identity(
    ms: ModelSpec, weights: str, name: str, fit_sha256: str, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The identity fitted statistics must carry to be reused (JSON-ready); ``params``: the detector's
    hyper-parameters (default: its registry defaults)."""
    return {
        "format": STATS_FORMAT, "detector": name,
        "params": dict(det.detector(name).defaults) if params is None else dict(params),
        "model_spec": ms.spec, "weights": weights, "preprocess": ms.preprocess.signature,
        "fit_set_sha256": fit_sha256,
    }


def _stored(folder: Path, name: str, expected: dict[str, Any]) -> tuple[Any | None, str]:
    """(stats, "") when ``folder`` holds statistics of ``name`` fitted under ``expected``, else (None, why)."""
    meta, npz = folder / f"{name}.json", folder / f"{name}.npz"
    if not meta.is_file() or not npz.is_file():
        return None, "not fitted yet"
    try:
        stored = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None, "unreadable provenance"
    changed = sorted(k for k in expected.keys() | stored.keys() if stored.get(k) != expected.get(k))
    if changed:
        return None, f"{', '.join(changed)} changed"
    try:
        return det.load_stats(npz), ""
    except (OSError, ValueError, KeyError) as exc:
        return None, f"unreadable statistics ({type(exc).__name__})"


def fit_features(
    ms: ModelSpec, fit_set: ImageDataset, opts: InferenceOptions, budget_bytes: int, needs_logits: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any, int]:
    """Run ``ms`` over the fit set in process: ``(features (n, D) float32, labels (n,) int64, logits (n, C)
    float32 or None, head (LinearHead or None), bad images)``. Images that cannot be decoded are skipped.
    UserError when ``n_fit × D × 4`` bytes exceed ``budget_bytes``."""
    import torch

    from pipelines.engine.inference import forward_all, load_model
    from pipelines.engine.stream import _locator_columns, crop_column, decode_block
    from pipelines.zoo.features import feature_extractor

    model, _, _ = load_model(ms, opts)
    extractor = feature_extractor(model, ms.source)
    n = len(fit_set)
    features: np.ndarray | None = None
    logits_all = np.zeros((n, 1000), dtype=np.float32) if needs_logits else None
    ok = np.zeros(n, dtype=bool)
    no_mc = dataclasses.replace(opts, model_confidences=())
    for start in range(0, n, opts.batch_size):
        part = np.arange(start, min(n, start + opts.batch_size))
        batch = {key: value.to_numpy(zero_copy_only=False) for key, value in _locator_columns(fit_set, part).items()}
        decoded = decode_block(batch, [ms.preprocess], opts.max_image_pixels)
        good = np.flatnonzero(decoded["error"] == "")
        if not len(good):
            continue
        chunks: list[np.ndarray] = []
        with torch.no_grad():
            logits, _, _ = forward_all(model, decoded[crop_column(0)][good], ms, no_mc, extractor=extractor,
                                       features=chunks)
        block = np.concatenate(chunks)
        if features is None:
            need = n * block.shape[1] * 4
            if need > budget_bytes:
                raise UserError(
                    f"{ms.model_id}: fit-set features need {need / 2**20:.0f} MiB ({n} images × {block.shape[1]} "
                    f"dims, float32), over [detectors] feature_budget_mib = {budget_bytes >> 20}; lower "
                    "fit_per_class or raise the budget"
                )
            features = np.zeros((n, block.shape[1]), dtype=np.float32)
        features[part[good]] = block
        if logits_all is not None:
            logits_all[part[good]] = logits
        ok[part[good]] = True
    if features is None:
        raise UserError(f"{ms.model_id}: no image of the fit set {fit_set.name!r} could be decoded")
    labels = np.asarray(fit_set.labels, dtype=np.int64)[ok]
    keep_logits = logits_all[ok] if logits_all is not None else None
    head = extractor.head
    del model, extractor
    return features[ok], labels, keep_logits, head, int((~ok).sum())


PROGRESS_STAGE = "detectors fit"


@dataclass(frozen=True)
class ModelFit:
    """One model's fitted statistics (detector name -> stats, cood.detectors), ``feature_bytes``, the fit-set
    feature bytes it held while fitting (``n_fit × D × 4``; 0 when none of its detectors read the fit set), and
    ``node``, the Ray node id that fitted them ("" in process)."""

    stats: dict[str, Any]
    feature_bytes: int
    node: str = ""


def fit_concurrency(budget_bytes: int, measured_bytes: list[int]) -> int:
    """How many fit tasks may run at once: 1 while no model has finished (a model's feature size is unknown
    before it runs), then ``max(1, budget_bytes // max(measured_bytes))``, the largest features measured so far
    standing for every model still to run (1 when none held any)."""
    largest = max(measured_bytes, default=0)
    return max(1, budget_bytes // largest) if largest > 0 else 1


def fit_model(
    ms: ModelSpec, fit_set: ImageDataset, opts: InferenceOptions, settings: DetectorSettings, fit_sha256: str,
    names: list[str],
) -> ModelFit:
    """Fit the detectors ``names`` of one model on the fit set: a pure function (it reads the model's weights and
    the fit set's images, never the workspace). Features are read only when a detector fits on data or needs
    the model's linear head, logits only when a detector fitting on data needs them; they are freed on return."""
    need_data = any(det.detector(n).fits_on_data or "head" in det.detector(n).needs for n in names)
    needs_logits = any("logits" in det.detector(n).needs and det.detector(n).fits_on_data for n in names)
    features = labels = logits = head = None
    feature_bytes = 0
    if need_data:
        features, labels, logits, head, _ = fit_features(
            ms, fit_set, opts, settings.feature_budget_bytes, needs_logits
        )
        feature_bytes = len(fit_set) * features.shape[1] * 4
    inputs = det.DetectorInputs(features=features, logits=logits, labels=labels)
    fitted: dict[str, Any] = {}
    for name in names:
        d = det.detector(name)
        if "head" in d.needs and head is None:
            raise UserError(f"{name} needs the model's final linear layer, and {ms.model_id} has none")
        fitted[name] = d.fit(inputs, head, fit_set_sha256=fit_sha256, **settings.params.get(name, {}))
    return ModelFit(fitted, feature_bytes)


def _fit_task(
    ms: ModelSpec, fit_set: ImageDataset, opts: InferenceOptions, settings: DetectorSettings, fit_sha256: str,
    names: list[str],
) -> ModelFit:
    """The body of one model's Ray fit task: :func:`fit_model` with the actors' torch thread count."""
    import ray
    import torch

    torch.set_num_threads(max(1, opts.threads))
    fit = fit_model(ms, fit_set, opts, settings, fit_sha256, names)
    return dataclasses.replace(fit, node=ray.get_runtime_context().get_node_id())


@dataclass(frozen=True)
class _Job:
    """One model whose detectors ``names`` must be fitted (the others of ``found`` were reused)."""

    k: int
    ms: ModelSpec
    names: list[str]
    why: dict[str, str]
    found: dict[str, Any]
    folder: Path
    expected: dict[str, dict[str, Any]]


def _error_line(exc: BaseException) -> str:
    """A fit failure as one line; a Ray task's error is reported by its cause (the task's own exception)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    return "detectors: " + " ".join(message.split())


def _in_process(
    jobs: list[_Job], fit_set: ImageDataset, opts: InferenceOptions, settings: DetectorSettings, fit_sha256: str,
) -> Iterator[tuple[_Job, ModelFit | BaseException]]:
    for job in jobs:
        try:
            yield job, fit_model(job.ms, fit_set, opts, settings, fit_sha256, job.names)
        except Exception as exc:
            yield job, exc


def _on_cluster(
    jobs: list[_Job], fit_set: ImageDataset, opts: InferenceOptions, settings: DetectorSettings, fit_sha256: str,
    engine: EngineSettings,
) -> Iterator[tuple[_Job, ModelFit | BaseException]]:
    """One Ray task per job, with the model actors' resources, at most :func:`fit_concurrency` in flight."""
    import ray

    if not jobs:
        return
    task = ray.remote(_fit_task).options(
        num_cpus=engine.cpus_per_actor, num_gpus=engine.gpus_per_actor or None,
        resources=engine.actor_resources or None,
    )
    fit_ref = ray.put(fit_set)  # shipped once, not once per model
    waiting = list(jobs)
    in_flight: dict[Any, _Job] = {}
    measured: list[int] = []
    try:
        while waiting or in_flight:
            while waiting and len(in_flight) < fit_concurrency(settings.feature_budget_bytes, measured):
                job = waiting.pop(0)
                in_flight[task.remote(job.ms, fit_ref, opts, settings, fit_sha256, job.names)] = job
            (ready,), _ = ray.wait(list(in_flight), num_returns=1)
            job = in_flight.pop(ready)
            try:
                fit = ray.get(ready)
            except Exception as exc:  # the task raised, its worker died, its node was lost
                yield job, exc
                continue
            measured.append(fit.feature_bytes)
            yield job, fit
    finally:
        for ref in in_flight:  # the caller stopped early (an interrupt): leave no task running
            with contextlib.suppress(Exception):  # finished meanwhile, or Ray already disconnected
                ray.cancel(ref, force=True)


def fit_all(
    models: list[ModelSpec], fit_set: ImageDataset, workspace: Path, opts: InferenceOptions,
    settings: DetectorSettings, fit_sha256: str, on_line: Callable[[str], None] = lambda line: None,
    engine: EngineSettings | None = None, on_progress: Callable[[str, int, int], None] | None = None,
) -> FitReport:
    """Fitted statistics of every detector in ``settings.names`` for every model (reused when stored under the
    same identity, else fitted now and saved); a model whose features cannot be read or whose detector cannot be
    fitted (e.g. ViM on a model without a linear head) is reported in ``errors``, the others go on.

    The reuse check and the saving happen here, in the caller's process (which owns the workspace). The fitting
    (:func:`fit_model`) runs as one Ray task per model when Ray is initialised, with the resources of a model
    actor (``engine``: cpus_per_actor, gpus_per_actor, actor_resources), at most :func:`fit_concurrency` tasks
    at once; else in process, model after model. ``on_progress(stage, models done, models to fit)``."""
    report = FitReport()
    jobs: list[_Job] = []
    ray = sys.modules.get("ray")  # never imported: not initialised either
    on_cluster = ray is not None and ray.is_initialized()
    hold: Callable[[dict[str, Any]], Any] = ray.put if on_cluster else dict
    for k, ms in enumerate(models):
        try:
            weights = weights_identity(ms)
        except Exception as exc:  # e.g. a weights package that is not installed
            _fail(report, k, ms, _error_line(exc), on_line)
            continue
        folder = stats_dir(workspace, ms.model_id)
        expected = {
            name: stats_identity(ms, weights, name, fit_sha256, settings.params_of(name)) for name in settings.names
        }
        found: dict[str, Any] = {}
        why: dict[str, str] = {}
        for name in settings.names:
            stats, reason = _stored(folder, name, expected[name])
            if stats is not None:
                found[name] = stats
            else:
                why[name] = reason
        job = _Job(k, ms, sorted(why), why, found, folder, expected)
        if why:
            found.clear()  # reloaded when the job is done: the driver holds one model's statistics at a time
            jobs.append(job)
        else:
            _done(report, job, settings.names, on_line, hold)
    if on_cluster:
        outcomes = _on_cluster(jobs, fit_set, opts, settings, fit_sha256, engine or EngineSettings())
    else:
        outcomes = _in_process(jobs, fit_set, opts, settings, fit_sha256)
    if on_progress is not None and jobs:
        on_progress(PROGRESS_STAGE, 0, len(jobs))
    for done, (job, outcome) in enumerate(outcomes, start=1):
        if isinstance(outcome, BaseException):
            _fail(report, job.k, job.ms, _error_line(outcome), on_line)
        else:
            try:
                _save(job, outcome.stats)
                reused = {n: det.load_stats(job.folder / f"{n}.npz") for n in settings.names if n not in job.why}
            except (OSError, ValueError, KeyError) as exc:
                _fail(report, job.k, job.ms, _error_line(exc), on_line)
            else:
                job.found.update(outcome.stats)
                job.found.update(reused)
                if outcome.node:
                    report.nodes[job.k] = outcome.node
                _done(report, job, settings.names, on_line, hold)
        if on_progress is not None:
            on_progress(PROGRESS_STAGE, done, len(jobs))
    return report


def _fail(report: FitReport, k: int, ms: ModelSpec, error: str, on_line: Callable[[str], None]) -> None:
    report.errors[k] = error
    on_line(f"detectors: {ms.model_id} failed: {error}")


def _done(
    report: FitReport, job: _Job, names: tuple[str, ...], on_line: Callable[[str], None],
    hold: Callable[[dict[str, Any]], Any],
) -> None:
    """Report ``job``'s statistics: ``hold`` (ray.put on a cluster) keeps them, and the job lets go of its copy."""
    for name in names:
        verb = f"fitted ({job.why[name]})" if name in job.why else "reused"
        report.lines.append(f"detectors: {job.ms.model_id} {name} {verb}")
        on_line(report.lines[-1])
    report.stats[job.k] = hold({name: job.found[name] for name in names})
    job.found.clear()


def _save(job: _Job, stats: dict[str, Any]) -> None:
    """Save each fitted statistics object (atomic) with the identity it was fitted under."""
    job.folder.mkdir(parents=True, exist_ok=True)
    for name, value in stats.items():
        det.save_stats(job.folder / f"{name}.npz", value)
        atomic_write_text(job.folder / f"{name}.json", json.dumps(job.expected[name], sort_keys=True, indent=1) + "\n")


__all__ = [
    "DEFAULT_FEATURE_BUDGET_BYTES", "DetectorSettings", "FitReport", "ModelFit", "check_disjoint", "file_identities",
    "fit_all", "fit_concurrency", "fit_features", "fit_model", "fit_set_sha256", "sample_fit_set", "stats_dir",
    "stats_identity",
]
