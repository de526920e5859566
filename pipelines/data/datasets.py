"""Image datasets with stable sample ids, whatever holds the images (docs/datasets.md).

A dataset is a folder ``<root>/<wnid>/<image>`` (or the flat val layout with a ground-truth file), or images kept
in containers — per-synset tars, a tar of tars, WebDataset shards, Parquet shards (pipelines.data.archives) —
locally or under an object-store URI (pipelines.data.storage). ``sample_id`` is ``<wnid>/<file name>``: the image
path relative to the root of the extracted folder (POSIX separators), whatever the container, so outputs from
different machines, runs and containers join on it and the C-OOD split does not depend on the container. ID
datasets label each image with its ImageNet-1k index (timm's sorted-wnid order); OOD datasets label it with the
index of its class in the sorted list of the dataset's wnids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from common import IMAGE_EXTENSIONS, WNID_PATTERN
from pipelines.data import archives, storage
from pipelines.errors import UserError


@lru_cache(maxsize=1)
def imagenet1k_wnids() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k wnids in timm's class-index order (sorted wnids)."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


@dataclass(frozen=True, eq=False)
class Locators:
    """Where each sample's bytes are, for a dataset not read as local image files (containers or an object store).

    format: ``folder`` (one object per image under a URI), ``tar``, ``tars``, ``wds`` or ``parquet``
    (pipelines.data.archives); base: the folder (or file) container names are relative to, a path or URI;
    containers: (F,) :class:`~pipelines.data.archives.Container` with its size and mtime when indexed; per sample,
    in dataset order: ``file`` (N,) int32 container position, ``start``/``length`` (N,) int64 the locator within
    it — tar formats: byte offset and size of the member's data; Parquet: row index in the file and -1; folder:
    0 and -1 (the whole object).
    """

    format: str
    base: str
    containers: tuple[archives.Container, ...]
    file: np.ndarray
    start: np.ndarray
    length: np.ndarray

    def location(self, f: int) -> str:
        """Full path or URI of container ``f``."""
        return storage.join(self.base, self.containers[f].name)

    def take(self, order: np.ndarray) -> Locators:
        """The locators of samples ``order`` (positions), in that order."""
        return Locators(self.format, self.base, self.containers, self.file[order], self.start[order],
                        self.length[order])

    def stamps(self) -> list[str]:
        """Per sample, what identifies its bytes without reading them (pipelines.engine.identity): one object per
        image -> ``size, mtime_ns`` (as for local files); a container member -> ``length, container mtime_ns,
        start, container size, container name``, so a changed container changes every sample in it."""
        stats = [(c.size, c.mtime_ns, c.name) for c in self.containers]
        if self.format == "folder":
            return [f"{stats[f][0]}\t{stats[f][1]}" for f in self.file.tolist()]
        return [
            f"{n}\t{stats[f][1]}\t{s}\t{stats[f][0]}\t{stats[f][2]}"
            for f, s, n in zip(self.file.tolist(), self.start.tolist(), self.length.tolist(), strict=True)
        ]


@dataclass(frozen=True)
class ImageDataset:
    """A named image dataset: sample ids, integer labels and where each image is, sorted by sample id.

    kind: "id" (labels index ImageNet-1k) or "ood" (labels index ``class_wnids``). root: the local folder, or
    the root as given (an archive, a glob of shards, a URI). locators: None for local image files (``path``),
    else where each sample's bytes are (:class:`Locators`).
    """

    name: str
    root: Path | str
    kind: str
    sample_ids: tuple[str, ...]
    labels: tuple[int, ...]
    class_wnids: tuple[str, ...]
    locators: Locators | None = None

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def format(self) -> str:
        """``folder`` for local image files (folder or flat layout), else the locators' format."""
        return self.locators.format if self.locators is not None else "folder"

    def path(self, i: int) -> Path:
        """The local file of sample ``i`` (local image files only)."""
        if self.locators is not None:
            raise ValueError(f"dataset {self.name} is read from {self.format} containers, not local files")
        return Path(self.root) / self.sample_ids[i]


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and WNID_PATTERN.fullmatch(p.name))
    if not folders:
        raise UserError(f"dataset folder {root} has no <wnid>/ class folders (expected e.g. {root}/n01440764/)")
    return folders


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _read_ground_truth(path: Path) -> dict[str, str]:
    """``file -> wnid`` from a flat-layout ground-truth file.

    Accepted formats: Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString`` whose first token is the
    wnid), or whitespace/comma separated ``<file> <wnid>`` or ``<file> <class index>`` lines (timm order).
    """
    if not path.is_file():
        raise UserError(f"ground-truth file {path} does not exist")
    mapping: dict[str, str] = {}
    wnids = imagenet1k_wnids()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields or fields[0].lower() in {"imageid", "file", "filename"}:
            continue
        if len(fields) < 2:
            raise UserError(f"{path}:{number}: expected '<file> <wnid or class index>', got {line!r}")
        stem, value = Path(fields[0]).stem, fields[1]
        if value.isdigit():
            index = int(value)
            if not 0 <= index < len(wnids):
                raise UserError(f"{path}:{number}: class index {index} outside 0..{len(wnids) - 1}")
            value = wnids[index]
        mapping[stem] = value
    if not mapping:
        raise UserError(f"ground-truth file {path} has no entries")
    return mapping


