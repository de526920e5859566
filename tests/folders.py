"""Image folders in the ImageNet layout for tests (tests import this; it is no test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def imagenet_folder(root: Path, wnids: list[str], per_class: int = 6, seed: int = 0) -> Path:
    """``root/<wnid>/img_<k>.jpg``: 96×128 random JPEGs, one colour channel halved per class (a little
    class structure); returns ``root``."""
    rng = np.random.default_rng(seed)
    for c, wnid in enumerate(wnids):
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
            pixels[..., c % 3] //= 2
            Image.fromarray(pixels).save(root / wnid / f"img_{k}.jpg", quality=90)
    return root
