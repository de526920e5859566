"""The detectors' fit phase: statistics of every model on the ID fit set, fitted before the main pipeline.

A run with ``[detectors]`` (pipelines.engine.run_config) first fits, for each model, every configured detector of
:mod:`cood.detectors` on the *fit set* (a dataset of role ``fit``: ImageNet-1k labelled images, optionally a
seeded per-class sample of it), then hands the statistics to the model actors, which score each detector as one
more κ column ``det_<name>`` from the same forward pass as the logits (pipelines.engine.stream).

The fit phase runs **in the driver process**, through the same model loading (pipelines.engine.inference.load_model),
decode (pipelines.engine.stream.decode_block) and feature code (pipelines.zoo.features) as the actors, model after
model: one model's fit-set features ``(n_fit, D) float32`` (plus its labels) are held while its detectors are
fitted, then freed, so the peak feature memory is one model's, whatever the number of models; it must fit in
``feature_budget_bytes`` (checked after the first batch, one-line error otherwise). Each model decodes the fit set
again (one signature's crops are never kept across models).

Statistics are stored as ``<workspace>/detectors/<model_id>/<name>.npz`` (cood.detectors.save_stats, atomic) next
to ``<name>.json``, the identity they were fitted under: the model's weights identity
(pipelines.engine.identity.weights_identity), its preprocessing, the fit set's fingerprint and the detector's
hyper-parameters. A rerun reuses them only when that identity matches, else refits and says why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common import atomic_write_text
from cood import detectors as det
from pipelines.data.datasets import ImageDataset
from pipelines.engine.identity import sample_stamps, weights_identity
from pipelines.engine.inference import InferenceOptions
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
    """What the fit phase did: ``stats`` model index -> {detector name: fitted statistics}; ``errors`` model index
    -> one-line error (the model is failed for the run); ``lines`` what was fitted, reused or refitted and why."""

    stats: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


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


def fit_all(
    models: list[ModelSpec], fit_set: ImageDataset, workspace: Path, opts: InferenceOptions,
    settings: DetectorSettings, fit_sha256: str, on_line: Callable[[str], None] = lambda line: None,
) -> FitReport:
    """Fitted statistics of every detector in ``settings.names`` for every model (reused when stored under the
    same identity, else fitted now and saved); a model whose features cannot be read or whose detector cannot be
    fitted (e.g. ViM on a model without a linear head) is reported in ``errors``, the others go on."""
    report = FitReport()
    needs_logits = any("logits" in det.detector(n).needs and det.detector(n).fits_on_data for n in settings.names)
    for k, ms in enumerate(models):
        try:
            weights = weights_identity(ms)
        except Exception as exc:  # e.g. a weights package that is not installed
            report.errors[k] = "detectors: " + " ".join(f"{type(exc).__name__}: {exc}".split())
            on_line(f"detectors: {ms.model_id} failed: {report.errors[k]}")
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
        if why:
            try:
                found.update(_fit_model(ms, fit_set, opts, settings, fit_sha256, sorted(why), needs_logits, folder,
                                        expected))
            except Exception as exc:
                message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                report.errors[k] = "detectors: " + " ".join(message.split())
                on_line(f"detectors: {ms.model_id} failed: {report.errors[k]}")
                continue
        for name in settings.names:
            verb = f"fitted ({why[name]})" if name in why else "reused"
            report.lines.append(f"detectors: {ms.model_id} {name} {verb}")
            on_line(report.lines[-1])
        report.stats[k] = {name: found[name] for name in settings.names}
    return report


def _fit_model(
    ms: ModelSpec, fit_set: ImageDataset, opts: InferenceOptions, settings: DetectorSettings, fit_sha256: str,
    names: list[str], needs_logits: bool, folder: Path, expected: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Fit ``names`` for one model and save each with its identity; the features are freed on return."""
    need_data = any(det.detector(n).fits_on_data or "head" in det.detector(n).needs for n in names)
    features = labels = logits = head = None
    if need_data:
        features, labels, logits, head, _ = fit_features(
            ms, fit_set, opts, settings.feature_budget_bytes, needs_logits
        )
    inputs = det.DetectorInputs(features=features, logits=logits, labels=labels)
    fitted: dict[str, Any] = {}
    for name in names:
        d = det.detector(name)
        if "head" in d.needs and head is None:
            raise UserError(f"{name} needs the model's final linear layer, and {ms.model_id} has none")
        stats = d.fit(inputs, head, fit_set_sha256=fit_sha256, **settings.params.get(name, {}))
        folder.mkdir(parents=True, exist_ok=True)
        det.save_stats(folder / f"{name}.npz", stats)
        atomic_write_text(folder / f"{name}.json", json.dumps(expected[name], sort_keys=True, indent=1) + "\n")
        fitted[name] = stats
    return fitted


__all__ = [
    "DEFAULT_FEATURE_BUDGET_BYTES", "DetectorSettings", "FitReport", "check_disjoint", "file_identities",
    "fit_all", "fit_features", "fit_set_sha256", "sample_fit_set", "stats_dir", "stats_identity",
]
