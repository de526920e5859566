"""Generated ImageNet-shaped data for the scale benchmark (``benchmarks/bench_scale.py``): small JPEGs, real layout.

Writes ``ROOT/val/<wnid>/<n>.JPEG`` for all 1,000 ImageNet-1k wnids (an ImageNet-val-style ID set) and
``ROOT/in21k/<wnid>/<n>.JPEG`` for all 18,838 wnids of the C-OOD class pool (an ImageNet-21k-style OOD set). Each
image is ``size``..``size + 16`` pixels a side (a third of them non-square): a diagonal gradient between two
class-seeded colours, a per-image colour shift, a bright rectangle and pixel noise, encoded with PIL at quality 85
(≈ 1–2 KB a file). Every image is a distinct valid JPEG; the same parameters give byte-identical files.

Generation runs in 2 processes, one class at a time, and is idempotent: ``ROOT/scale_data.json`` records the
parameters and counts of a complete set; a rerun with the same parameters returns that record at once, with other
parameters it deletes the folders it made and starts again.

    python benchmarks/scale_data.py ROOT --id-per-class 4 --ood-per-class 2 [--size 48] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as `python benchmarks/scale_data.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAMP = "scale_data.json"
PARTIAL = "scale_data.partial.json"
FORMAT_VERSION = 1
SPLITS = ("val", "in21k")  # ID, OOD
JPEG_QUALITY = 85


def _class_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB colours of a class, float32 in [0, 255]: a saturated one and its darker/lighter partner."""
    a = rng.uniform(30, 225, size=3).astype(np.float32)
    b = np.clip(255 - a + rng.uniform(-60, 60, size=3), 0, 255).astype(np.float32)
    return a, b


