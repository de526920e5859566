"""Decode once: uint8 eval crops per (dataset, preprocessing signature, shard), memory-mapped from disk.

Every model whose :attr:`~pipelines.zoo.Preprocess.signature` matches reads the same crops, so an image is
decoded, resized and cropped once per signature rather than once per model; each model then normalises the
crops on its own device (pipelines.data.preprocess.normalise). Layout::

    <workspace>/cache/<dataset>/<signature>/shard-<k>.npy    (n_kept, S, S, 3) uint8, numpy .npy (mmap-able)
    <workspace>/cache/<dataset>/<signature>/shard-<k>.json   kept sample indices, bad files, decode count

The ``.json`` is written last, by rename, so its presence marks a complete entry; the cache is reused across
runs and a half-written entry is rebuilt. :func:`remove_entry` deletes an entry once every model that needed it
has written its output (the driver does this unless ``keep_decode_cache`` is set): at ImageNet-21k scale a
whole signature's cache would be hundreds of GB.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.data.datasets import ImageDataset
from pipelines.data.preprocess import decode
from pipelines.zoo import Preprocess


@dataclass
class CacheEntry:
    """A complete cache entry: where the crops are and which samples they hold.

    indices: dataset positions of the kept (decodable) samples, in order; bad_files: (sample_id, error) of the
    skipped ones; decoded: images decoded while building it (0 when the entry was reused).
    """

    array_path: str
    indices: list[int]
    bad_files: list[tuple[str, str]] = field(default_factory=list)
    decoded: int = 0
    seconds: float = 0.0

    def crops(self) -> np.ndarray:
        """``(n_kept, S, S, 3) uint8`` memory map of the crops (read-only)."""
        return np.load(self.array_path, mmap_mode="r")


def entry_paths(workspace: Path, dataset: str, pre: Preprocess, shard: int) -> tuple[Path, Path]:
    folder = Path(workspace) / "cache" / dataset / pre.signature
    return folder / f"shard-{shard:05d}.npy", folder / f"shard-{shard:05d}.json"


def remove_entry(workspace: Path, dataset: str, pre: Preprocess, shard: int) -> None:
    """Delete one entry (marker first, so a half-removed entry never looks complete); missing files are fine."""
    array_path, meta_path = entry_paths(workspace, dataset, pre, shard)
    meta_path.unlink(missing_ok=True)
    array_path.unlink(missing_ok=True)


def load_entry(workspace: Path, dataset: str, pre: Preprocess, shard: int) -> CacheEntry | None:
    """The complete entry for (dataset, signature, shard), or None when it is missing or unreadable."""
    array_path, meta_path = entry_paths(workspace, dataset, pre, shard)
    try:
        meta = json.loads(meta_path.read_text())
        crops = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if crops.shape != (len(meta["indices"]), pre.input_size, pre.input_size, 3) or crops.dtype != np.uint8:
        return None
    return CacheEntry(str(array_path), meta["indices"], [tuple(b) for b in meta["bad_files"]])


def build_entry(
    workspace: Path, dataset: ImageDataset, pre: Preprocess, shard: int, indices: np.ndarray
) -> CacheEntry:
    """Decode the given dataset positions into the cache (or reuse a complete entry); returns the entry."""
    import time

    existing = load_entry(workspace, dataset.name, pre, shard)
    if existing is not None:
        return existing
    started = time.perf_counter()
    array_path, meta_path = entry_paths(workspace, dataset.name, pre, shard)
    array_path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    tmp_array = array_path.with_name(f".{array_path.name}.{token}.tmp.npy")
    tmp_meta = meta_path.with_name(f".{meta_path.name}.{token}.tmp")
    size = pre.input_size
    kept: list[int] = []
    bad: list[tuple[str, str]] = []
    try:
        buffer = np.lib.format.open_memmap(tmp_array, mode="w+", dtype=np.uint8, shape=(len(indices), size, size, 3))
        for i in indices:
            try:
                buffer[len(kept)] = decode(dataset.path(int(i)), pre)
                kept.append(int(i))
            except (OSError, ValueError, SyntaxError) as exc:  # PIL raises all three for broken files
                bad.append((dataset.sample_ids[int(i)], f"{type(exc).__name__}: {exc}"))
        buffer.flush()
        del buffer
        if len(kept) < len(indices):  # rewrite compactly without the holes left by bad files
            compact = np.load(tmp_array, mmap_mode="r")[: len(kept)].copy()
            np.save(tmp_array, compact)
        os.replace(tmp_array, array_path)
        tmp_meta.write_text(json.dumps({"indices": kept, "bad_files": bad, "signature": pre.signature}))
        os.replace(tmp_meta, meta_path)
    finally:
        tmp_array.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)
    return CacheEntry(str(array_path), kept, bad, decoded=len(indices), seconds=time.perf_counter() - started)
