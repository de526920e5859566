"""The demo's data: real photographs shipped by scikit-image, enlarged with seeded graded augmentations.

Two ImageNet-style folders are generated (``<wnid>/<file>.jpg``):

* ``imagenet-val-demo`` — photos whose subject is an ImageNet-1k class (:data:`ID_PHOTOS`), filed under that
  class's wnid;
* ``imagenet21k-demo`` — photos whose subject is an ImageNet-21k synset that WordNet does not relate to any
  ImageNet-1k class (:data:`OOD_PHOTOS`; checked against the C-OOD class pool in the tests).

Augmentation recipe (variant k of n of a photo, strength s = k / (n − 1), so variant 0 is the original photo
and strength grows linearly to 1). Random numbers come from ``numpy.random.default_rng([seed, photo, k])``:

1. random crop keeping an area fraction 1 − 0.85·s·u (u ~ U(0.5, 1)), aspect ratio jitter up to ±30%·s;
2. horizontal flip with probability 0.5;
3. brightness, contrast and saturation factors 1 + 0.6·s·v (v ~ U(−1, 1), independently);
4. Gaussian blur of radius 3·s·U(0, 1) pixels;
5. additive Gaussian noise of standard deviation 40·s·U(0, 1) grey levels;
6. resize so the longer side is at most 400 px, JPEG quality 92.

The same seed always gives byte-identical files; a ``recipe.json`` records everything.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from common import atomic_write_text

RECIPE_VERSION = 1
MAX_SIDE = 400


@dataclass(frozen=True)
class DemoPhoto:
    """A scikit-image photograph and the synset it shows."""

    loader: str  # name of the skimage.data function
    wnid: str
    label: str


# ImageNet-1k classes (timm index order is the sorted wnids). The pretrained EfficientNet-Lite0 ranks each
# of these photos' class in its top 3 (chelsea: "tiger cat" top-1, "tabby" third).
ID_PHOTOS: tuple[DemoPhoto, ...] = (
    DemoPhoto("chelsea", "n02123045", "tabby cat"),
    DemoPhoto("coffee", "n07920052", "espresso"),
    DemoPhoto("clock", "n04548280", "wall clock"),
    DemoPhoto("rocket", "n03773504", "missile"),
    DemoPhoto("camera", "n04485082", "tripod"),
)

# ImageNet-21k (fall11) synsets that are neither ImageNet-1k classes nor WordNet ancestors/descendants of one.
OOD_PHOTOS: tuple[DemoPhoto, ...] = (
    DemoPhoto("astronaut", "n09818022", "astronaut"),
    DemoPhoto("hubble_deep_field", "n09444783", "star"),
    DemoPhoto("moon", "n09344324", "lunar crater"),
    DemoPhoto("brick", "n02898369", "brickwork"),
    DemoPhoto("grass", "n12102133", "grass"),
    DemoPhoto("gravel", "n14698884", "gravel"),
    DemoPhoto("page", "n06470073", "document"),
    DemoPhoto("immunohistochemistry", "n00006484", "cell"),
    DemoPhoto("cell", "n00006484", "cell"),
)

ID_DATASET = "imagenet-val-demo"
OOD_DATASET = "imagenet21k-demo"


def _photo(loader: str) -> Image.Image:
    import skimage.data

    array = getattr(skimage.data, loader)()
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    image = Image.fromarray(array)
    return image.convert("RGB")


def augment(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Apply the module's graded augmentation recipe at ``strength`` in [0, 1] (0 = unchanged)."""
    if strength > 0:
        width, height = image.size
        area = 1.0 - 0.85 * strength * rng.uniform(0.5, 1.0)
        aspect = float(np.exp(rng.uniform(-1.0, 1.0) * np.log1p(0.3 * strength)))
        crop_w = int(np.clip(round(width * np.sqrt(area * aspect)), 16, width))
        crop_h = int(np.clip(round(height * np.sqrt(area / aspect)), 16, height))
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        image = image.crop((left, top, left + crop_w, top + crop_h))
        if rng.uniform() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            image = enhancer(image).enhance(1.0 + 0.6 * strength * rng.uniform(-1.0, 1.0))
        image = image.filter(ImageFilter.GaussianBlur(radius=3.0 * strength * rng.uniform()))
        sigma = 40.0 * strength * rng.uniform()
        pixels = np.asarray(image, dtype=np.float64)
        pixels = pixels + rng.normal(0.0, sigma, size=pixels.shape)
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    scale = MAX_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    return image


def _recipe(images_per_class: int, seed: int) -> dict:
    return {
        "recipe_version": RECIPE_VERSION,
        "images_per_class": images_per_class,
        "seed": seed,
        "id_photos": [p.__dict__ for p in ID_PHOTOS],
        "ood_photos": [p.__dict__ for p in OOD_PHOTOS],
    }


def _write_class_folder(root: Path, photos: list[tuple[int, DemoPhoto]], count: int, seed: int) -> None:
    """Write ``count`` images for one wnid, spread evenly over its source photos."""
    for j, (photo_index, photo) in enumerate(photos):
        n = len(range(j, count, len(photos)))
        source = _photo(photo.loader)
        for k in range(n):
            rng = np.random.default_rng([seed, photo_index, k])
            strength = k / max(n - 1, 1)
            image = augment(source, strength, rng)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=92)
            (root / photo.wnid / f"{photo.loader}_{k:03d}.jpg").write_bytes(buffer.getvalue())


def build_demo_data(data_dir: Path, images_per_class: int = 24, seed: int = 0) -> dict[str, Path]:
    """Generate (or reuse) the demo folders under ``data_dir``; returns ``{dataset name: root}``.

    Reuse happens when ``recipe.json`` matches the requested recipe; otherwise the folders are rebuilt in a
    temporary directory and moved into place, so an interrupted build never leaves a partial dataset.
    """
    data_dir = Path(data_dir)
    recipe = _recipe(images_per_class, seed)
    recipe_file = data_dir / "recipe.json"
    roots = {ID_DATASET: data_dir / ID_DATASET, OOD_DATASET: data_dir / OOD_DATASET}
    if recipe_file.is_file() and json.loads(recipe_file.read_text()) == recipe:
        return roots
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / f".staging-{uuid.uuid4().hex}"
    try:
        for name, photos in ((ID_DATASET, ID_PHOTOS), (OOD_DATASET, OOD_PHOTOS)):
            by_wnid: dict[str, list[tuple[int, DemoPhoto]]] = {}
            offset = 0 if name == ID_DATASET else len(ID_PHOTOS)
            for i, photo in enumerate(photos):
                by_wnid.setdefault(photo.wnid, []).append((offset + i, photo))
            for wnid, group in by_wnid.items():
                (staging / name / wnid).mkdir(parents=True, exist_ok=True)
                _write_class_folder(staging / name, group, images_per_class, seed)
        for name, root in roots.items():
            if root.exists():
                shutil.rmtree(root)
            os.replace(staging / name, root)
        atomic_write_text(recipe_file, json.dumps(recipe, indent=2))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return roots


def folder_digest(root: Path) -> str:
    """SHA-256 over relative paths and bytes of every file under ``root`` (sorted): proves determinism."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
