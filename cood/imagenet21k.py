"""ImageNet-21k OOD images: per-class sampling, the estimation/test split and its manifest (cood.md §1).

Layout read: ``<root>/<wnid>/<image>`` where ``wnid`` is ``n`` followed by 8 digits and images are files
with an image extension (case-insensitive). Procedure, per class, independent of every other class:

1. list the class's image file names and sort them lexicographically (by code point);
2. keep the class only if it has at least ``min_images`` images;
3. ``rng = np.random.default_rng(SeedSequence([seed, crc32(wnid)]))``; ``p = rng.permutation(n_files)``;
   the files at ``p[:per_class]`` are sampled, the first ``n_estimation`` of those are *estimation* images
   and the rest *test* images (each role is listed in file-name order).

Adding or removing classes, or the order in which the file system lists files, never changes the sample
or split of another class. Class indices follow the sorted wnids of the kept classes.

The manifest is a CSV file (``wnid,class_index,path,role``; ``path`` relative to the root with ``/``) and a
JSON sidecar with the same stem holding the seed, the parameters, the pool version, the class-list hash and
the CSV's SHA-256. Both are written atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from common import IMAGE_EXTENSIONS, WNID_PATTERN, atomic_write_bytes

MANIFEST_COLUMNS = ("wnid", "class_index", "path", "role")
MANIFEST_FORMAT = "uebench-ood-split/1"
ROLES = ("estimation", "test")


@dataclass(frozen=True, eq=False)
class SplitManifest:
    """The sampled OOD images and their estimation/test roles.

    wnids: class index -> wnid (sorted wnids of the kept classes).
    paths: (M,) image paths relative to the dataset root, ``<wnid>/<file name>``.
    class_index: (M,) int64 index into ``wnids``; is_estimation: (M,) bool (False = test image).
    seed, per_class, n_estimation, min_images: the sampling parameters; pool_version: the class pool's
    version string (None when no pool was given).
    """

    wnids: tuple[str, ...]
    paths: tuple[str, ...]
    class_index: np.ndarray
    is_estimation: np.ndarray
    seed: int
    per_class: int
    n_estimation: int
    min_images: int
    pool_version: str | None = None

    @property
    def roles(self) -> np.ndarray:
        """(M,) str ``'estimation'`` or ``'test'``."""
        return np.where(self.is_estimation, "estimation", "test")

    @property
    def class_list_sha256(self) -> str:
        """SHA-256 of the class list (wnids in class-index order, one per line)."""
        return hashlib.sha256("".join(f"{w}\n" for w in self.wnids).encode("ascii")).hexdigest()

    def csv_bytes(self) -> bytes:
        """The manifest CSV exactly as written to disk (``\\n`` line ends, UTF-8)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        roles = self.roles
        for i, path in enumerate(self.paths):
            index = int(self.class_index[i])
            writer.writerow((self.wnids[index], index, path, roles[i]))
        return buffer.getvalue().encode("utf-8")

    @cached_property
    def sha256(self) -> str:
        """SHA-256 of :meth:`csv_bytes`: the manifest hash recorded with every benchmark."""
        return hashlib.sha256(self.csv_bytes()).hexdigest()

    def header(self, csv_sha256: str | None = None) -> dict[str, object]:
        """The JSON sidecar's content (``csv_sha256``: the CSV's hash when already known)."""
        return {
            "format": MANIFEST_FORMAT,
            "seed": self.seed,
            "per_class": self.per_class,
            "n_estimation": self.n_estimation,
            "n_test": self.per_class - self.n_estimation,
            "min_images": self.min_images,
            "pool_version": self.pool_version,
            "num_classes": len(self.wnids),
            "num_samples": len(self.paths),
            "class_list_sha256": self.class_list_sha256,
            "csv_sha256": csv_sha256 if csv_sha256 is not None else self.sha256,
            "procedure": "sorted file names; rng = numpy default_rng(SeedSequence([seed, crc32(wnid)])); "
            "p = rng.permutation(n_files); p[:per_class] sampled, its first n_estimation are estimation",
        }