def load_flat(name: str, root: Path, ground_truth: Path) -> ImageDataset:
    """ImageNet-1k val in the flat layout (all images in ``root``) with a ground-truth file.

    Every image must have a label and every label an ImageNet-1k wnid; UserError otherwise.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist")
    truth = _read_ground_truth(Path(ground_truth))
    index = {w: i for i, w in enumerate(imagenet1k_wnids())}
    images = _images(root)
    if not images:
        raise UserError(f"dataset folder {root} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    missing = [p.name for p in images if p.stem not in truth]
    if missing:
        raise UserError(f"{len(missing)} images of {root} have no label in {ground_truth} (e.g. {missing[0]})")
    unknown = sorted({truth[p.stem] for p in images} - set(index))
    if unknown:
        raise UserError(f"{ground_truth} names {len(unknown)} wnids that are not ImageNet-1k (e.g. {unknown[0]})")
    return ImageDataset(
        name, root, "id", tuple(p.name for p in images), tuple(index[truth[p.stem]] for p in images),
        imagenet1k_wnids(),
    )


def load_folder(name: str, root: Path, kind: str) -> ImageDataset:
    """Scan ``root/<wnid>/<image>``; ``kind`` "id" maps wnids to ImageNet-1k indices, "ood" to sorted positions.

    Raises UserError for a missing folder, no wnid folders, or (kind "id") wnids outside ImageNet-1k.
    """
    root = Path(root).resolve()
    folders = _class_folders(root)
    wnids = [f.name for f in folders]
    if kind == "id":
        index = {w: i for i, w in enumerate(imagenet1k_wnids())}
        unknown = [w for w in wnids if w not in index]
        if unknown:
            raise UserError(
                f"{len(unknown)} class folders of {root} are not ImageNet-1k wnids (e.g. {unknown[0]}); "
                "pass OOD folders as kind 'ood'"
            )
        class_wnids = imagenet1k_wnids()
    elif kind == "ood":
        index = {w: i for i, w in enumerate(wnids)}
        class_wnids = tuple(wnids)
    else:
        raise UserError(f"dataset kind must be 'id' or 'ood', got {kind!r}")
    sample_ids: list[str] = []
    labels: list[int] = []
    for folder in folders:
        for image in _images(folder):
            sample_ids.append(image.relative_to(root).as_posix())
            labels.append(index[folder.name])
    if not sample_ids:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise UserError(f"dataset folder {root} has class folders but no images ({extensions})")
    return ImageDataset(name, root, kind, tuple(sample_ids), tuple(labels), class_wnids)


def read_class_list(path: Path) -> tuple[str, ...]:
    """Class index -> wnid from a text file with one wnid per line (line k is class k; blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"class list {path} does not exist")
    wnids = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    bad = [w for w in wnids if not WNID_PATTERN.fullmatch(w)]
    if bad or not wnids:
        raise UserError(f"class list {path} must hold one wnid per line (e.g. n01440764), found {bad[:1] or 'none'}")
    return wnids


def _local_root(root: Path | str) -> Path | str:
    return root if storage.is_uri(root) else Path(root).expanduser().resolve()


