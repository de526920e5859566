"""Exact eval preprocessing, split into a decode stage (PIL, uint8) and a per-model normalise stage (torch).

The decode stage is timm's own eval transform (``timm.data.create_transform(..., is_training=False)``)
without its final ToTensor/Normalize steps, so resize (with PIL's antialiasing), crop mode and interpolation
match timm exactly. Models whose :attr:`~pipelines.zoo.Preprocess.signature` agree share the decoded
uint8 crops; :func:`normalise` then applies each model's mean/std on its device.

Per-image faults stay per image: :func:`decode` turns every failure of one file (unreadable, truncated, not an
image, over the pixel limit) into an :class:`ImageError` with a one-line reason, and :func:`decode_or_error` into
a ``bad_files`` reason string; :func:`to_rgb` maps every Pillow mode to the RGB picture it depicts.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from pipelines.zoo import Preprocess

DEFAULT_MAX_PIXELS: int = 89_478_485
"""Default width × height limit of :func:`decode`: Pillow's own warning threshold (``Image.MAX_IMAGE_PIXELS`` =
2³⁰ // 4 // 3 ≈ 89.5 MP, "around a quarter gigabyte for a 24-bit image"). It is well above ordinary camera photos
(tens of megapixels) yet caps one image's decoded RGB pixels at about 270 MB, so a decompression bomb is one bad
file instead of a worker killed for memory."""

_PIL_LIMIT_LOCK = threading.Lock()


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


class ImageError(ValueError):
    """One image cannot be scored: its one-line reason (a ValueError, so ``except ValueError`` still catches it).

    Raised by :func:`decode` for files that cannot be opened or decoded (truncated, corrupt, not an image, unknown
    mode) and for images over the pixel limit; the engine records it as one ``bad_files`` row of the shard.
    """


@contextmanager
def _pil_size_check_off():
    """Switch PIL's own decompression-bomb check off for the calling block only, then restore it.

    PIL reads the module global ``Image.MAX_IMAGE_PIXELS`` (warning above it, DecompressionBombError above twice
    it) inside ``Image.open`` and some plugins' loads, before :func:`decode` can apply its own ``max_pixels``. The
    global is set to None under a module lock and restored on exit, so it is never changed for other code beyond
    the block; blocks are kept short (a header read, or the load of one image already checked against
    ``max_pixels``).
    """
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _reason(exc: BaseException) -> str:
    """One-line ``cannot decode: <message>`` for an exception raised while opening/decoding one image."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return f"cannot decode: {message}"