def _image(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """One ``(H, W, 3) uint8`` picture with H, W in [size, size + 16]: gradient a→b, colour shift, block, noise."""
    from_side = int(rng.integers(size, size + 17))
    if rng.random() < 1 / 3:  # non-square, either orientation
        h, w = from_side, int(rng.integers(size, size + 17))
    else:
        h = w = from_side
    t = (np.arange(h, dtype=np.float32)[:, None] / h + np.arange(w, dtype=np.float32)[None, :] / w) * 0.5
    direction = rng.random()
    if direction < 0.5:
        t = t[::-1] if direction < 0.25 else t[:, ::-1]
    shift = rng.normal(0, 12, size=3).astype(np.float32)
    img = a + t[..., None] * (b - a) + shift
    y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    img[y0 : y0 + h // 3, x0 : x0 + w // 3] += rng.uniform(-80, 80, size=3).astype(np.float32)
    img += rng.normal(0, 10, size=(h, w, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_class(job: tuple[str, str, int, int, int, int, int]) -> tuple[int, int]:
    """Write one class folder; ``job`` = (split folder, wnid, split index, class index, images, size, seed).

    Returns (files written, JPEG bytes written).
    """
    from PIL import Image

    folder, wnid, split_index, class_index, count, size, seed = job
    rng = np.random.default_rng([seed, split_index, class_index])
    a, b = _class_colours(rng)
    out = Path(folder) / wnid
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    buffer = io.BytesIO()
    for n in range(count):
        buffer.seek(0)
        buffer.truncate()
        Image.fromarray(_image(rng, a, b, size)).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        data = buffer.getvalue()
        with open(out / f"{n}.JPEG", "wb") as f:
            f.write(data)
        written += len(data)
    return count, written


def _class_lists() -> dict[str, tuple[str, ...]]:
    from cood.pool import ood_class_pool
    from pipelines.data.datasets import imagenet1k_wnids

    return {"val": tuple(imagenet1k_wnids()), "in21k": tuple(ood_class_pool().wnids)}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def generate(
    root: Path, *, id_per_class: int, ood_per_class: int, size: int = 48, seed: int = 0, workers: int = 2
) -> dict:
    """Generate (or reuse) the ID and OOD folders under ``root``; returns the stamp record.

    Record keys: ``params`` (the arguments), ``val`` / ``in21k`` (root folder, classes, images, JPEG bytes), ``images``,
    ``bytes`` (JPEG bytes written), ``seconds`` (wall time of the generation that made the set), ``images_per_s``,
    and ``reused`` (True when an existing set with the same parameters was returned without writing anything).
    Raises ValueError for non-positive counts, and FileExistsError when ``root/val`` or ``root/in21k`` exists
    without a stamp of this script (it never deletes folders it did not make).
    """
    if id_per_class < 1 or ood_per_class < 1 or size < 8:
        raise ValueError("id_per_class and ood_per_class must be ≥ 1 and size ≥ 8")
    root = Path(root)
    params = {"id_per_class": id_per_class, "ood_per_class": ood_per_class, "size": size, "seed": seed,
              "format": FORMAT_VERSION}
    stamp = _read_json(root / STAMP)
    if stamp is not None and stamp.get("params") == params:
        return _with_roots(stamp, root, reused=True)
    ours = stamp is not None or (root / PARTIAL).exists()
    for split in SPLITS:
        if (root / split).exists():
            if not ours:
                raise FileExistsError(f"{root / split} exists but was not made by scale_data.py ({STAMP} missing)")
            shutil.rmtree(root / split)
    (root / STAMP).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / PARTIAL).write_text(json.dumps({"params": params}))

    started = time.perf_counter()
    classes = _class_lists()
    per_class = {"val": id_per_class, "in21k": ood_per_class}
    jobs = [
        (str(root / split), wnid, s, c, per_class[split], size, seed)
        for s, split in enumerate(SPLITS)
        for c, wnid in enumerate(classes[split])
    ]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            counts = pool.map(_write_class, jobs, chunksize=64)
    else:
        counts = [_write_class(job) for job in jobs]
    seconds = time.perf_counter() - started

    record: dict = {"params": params}
    offset = 0
    for split in SPLITS:
        n_classes = len(classes[split])
        part = counts[offset : offset + n_classes]
        offset += n_classes
        record[split] = {"classes": n_classes, "images": sum(c for c, _ in part), "bytes": sum(b for _, b in part)}
    record["images"] = sum(record[s]["images"] for s in SPLITS)
    record["bytes"] = sum(record[s]["bytes"] for s in SPLITS)
    record["seconds"] = round(seconds, 3)
    record["images_per_s"] = round(record["images"] / seconds, 1)
    tmp = root / f".{STAMP}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, root / STAMP)
    (root / PARTIAL).unlink(missing_ok=True)
    return _with_roots(record, root, reused=False)


def _with_roots(record: dict, root: Path, *, reused: bool) -> dict:
    """The stamp record plus each split's absolute folder (``root`` as it is now: the set may have been moved)."""
    out = {**record, "reused": reused}
    for split in SPLITS:
        out[split] = {**record[split], "root": str((root / split).resolve())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--id-per-class", type=int, required=True, help="images per ImageNet-1k class")
    parser.add_argument("--ood-per-class", type=int, default=2, help="images per C-OOD pool class (18,838)")
    parser.add_argument("--size", type=int, default=48, help="smallest image side in pixels (largest: size + 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="generator processes")
    args = parser.parse_args()
    record = generate(args.root, id_per_class=args.id_per_class, ood_per_class=args.ood_per_class,
                      size=args.size, seed=args.seed, workers=args.workers)
    what = "reused" if record["reused"] else "generated"
    print(f"{what} {record['images']:,} images "
          f"({record['val']['images']:,} ID in {record['val']['classes']:,} classes, "
          f"{record['in21k']['images']:,} OOD in {record['in21k']['classes']:,} classes), "
          f"{record['bytes'] / 2**20:.1f} MiB of JPEG, in {record['seconds']:.1f} s "
          f"({record['images_per_s']:,.0f} images/s) under {args.root}")


if __name__ == "__main__":
    main()