def resolve_format(root: Path | str, fmt: str | None) -> str:
    """``fmt`` when given (UserError unless one of ``archives.FORMATS``), else detected from the root's content."""
    if fmt is not None:
        if fmt not in archives.FORMATS:
            raise UserError(f"unknown dataset format {fmt!r}; known: {', '.join(archives.FORMATS)}")
        return fmt
    try:
        return archives.detect_format(str(root))
    except archives.ArchiveError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot read dataset root {root}: {' '.join(str(exc).split())}") from None


def load_dataset(
    name: str, root: Path | str, kind: str, *, workspace: Path | None = None, format: str | None = None,
    classes: Path | None = None,
) -> ImageDataset:
    """Any supported dataset (module docstring): local ``<wnid>/`` folders through :func:`load_folder`, everything
    else through its index (built once and cached under ``workspace`` when given).

    ``classes``: a class list (:func:`read_class_list`) for integer labels of an OOD set; integer labels of an ID
    set index ImageNet-1k in timm's order. UserError (one line) for a missing root, an unknown format, a container
    that cannot be indexed, a sample without a label, a label outside the class list, an invalid wnid, or a
    duplicate sample id.
    """
    if kind not in ("id", "ood"):
        raise UserError(f"dataset kind must be 'id' or 'ood', got {kind!r}")
    root = _local_root(root)
    fmt = resolve_format(root, format)
    if fmt == "folder" and not storage.is_uri(root):
        return load_folder(name, Path(root), kind)
    return _load_located(name, str(root), kind, fmt, workspace, read_class_list(classes) if classes else None)


def _object_listing(root: str) -> tuple[str, archives.Index]:
    """The ``<wnid>/<image>`` objects under a URI as an index (one container per image)."""
    try:
        entries = storage.list_files_recursive(root)
    except OSError as exc:
        raise UserError(f"cannot list {root}: {' '.join(str(exc).split())}") from None
    keep = [
        e for e in entries
        if e.name.count("/") == 1 and WNID_PATTERN.fullmatch(e.name.partition("/")[0])
        and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
    ]
    containers = tuple(archives.Container(e.name, e.size, e.mtime_ns) for e in keep)
    n = len(keep)
    index = archives.Index(
        containers, np.arange(n, dtype=np.int32), tuple(e.name.partition("/")[2] for e in keep),
        tuple(e.name.partition("/")[0] for e in keep), np.full(n, -1, np.int64), np.zeros(n, np.int64),
        np.full(n, -1, np.int64),
    )
    return root, index


def _load_located(
    name: str, root: str, kind: str, fmt: str, workspace: Path | None, class_list: tuple[str, ...] | None
) -> ImageDataset:
    if fmt == "folder":
        base, index = _object_listing(root)
    else:
        cache = archives.index_path(workspace, fmt, root) if workspace is not None else None
        try:
            base, index, _ = archives.build_index(fmt, root, cache)
        except archives.ArchiveError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:
            raise UserError(f"cannot read {root}: {' '.join(str(exc).split())}") from None
    if not index.names:
        raise UserError(f"dataset {root} ({fmt}) holds no images")
    integer_classes = class_list if class_list is not None else imagenet1k_wnids() if kind == "id" else None
    wnids = _sample_wnids(index, integer_classes, root)
    sample_ids = [f"{w}/{n}" for w, n in zip(wnids, index.names, strict=True)]
    if len(set(sample_ids)) != len(sample_ids):
        seen: set[str] = set()
        duplicate = next(s for s in sample_ids if s in seen or seen.add(s))
        raise UserError(f"dataset {root} holds sample {duplicate} twice (sample ids are <wnid>/<file name>)")
    if kind == "id":
        class_wnids = imagenet1k_wnids()
        unknown = sorted(set(wnids) - set(class_wnids))
        if unknown:
            raise UserError(
                f"{len(unknown)} classes of {root} are not ImageNet-1k wnids (e.g. {unknown[0]}); "
                "pass OOD sets as kind 'ood'"
            )
    else:
        class_wnids = tuple(sorted(set(wnids)))
    position = {w: i for i, w in enumerate(class_wnids)}
    order = np.asarray(sorted(range(len(sample_ids)), key=sample_ids.__getitem__), dtype=np.int64)
    locators = Locators(fmt, base, index.containers, index.file, index.start, index.length).take(order)
    return ImageDataset(
        name, root, kind, tuple(sample_ids[i] for i in order), tuple(position[wnids[i]] for i in order),
        class_wnids, locators,
    )