def list_class_images(root: str | os.PathLike[str], pool_wnids: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Image file names of each wnid folder under ``root``, sorted: ``{wnid: [file name, ...]}``.

    Only folders named like a wnid are read; with ``pool_wnids`` only those classes. Raises ValueError when
    ``root`` is not a directory or holds no wnid folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"OOD dataset root {root} is not a directory")
    entries = list(os.scandir(root))
    folders = sorted(e.name for e in entries if e.is_dir() and WNID_PATTERN.fullmatch(e.name))
    if not folders:
        raise ValueError(
            f"no wnid folders under {root} (found {len(entries)} entries); "
            "need one folder per class named like n01440764 holding its images"
        )
    if pool_wnids is not None:
        wanted = set(pool_wnids)
        folders = [w for w in folders if w in wanted]
    images: dict[str, list[str]] = {}
    for wnid in folders:
        with os.scandir(root / wnid) as files:
            names = [f.name for f in files if f.is_file() and os.path.splitext(f.name)[1].lower() in IMAGE_EXTENSIONS]
        images[wnid] = sorted(names)
    return images


def sample_class(
    wnid: str, file_names: list[str], seed: int, per_class: int, n_estimation: int
) -> tuple[list[str], list[str]]:
    """Sample one class: ``(estimation file names, test file names)``, each in sorted order.

    file_names: the class's image file names (any order; they are sorted first). Needs at least
    ``per_class`` files.
    """
    names = sorted(file_names)
    if len(names) < per_class:
        raise ValueError(f"class {wnid} has {len(names)} images, need at least per_class={per_class}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(wnid.encode("ascii"))]))
    chosen = rng.permutation(len(names))[:per_class]
    estimation = [names[i] for i in np.sort(chosen[:n_estimation])]
    test = [names[i] for i in np.sort(chosen[n_estimation:])]
    return estimation, test


def _check_params(seed: int, per_class: int, n_estimation: int, min_images: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if per_class < 2:
        raise ValueError(f"per_class must be >= 2, got {per_class}")
    if not 1 <= n_estimation < per_class:
        raise ValueError(f"n_estimation must be in [1, per_class={per_class}), got {n_estimation}")
    if min_images < per_class:
        raise ValueError(f"min_images must be >= per_class={per_class}, got {min_images}")


def build_split(
    root: str | os.PathLike[str],
    seed: int,
    *,
    pool_wnids: Iterable[str] | None = None,
    pool_version: str | None = None,
    per_class: int = 200,
    n_estimation: int = 150,
    min_images: int = 200,
    min_classes: int = 1,
) -> SplitManifest:
    """Scan ``root``, keep the pool classes with >= ``min_images`` images and sample/split each one.

    pool_wnids: the OOD class pool (e.g. ``ood_class_pool().wnids``); None = every wnid folder.
    min_classes: the number of eligible classes required (the benchmark needs at least its window).
    Raises ValueError (one line, what was found and what is needed) on a bad root or too few classes.
    """
    _check_params(seed, per_class, n_estimation, min_images)
    images = list_class_images(root, pool_wnids)
    return split_from_listing(
        images, seed, pool_wnids=pool_wnids, pool_version=pool_version, per_class=per_class,
        n_estimation=n_estimation, min_images=min_images, min_classes=min_classes, where=str(root),
    )


def split_from_listing(
    images: dict[str, list[str]],
    seed: int,
    *,
    pool_wnids: Iterable[str] | None = None,
    pool_version: str | None = None,
    per_class: int = 200,
    n_estimation: int = 150,
    min_images: int = 200,
    min_classes: int = 1,
    where: str = "the dataset",
) -> SplitManifest:
    """:func:`build_split` over a listing instead of a folder: ``images`` maps each wnid to its image file names
    (any order), e.g. the members of an archive; only wnids matching the wnid pattern (and in ``pool_wnids`` when
    given) are kept. The same names give the same manifest as the extracted folder, whatever held them.
    """
    _check_params(seed, per_class, n_estimation, min_images)
    wanted = set(pool_wnids) if pool_wnids is not None else None
    images = {
        w: names for w, names in sorted(images.items())
        if WNID_PATTERN.fullmatch(w) and (wanted is None or w in wanted)
    }
    eligible = [w for w, names in images.items() if len(names) >= min_images]
    if len(eligible) < min_classes:
        scope = "pool classes" if pool_wnids is not None else "wnid folders"
        raise ValueError(
            f"only {len(eligible)} of {len(images)} {scope} under {where} have >= {min_images} images; "
            f"need at least {min_classes} classes"
        )
    paths: list[str] = []
    class_index: list[np.ndarray] = []
    is_estimation: list[np.ndarray] = []
    for index, wnid in enumerate(eligible):
        estimation, test = sample_class(wnid, images[wnid], seed, per_class, n_estimation)
        paths.extend(f"{wnid}/{name}" for name in estimation + test)
        class_index.append(np.full(per_class, index, dtype=np.int64))
        is_estimation.append(np.arange(per_class) < n_estimation)
    return SplitManifest(
        wnids=tuple(eligible),
        paths=tuple(paths),
        class_index=np.concatenate(class_index) if class_index else np.zeros(0, np.int64),
        is_estimation=np.concatenate(is_estimation) if is_estimation else np.zeros(0, bool),
        seed=int(seed),
        per_class=per_class,
        n_estimation=n_estimation,
        min_images=min_images,
        pool_version=pool_version,
    )


def sidecar_path(csv_path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a manifest CSV: same folder and stem, ``.json`` suffix."""
    return Path(csv_path).with_suffix(".json")


def write_manifest(manifest: SplitManifest, path: str | os.PathLike[str]) -> str:
    """Write the manifest CSV to ``path`` (``.csv``) and its JSON sidecar; returns the CSV's SHA-256."""
    path = Path(path)
    if path.suffix != ".csv":
        raise ValueError(f"manifest path must end in .csv, got {path}")
    data = manifest.csv_bytes()
    digest = hashlib.sha256(data).hexdigest()
    header = manifest.header(digest)
    atomic_write_bytes(path, data)
    atomic_write_bytes(sidecar_path(path), (json.dumps(header, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return digest


def read_manifest(path: str | os.PathLike[str]) -> SplitManifest:
    """Load a manifest written by :func:`write_manifest` (``path``: the CSV, or its folder).

    Verifies the CSV's SHA-256 against the sidecar and the wnid/class-index consistency; raises ValueError
    naming the problem otherwise, FileNotFoundError when a file is missing.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    side = sidecar_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OOD split manifest {path} does not exist")
    if not side.is_file():
        raise FileNotFoundError(f"manifest sidecar {side} does not exist (written next to the CSV)")
    data = path.read_bytes()
    header = json.loads(side.read_text(encoding="utf-8"))
    if header.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{side} is not a {MANIFEST_FORMAT} manifest header (format {header.get('format')!r})")
    digest = hashlib.sha256(data).hexdigest()
    if digest != header["csv_sha256"]:
        raise ValueError(f"{path} has SHA-256 {digest}, but its sidecar records {header['csv_sha256']}")
    rows = csv.reader(io.StringIO(data.decode("utf-8")))
    columns = tuple(next(rows, ()))
    if columns != MANIFEST_COLUMNS:
        raise ValueError(f"{path} must have columns {','.join(MANIFEST_COLUMNS)}, found {','.join(columns)}")
    records = list(rows)
    wnid_col = np.array([r[0] for r in records])
    class_index = np.array([int(r[1]) for r in records], dtype=np.int64)
    role_col = np.array([r[3] for r in records])
    bad_roles = set(np.unique(role_col).tolist()) - set(ROLES)
    if bad_roles:
        raise ValueError(f"{path} has roles {sorted(bad_roles)}; allowed: {', '.join(ROLES)}")
    num_classes = int(header["num_classes"])
    indices, first = np.unique(class_index, return_index=True)
    if not np.array_equal(indices, np.arange(num_classes)):
        raise ValueError(f"{path}: class indices must be 0..{num_classes - 1}, each with at least one image")
    wnids = wnid_col[first]
    if np.unique(wnids).size != num_classes or not np.array_equal(wnids[class_index], wnid_col):
        raise ValueError(f"{path}: each class index must map to exactly one wnid and vice versa")
    return SplitManifest(
        wnids=tuple(wnids.tolist()),
        paths=tuple(r[2] for r in records),
        class_index=class_index,
        is_estimation=role_col == "estimation",
        seed=int(header["seed"]),
        per_class=int(header["per_class"]),
        n_estimation=int(header["n_estimation"]),
        min_images=int(header["min_images"]),
        pool_version=header.get("pool_version"),
    )