def decode(path: Path, pre: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load one image file and return its eval crop: ``(S, S, 3) uint8`` with S = ``pre.input_size``
    (:func:`decode_crops` with one preprocessing)."""
    return decode_crops(path, (pre,), max_pixels)[0]


def decode_crops(
    path: Path | BinaryIO, pres: Sequence[Preprocess], max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[np.ndarray]:
    """Load one image file once and return its eval crop for each of ``pres``: ``(S, S, 3) uint8`` each, with
    S = that preprocessing's ``input_size`` (the file is read, decoded and made RGB once, then cropped per entry).
    ``path`` may also be a binary file object holding the image's bytes (an archive member).

    ``max_pixels`` bounds width × height, checked on the header before any pixel data is read (so a
    decompression bomb costs a header read). PIL's own bomb check (``Image.MAX_IMAGE_PIXELS``) is bypassed for
    this call only: ``max_pixels`` is the one limit, and PIL's DecompressionBombWarning/Error never fire for an
    image within it. Pixels go through :func:`to_rgb` then the timm eval crop (:func:`crop_image`).

    Raises :class:`ImageError` (a ValueError) with a one-line reason for any per-image fault: missing,
    unreadable, truncated or corrupt file, not an image, unsupported mode, over ``max_pixels``, out of memory.
    Truncated files are errors (PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left as it is, False by default).
    """
    try:
        with _pil_size_check_off():
            image = Image.open(path)
    except Exception as exc:  # any failure of one file is that file's fault (PIL raises many types)
        raise ImageError(_reason(exc)) from exc
    with image:
        width, height = image.size
        pixels = width * height
        if pixels > max_pixels:
            raise ImageError(
                f"image has {pixels:,} pixels ({width}x{height}), over the limit of {max_pixels:,} "
                "(raise [inference] max_image_pixels)"
            )
        try:
            pil_limit = Image.MAX_IMAGE_PIXELS
            if pil_limit is not None and pixels > pil_limit:  # plugins re-check frame/tile sizes while loading
                with _pil_size_check_off():
                    image.load()
            else:
                image.load()
            rgb = to_rgb(image)  # once: crop_image finds it RGB already
            return [crop_image(rgb, pre) for pre in pres]
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(_reason(exc)) from exc


def decode_or_error(
    path: Path, pre: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray | None, str | None]:
    """Never-raising :func:`decode`: ``(crop, None)`` or ``(None, "ImageError: <reason>")``.

    crop is ``(S, S, 3) uint8``; the error string is the ``bad_files`` reason of the engine's decode stage.
    """
    crops, error = decode_crops_or_error(path, (pre,), max_pixels)
    return (None, error) if crops is None else (crops[0], None)


def decode_crops_or_error(
    path: Path | BinaryIO, pres: Sequence[Preprocess], max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[list[np.ndarray] | None, str | None]:
    """Never-raising :func:`decode_crops`: ``(crops, None)`` or ``(None, "ImageError: <reason>")``."""
    try:
        return decode_crops(path, pres, max_pixels), None
    except ImageError as exc:
        return None, f"ImageError: {exc}"
    except Exception as exc:  # decode raises only ImageError; this keeps the promise even if closing the file fails
        return None, f"ImageError: {_reason(exc)}"


def crop_image(image: Image.Image, pre: Preprocess) -> np.ndarray:
    """Eval crop of an already-open PIL image: ``(S, S, 3) uint8`` (a fresh, writable array).

    Any mode is first made RGB by :func:`to_rgb` (identical to ``image.convert("RGB")`` for 8-bit modes).
    """
    return np.array(_decode_transform(pre)(to_rgb(image)), dtype=np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """The RGB picture an image of any Pillow mode depicts (same size; the input itself when already RGB).

    - 8-bit modes (1, L, P, PA, LA, RGBA, RGBa, RGBX, CMYK, YCbCr, LAB, HSV): exactly ``image.convert("RGB")``,
      as timm's loader does; alpha is dropped, not composited, palettes are looked up, CMYK is PIL's naive
      ``(255 − c)(255 − k)/255``. ``La`` (premultiplied, which ``convert`` rejects) is read as ``RGBa`` with
      L in all three channels, i.e. un-premultiplied like ``RGBa``.
    - 16-bit grayscale (I;16, I;16L, I;16B, I;16N): ``round(v · 255 / 65535)`` = ``round(v / 257)``, the exact
      linear rescale of full scale (0 → 0, 65535 → 255; libpng's ``png_set_scale_16``), rather than ``v >> 8``
      which is darker by up to one level. ``convert("RGB")`` would clip every value above 255 to white.
    - 32-bit integer ``I``: the data carry no bit depth, so full scale is the first of these ranges that holds
      every value: uint16 [0, 65535] (16-bit PNG/PGM/TIFF data, which older Pillow versions and some formats
      open as ``I``), int8 [−128, 127], int16 [−32768, 32767] (signed TIFFs), uint32 [0, 2³² − 1], int32
      [−2³¹, 2³¹ − 1]; ``v`` maps to ``round((v − lo) · 255 / (hi − lo))``. (Pillow reads uint32 samples above
      2³¹ − 1 as negative int32, so such images fall in the int32 range.)
    - float ``F``: when every finite value lies in [0, 1] (the float image convention) ``v · 255``, otherwise
      ``v`` as 8-bit units; then clipped to [0, 255] and rounded to nearest (ties to even); NaN → 0.
    - Grayscale results are replicated into R, G and B.

    Raises :class:`ImageError` for a mode Pillow cannot convert.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16"):
        values = np.asarray(image)
        return _gray_to_rgb(_rescale_int(values, 0, 65535))
    if mode == "I":
        values = np.asarray(image)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        lo, hi = next((lo, hi) for lo, hi in _INT_RANGES if lo <= low and high <= hi)
        return _gray_to_rgb(_rescale_int(values, lo, hi))
    if mode == "F":
        return _gray_to_rgb(_rescale_float(np.asarray(image)))
    if mode == "La":
        luma, alpha = image.split()
        image = Image.merge("RGBa", (luma, luma, luma, alpha))
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"cannot convert mode {mode} to RGB: {exc}") from exc


_INT_RANGES = ((0, 2**16 - 1), (-(2**7), 2**7 - 1), (-(2**15), 2**15 - 1), (0, 2**32 - 1), (-(2**31), 2**31 - 1))
_BLOCK = 1 << 22  # elements per chunk of the 64-bit rescale arithmetic (bounds its temporary memory)


def _row_blocks(shape: tuple[int, ...]):
    """Row slices of a ``(H, W)`` array covering about :data:`_BLOCK` elements each."""
    step = max(1, _BLOCK // max(1, shape[1] if len(shape) > 1 else 1))
    return (slice(r, r + step) for r in range(0, shape[0], step))


def _rescale_int(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``(H, W)`` integers in [lo, hi] → ``(H, W) uint8`` ``round((v − lo) · 255 / (hi − lo))``, in exact integers.

    Every range used has hi − lo = 255 · d with d odd (1, 257, 16843009), so ``(v − lo) / d`` is never a tie
    and ``(255 · (v − lo) + (hi − lo) // 2) // (hi − lo)`` is its rounded value (int64: no overflow below 2³³).
    """
    out = np.empty(values.shape, np.uint8)
    for rows in _row_blocks(values.shape):
        block = values[rows].astype(np.int64) - lo
        out[rows] = (block * 255 + (hi - lo) // 2) // (hi - lo)
    return out


def _rescale_float(values: np.ndarray) -> np.ndarray:
    """``(H, W)`` floats → ``(H, W) uint8`` by the ``F`` rule of :func:`to_rgb`."""
    finite = np.isfinite(values)
    low = values.min(where=finite, initial=np.inf)
    high = values.max(where=finite, initial=-np.inf)
    gain = 255.0 if 0.0 <= low and high <= 1.0 else 1.0
    out = np.empty(values.shape, np.uint8)
    for rows in _row_blocks(values.shape):
        block = values[rows].astype(np.float64) * gain
        block[np.isnan(block)] = 0.0
        out[rows] = np.rint(np.clip(block, 0.0, 255.0))
    return out


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    """``(H, W) uint8`` → RGB image with the gray value in all three channels."""
    return Image.fromarray(np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2)))


def normalise(batch_uint8: torch.Tensor, pre: Preprocess, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(B, S, S, 3) uint8`` crops -> ``(B, 3, S, S) float32`` normalised input on ``device``.

    Same arithmetic as timm's ToTensor + Normalize: x / 255, then (x − mean) / std per channel.
    """
    x = batch_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(pre.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)