def _sample_wnids(index: archives.Index, classes: tuple[str, ...] | None, root: str) -> list[str]:
    """Each indexed sample's wnid: its own, else its integer label looked up in ``classes``; UserError for a
    sample without a label, a label outside ``classes`` and a string that is no wnid."""
    out: list[str] = []
    for i, (wnid, cls) in enumerate(zip(index.wnids, index.cls.tolist(), strict=True)):
        where = f"{root}: sample {index.names[i]} of {index.containers[int(index.file[i])].name or root}"
        if not wnid:
            if cls < 0:
                what = "an invalid label" if cls < -1 else "no label (.cls, .json or .txt)"
                raise UserError(f"{where} has {what}")
            if classes is None:
                raise UserError(f"{where} has only a class index: give the OOD set a class list (classes = \"...\")")
            if cls >= len(classes):
                raise UserError(f"{where} has label {cls}, outside 0..{len(classes) - 1} of the class list")
            wnid = classes[cls]
        elif not WNID_PATTERN.fullmatch(wnid):
            raise UserError(f"{where} has class {wnid!r}, which is not a wnid like n01440764")
        out.append(wnid)
    return out


def ood_manifest_path(workspace: Path, name: str) -> Path:
    """Where an OOD dataset's estimation/test split manifest lives: ``<workspace>/datasets/<name>/manifest.csv``."""
    return Path(workspace) / "datasets" / name / "manifest.csv"


def load_ood_split(
    name: str,
    root: Path | str,
    workspace: Path,
    *,
    seed: int = 0,
    per_class: int = 200,
    n_estimation: int = 150,
    min_images: int = 200,
    min_classes: int = 1,
    use_pool: bool = True,
    format: str | None = None,
    classes: Path | None = None,
) -> ImageDataset:
    """An ImageNet-21k-style OOD set restricted to the C-OOD class pool and sampled/split per class.

    The split (cood.imagenet21k: sorted file names + per-class seeded RNG) is written as a manifest to
    :func:`ood_manifest_path`, so later analyses (``uebench cood build``) and other users can reuse it; the
    dataset's samples are exactly the manifest's images, labelled with their class index. The split reads only
    the ``<wnid>/<file name>`` listing, so it is the same for a folder and for any container of the same images.
    """
    from cood.imagenet21k import build_split, split_from_listing, write_manifest
    from cood.pool import ood_class_pool

    root = _local_root(root)
    fmt = resolve_format(root, format)
    pool = ood_class_pool() if use_pool else None
    params = {
        "pool_wnids": pool.wnids if pool else None, "pool_version": pool.version if pool else None,
        "per_class": per_class, "n_estimation": n_estimation, "min_images": min_images, "min_classes": min_classes,
    }
    full = None
    try:
        if fmt == "folder" and not storage.is_uri(root):
            _class_folders(Path(root))
            manifest = build_split(root, seed, **params)
        else:
            full = load_dataset(name, root, "ood", workspace=workspace, format=fmt, classes=classes)
            listing: dict[str, list[str]] = {}
            for sample_id in full.sample_ids:
                wnid, _, file_name = sample_id.partition("/")
                listing.setdefault(wnid, []).append(file_name)
            manifest = split_from_listing(listing, seed, where=str(root), **params)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    write_manifest(manifest, ood_manifest_path(workspace, name))
    order = sorted(range(len(manifest.paths)), key=manifest.paths.__getitem__)
    sample_ids = tuple(manifest.paths[i] for i in order)
    labels = tuple(int(manifest.class_index[i]) for i in order)
    if full is None:
        return ImageDataset(name, root, "ood", sample_ids, labels, tuple(manifest.wnids))
    position = {s: i for i, s in enumerate(full.sample_ids)}
    take = np.asarray([position[s] for s in sample_ids], dtype=np.int64)
    return ImageDataset(name, root, "ood", sample_ids, labels, tuple(manifest.wnids), full.locators.take(take))
