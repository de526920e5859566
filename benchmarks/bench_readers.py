"""Benchmark of the dataset readers (issue 15): indexing a folder of per-synset tars against listing the same
images extracted.

One small generated JPEG (1 or 2 per class) is written for each of ``--classes`` synsets (default 18,838, the
C-OOD class pool: one tar per class as in the ImageNet-21k per-synset downloads) twice: extracted as
``ext/<wnid>/<wnid>_<k>.JPEG`` and archived as ``tar/<wnid>.tar``. Timed (best of ``--repeats``, warm page
cache, index cache off):

- baseline: ``load_folder`` over the extracted folder (scan every class folder: what a run does today);
- ours: ``archives.build_index("tar", ...)`` over the tars without a cache (stat every tar and read its headers:
  what the first run over the tars does), and the whole ``load_dataset`` over the tars with the index cached in
  a workspace (what every later run does).

Target: indexing ≤ 2 × listing. Usage: python benchmarks/bench_readers.py [--classes N] [--repeats R]
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from timing import best_time, print_table  # benchmarks/timing.py (the script folder is on sys.path)

from cood.pool import ood_class_pool
from pipelines.data import archives
from pipelines.data.datasets import load_dataset, load_folder


def _jpegs(count: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=80)
        out.append(buffer.getvalue())
    return out


def write_images(root: Path, wnids: list[str]) -> int:
    """Write ``root/ext/<wnid>/…`` and ``root/tar/<wnid>.tar`` (1 or 2 images per class); returns the image count."""
    jpegs = _jpegs(16)
    (root / "tar").mkdir(parents=True)
    total = 0
    for c, wnid in enumerate(wnids):
        folder = root / "ext" / wnid
        folder.mkdir(parents=True)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for k in range(1 + c % 2):
                name, data = f"{wnid}_{k}.JPEG", jpegs[(c + k) % len(jpegs)]
                (folder / name).write_bytes(data)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                total += 1
        (root / "tar" / f"{wnid}.tar").write_bytes(buffer.getvalue())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=18_838)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    wnids = sorted(ood_class_pool().wnids)[: args.classes]
    work = Path(tempfile.mkdtemp(prefix="uebench-readers-"))
    try:
        start = time.perf_counter()
        images = write_images(work, wnids)
        print(f"wrote {images:,} images of {len(wnids):,} classes, extracted and as tars, in "
              f"{time.perf_counter() - start:.1f} s")
        listed = load_folder("ext", work / "ext", "ood")
        indexed = load_dataset("tar", work / "tar", "ood")
        assert listed.sample_ids == indexed.sample_ids and listed.labels == indexed.labels
        listing = best_time(lambda: load_folder("ext", work / "ext", "ood"), args.repeats)
        index = best_time(lambda: archives.build_index("tar", str(work / "tar"), None), args.repeats)
        first = best_time(lambda: load_dataset("tar", work / "tar", "ood"), args.repeats)
        load_dataset("tar", work / "tar", "ood", workspace=work / "ws")  # builds the cache
        cached = best_time(lambda: load_dataset("tar", work / "tar", "ood", workspace=work / "ws"), args.repeats)
        print_table([
            ("index per-synset tars (no cache) vs list extracted", images, index, listing, "≤ 2× listing"),
            ("load_dataset over tars (no cache) vs list extracted", images, first, listing, "–"),
            ("load_dataset over tars (cached index) vs list extracted", images, cached, listing, "–"),
        ])
        print(f"indexing / listing = {index / listing:.2f} (target ≤ 2)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
