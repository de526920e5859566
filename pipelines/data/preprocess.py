"""Exact eval preprocessing, split into a decode stage (PIL, uint8) and a per-model normalise stage (torch).

The decode stage is timm's own eval transform (``timm.data.create_transform(..., is_training=False)``)
without its final ToTensor/Normalize steps, so resize (with PIL's antialiasing), crop mode and interpolation
match timm exactly. Models whose :attr:`~pipelines.zoo.Preprocess.signature` agree share the decoded
uint8 crops; :func:`normalise` then applies each model's mean/std on its device.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipelines.zoo import Preprocess


@lru_cache(maxsize=32)
def _decode_transform(pre: Preprocess):
    from timm.data import create_transform
    from torchvision import transforms

    full = create_transform(
        input_size=(3, pre.input_size, pre.input_size),
        is_training=False,
        interpolation=pre.interpolation,
        mean=pre.mean,
        std=pre.std,
        crop_pct=pre.crop_pct,
        crop_mode=pre.crop_mode,
    )
    steps = [t for t in full.transforms if not isinstance(t, transforms.Normalize)]
    steps = [t for t in steps if type(t).__name__ not in {"ToTensor", "MaybeToTensor"}]
    return transforms.Compose(steps)


def decode(path: Path, pre: Preprocess) -> np.ndarray:
    """Load one image file and return its eval crop: ``(S, S, 3) uint8`` with S = ``pre.input_size``.

    Raises OSError (PIL's UnidentifiedImageError included) for unreadable or truncated files.
    """
    with Image.open(path) as image:
        image.load()
        return crop_image(image, pre)


def crop_image(image: Image.Image, pre: Preprocess) -> np.ndarray:
    """Eval crop of an already-open PIL image: ``(S, S, 3) uint8`` (a fresh, writable array)."""
    return np.array(_decode_transform(pre)(image.convert("RGB")), dtype=np.uint8)


def normalise(batch_uint8: torch.Tensor, pre: Preprocess, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(B, S, S, 3) uint8`` crops -> ``(B, 3, S, S) float32`` normalised input on ``device``.

    Same arithmetic as timm's ToTensor + Normalize: x / 255, then (x − mean) / std per channel.
    """
    x = batch_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(pre.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)
