"""Image datasets in the ``<root>/<wnid>/<image>`` layout, with stable sample ids.

``sample_id`` is the image path relative to the dataset root (POSIX separators), so outputs from different
machines and runs join on it. ID datasets label each image with its ImageNet-1k index (timm's sorted-wnid
order); OOD datasets label it with the index of its class in the sorted list of the dataset's wnids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipelines.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
WNID_PATTERN = re.compile(r"^n\d{8}$")


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
    folders = sorted(p for p in root.iterdir() if p.is_dir() and WNID_PATTERN.match(p.name))
    if not folders:
        raise UserError(f"dataset folder {root} has no <wnid>/ class folders (expected e.g. {root}/n01440764/)")
    return folders


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


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
        raise UserError(f"dataset folder {root} has class folders but no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return ImageDataset(name, root, kind, tuple(sample_ids), tuple(labels), class_wnids)
