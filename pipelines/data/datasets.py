"""Image datasets in the ``<root>/<wnid>/<image>`` layout, with stable sample ids.

``sample_id`` is the image path relative to the dataset root (POSIX separators), so outputs from different
machines and runs join on it. ID datasets label each image with its ImageNet-1k index (timm's sorted-wnid
order); OOD datasets label it with the index of its class in the sorted list of the dataset's wnids.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from common import IMAGE_EXTENSIONS, WNID_PATTERN
from pipelines.errors import UserError


@lru_cache(maxsize=1)
def imagenet1k_wnids() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k wnids in timm's class-index order (sorted wnids)."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


@dataclass(frozen=True)
class ImageDataset:
    """A named image folder: sample ids, absolute paths and integer labels, sorted by sample id.

    kind: "id" (labels index ImageNet-1k) or "ood" (labels index ``class_wnids``).
    """

    name: str
    root: Path
    kind: str
    sample_ids: tuple[str, ...]
    labels: tuple[int, ...]
    class_wnids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.sample_ids)

    def path(self, i: int) -> Path:
        return self.root / self.sample_ids[i]


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


def ood_manifest_path(workspace: Path, name: str) -> Path:
    """Where an OOD dataset's estimation/test split manifest lives: ``<workspace>/datasets/<name>/manifest.csv``."""
    return Path(workspace) / "datasets" / name / "manifest.csv"


def load_ood_split(
    name: str,
    root: Path,
    workspace: Path,
    *,
    seed: int = 0,
    per_class: int = 200,
    n_estimation: int = 150,
    min_images: int = 200,
    min_classes: int = 1,
    use_pool: bool = True,
) -> ImageDataset:
    """An ImageNet-21k-style OOD folder restricted to the C-OOD class pool and sampled/split per class.

    The split (cood.imagenet21k: sorted file names + per-class seeded RNG) is written as a manifest to
    :func:`ood_manifest_path`, so later analyses (``uebench cood build``) and other users can reuse it; the
    dataset's samples are exactly the manifest's images, labelled with their class index.
    """
    from cood.imagenet21k import build_split, write_manifest
    from cood.pool import ood_class_pool

    root = Path(root).resolve()
    _class_folders(root)
    pool = ood_class_pool() if use_pool else None
    try:
        manifest = build_split(
            root, seed, pool_wnids=pool.wnids if pool else None, pool_version=pool.version if pool else None,
            per_class=per_class, n_estimation=n_estimation, min_images=min_images, min_classes=min_classes,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    write_manifest(manifest, ood_manifest_path(workspace, name))
    order = sorted(range(len(manifest.paths)), key=manifest.paths.__getitem__)
    return ImageDataset(
        name, root, "ood", tuple(manifest.paths[i] for i in order),
        tuple(int(manifest.class_index[i]) for i in order), tuple(manifest.wnids),
    )
