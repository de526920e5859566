"""Per-image decoding: every Pillow mode becomes the RGB picture it depicts, and per-image faults are ImageErrors.

Pixel tests decode through :data:`PRE`, whose timm eval crop is the identity on an ``S × S`` image (checked by
:func:`test_identity_preprocess_is_a_no_op`), and compare to conversions computed here with numpy from the
arrays the images were built from. Images over the limit are hand-written PNGs of zeros (a few kB on disk).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, PngImagePlugin

from pipelines.data.preprocess import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    crop_image,
    decode,
    decode_or_error,
    to_rgb,
)
from pipelines.zoo import Preprocess

# to_rgb of a palette PNG with byte transparency is convert("RGB"), which says so once; nothing to act on here
pytestmark = pytest.mark.filterwarnings("ignore:Palette images with Transparency:UserWarning")

S = 24
PRE = Preprocess(
    input_size=S, crop_pct=1.0, crop_mode="center", interpolation="bilinear",
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


def _gray3(gray: np.ndarray) -> np.ndarray:
    """``(H, W)`` → ``(H, W, 3)`` with the value in all three channels."""
    return np.repeat(gray[:, :, None], 3, axis=2)


def _rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(to_rgb(image))


def _zero_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit grayscale PNG of zeros, written by hand (independent of PIL): tiny on disk, huge once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@contextmanager
def _no_bomb_warnings():
    """Block in which PIL's DecompressionBombWarning is an exception (so a test fails if it is ever issued)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


# ----------------------------------------------------------------------------------------------- the identity crop


def test_identity_preprocess_is_a_no_op(rng):
    """PRE's resize and crop leave an S × S RGB image unchanged, so decoded pixels can be compared exactly."""
    array = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    crop = crop_image(Image.fromarray(array), PRE)
    assert crop.dtype == np.uint8 and crop.shape == (S, S, 3) and crop.flags.writeable
    assert np.array_equal(crop, array)


# ----------------------------------------------------------------------------------------------- 16-bit grayscale


def _uint16_values(rng) -> np.ndarray:
    values = rng.integers(0, 65536, (S, S)).astype(np.uint16)
    # full scale, and both sides of rounding boundaries of v / 257 (128 → 0, 129 → 1, 385 → 1, 386 → 2, 65406 → 254)
    values.flat[:8] = [0, 65535, 128, 129, 385, 386, 65406, 65407]
    return values


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16bit_grayscale_file_is_scaled_not_white(tmp_path, rng, suffix):
    values = _uint16_values(rng)
    path = tmp_path / f"gray16.{suffix}"
    Image.fromarray(values).save(path)
    with Image.open(path) as image:
        assert image.mode == "I;16"
        clipped = np.asarray(image.convert("RGB"))
    assert (clipped == 255).mean() > 0.95  # what convert("RGB") alone gives: a white image

    crop = decode(path, PRE)
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(crop, _gray3(expected))
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[0, 1].tolist() == [255, 255, 255]
    assert crop[0, 2:8, 0].tolist() == [0, 1, 1, 2, 254, 255]


def test_big_endian_16bit_tiff(tmp_path, rng):
    values = _uint16_values(rng)
    path = tmp_path / "gray16b.tif"
    Image.fromarray(values.astype(">u2")).save(path)
    with Image.open(path) as image:
        assert image.mode == "I;16B"
    assert np.array_equal(decode(path, PRE), _gray3(np.round(values / 257).astype(np.uint8)))


@pytest.mark.parametrize(("mode", "dtype"), [("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2"), ("I;16N", "=u2")])
def test_every_16bit_mode_scales_every_value(mode, dtype):
    """All 65,536 levels, in each 16-bit mode: round(v · 255 / 65535), monotone, 0 → 0 and 65535 → 255."""
    values = np.arange(65536, dtype=np.uint32).reshape(256, 256)
    image = Image.frombytes(mode, (256, 256), values.astype(dtype).tobytes())
    assert image.mode == mode
    expected = np.round(values * 255 / 65535).astype(np.uint8)
    assert np.array_equal(_rgb(image), _gray3(expected))
    assert np.array_equal(np.bincount(expected.ravel(), minlength=256)[1:255], np.full(254, 257))


def test_16bit_pgm_opens_as_mode_i_and_is_scaled(tmp_path, rng):
    """A 16-bit binary PGM (written by hand) opens as mode "I" and decodes like the 16-bit PNG."""
    values = _uint16_values(rng)
    path = tmp_path / "gray16.pgm"
    path.write_bytes(f"P5 {S} {S} 65535\n".encode() + values.astype(">u2").tobytes())
    with Image.open(path) as image:
        assert image.mode == "I"
    assert np.array_equal(decode(path, PRE), _gray3(np.round(values / 257).astype(np.uint8)))


# ---------------------------------------------------------------------------------------------- 32-bit integer "I"

_INT_CASES = {
    # name: (low, high) of the values drawn, and the full-scale range (lo, hi) the rule must pick
    "uint16": ((0, 40_000), (0, 65535)),
    "int8": ((-128, 127), (-128, 127)),
    "int16": ((-30_000, 30_000), (-32768, 32767)),
    "uint32": ((0, 2**31 - 1), (0, 2**32 - 1)),
    "int32": ((-(2**31), 2**31 - 1), (-(2**31), 2**31 - 1)),
}


@pytest.mark.parametrize("case", list(_INT_CASES))
def test_mode_i_tiff_is_scaled_by_the_narrowest_range(tmp_path, rng, case):
    (low, high), (lo, hi) = _INT_CASES[case]
    values = rng.integers(low, high, (S, S), endpoint=True).astype(np.int32)
    values.flat[:2] = [low, high]
    path = tmp_path / f"{case}.tif"
    Image.fromarray(values).save(path)
    with Image.open(path) as image:
        assert image.mode == "I"
        assert np.array_equal(np.asarray(image), values)
    expected = np.round((values.astype(np.float64) - lo) * 255 / (hi - lo)).astype(np.uint8)
    crop = decode(path, PRE)
    assert np.array_equal(crop, _gray3(expected))
    assert crop.std() > 10  # a picture, not a flat image


def test_mode_i_constant_image():
    image = Image.fromarray(np.full((3, 5), 65535, np.int32))
    assert image.mode == "I" and np.array_equal(_rgb(image), np.full((3, 5, 3), 255, np.uint8))


# ------------------------------------------------------------------------------------------------------- float "F"


def test_float_unit_range_is_scaled_by_255(tmp_path, rng):
    values = rng.random((S, S), dtype=np.float32)
    values.flat[:3] = [0.0, 1.0, 0.5 / 255]
    path = tmp_path / "unit.tif"
    Image.fromarray(values).save(path)
    with Image.open(path) as image:
        assert image.mode == "F"
    expected = np.round(values.astype(np.float64) * 255).astype(np.uint8)
    assert np.array_equal(decode(path, PRE), _gray3(expected))


def test_float_outside_unit_range_is_clipped_8bit_units(tmp_path, rng):
    values = rng.uniform(-20, 300, (S, S)).astype(np.float32)
    values.flat[:4] = [0.4, 0.6, 254.5, 1.0]
    path = tmp_path / "wide.tif"
    Image.fromarray(values).save(path)
    expected = np.round(np.clip(values.astype(np.float64), 0, 255)).astype(np.uint8)
    crop = decode(path, PRE)
    assert np.array_equal(crop, _gray3(expected))
    assert crop[0, :4, 0].tolist() == [0, 1, 254, 1]


def test_float_nan_is_black_and_infinities_clip():
    values = np.array([[np.nan, 0.5, 1.0, np.inf, -np.inf]], np.float32)
    assert _rgb(Image.fromarray(values))[0, :, 0].tolist() == [0, 128, 255, 255, 0]


# ------------------------------------------------------------------------------------------------------ 8-bit modes


def _eight_bit_cases(rng) -> dict[str, tuple[Image.Image, np.ndarray | None]]:
    """mode → (image built from numpy arrays, the RGB picture computed here; None where no simple formula)."""
    gray = rng.integers(0, 256, (S, S), dtype=np.uint8)
    alpha = rng.integers(0, 256, (S, S), dtype=np.uint8)
    alpha.flat[:2] = [0, 255]
    rgb = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    index = rng.integers(0, 256, (S, S), dtype=np.uint8)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    cmyk = rng.integers(0, 256, (S, S, 4), dtype=np.uint8)
    bits = rng.random((S, S)) < 0.5
    neutral = np.stack([gray, np.full_like(gray, 128), np.full_like(gray, 128)], axis=2)

    def interleave(*planes: np.ndarray) -> bytes:
        return np.stack(planes, axis=2).tobytes()

    p = Image.fromarray(index, "L").convert("P")
    p.putpalette(palette.ravel().tolist())
    pa = Image.frombytes("PA", (S, S), interleave(index, alpha))
    pa.putpalette(palette.ravel().tolist())
    wide = gray.astype(np.int64)
    unpremultiplied = np.where(alpha == 0, wide, np.minimum(255, wide * 255 // np.maximum(alpha, 1)))
    c, m, y, k = (cmyk[..., i].astype(np.int64) for i in range(4))
    return {
        "1": (Image.fromarray(bits), _gray3(np.where(bits, 255, 0).astype(np.uint8))),
        "L": (Image.fromarray(gray), _gray3(gray)),
        "P": (p, palette[index]),
        "PA": (pa, palette[index]),
        "LA": (Image.frombytes("LA", (S, S), interleave(gray, alpha)), _gray3(gray)),
        "La": (Image.frombytes("La", (S, S), interleave(gray, alpha)), _gray3(unpremultiplied.astype(np.uint8))),
        "RGBA": (Image.frombytes("RGBA", (S, S), interleave(*rgb.transpose(2, 0, 1), alpha)), rgb),
        "RGBX": (Image.frombytes("RGBX", (S, S), interleave(*rgb.transpose(2, 0, 1), alpha)), rgb),
        "CMYK": (
            Image.frombytes("CMYK", (S, S), cmyk.tobytes()),
            np.round(np.stack([(255 - c) * (255 - k), (255 - m) * (255 - k), (255 - y) * (255 - k)], 2) / 255)
            .astype(np.uint8),
        ),
        # neutral chroma: Y with Cb = Cr = 128, and LAB's L (0..255 = L* 0..100) with a = b = 0, are grays
        "YCbCr": (Image.frombytes("YCbCr", (S, S), neutral.tobytes()), _gray3(gray)),
        "LAB": (Image.frombytes("LAB", (S, S), interleave(gray, np.zeros_like(gray), np.zeros_like(gray))), None),
        # zero saturation: HSV (h, 0, v) is the gray v whatever the hue
        "HSV": (Image.frombytes("HSV", (S, S), interleave(index, np.zeros_like(gray), gray)), _gray3(gray)),
        "RGB": (Image.fromarray(rgb), rgb),
    }


@pytest.mark.parametrize(
    "mode", ["1", "L", "P", "PA", "LA", "La", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "RGB"]
)
def test_eight_bit_modes_match_numpy_and_pil_convert(rng, mode):
    image, expected = _eight_bit_cases(rng)[mode]
    assert image.mode == mode
    ours = _rgb(image)
    assert ours.shape == (S, S, 3) and ours.dtype == np.uint8
    if expected is not None:
        assert np.array_equal(ours, expected)
    if mode == "La":  # convert() has no La path; the rule is RGBa's un-premultiply
        rgba = Image.merge("RGBa", (*[image.getchannel(0)] * 3, image.getchannel(1)))
        assert np.array_equal(ours, np.asarray(rgba.convert("RGB")))
    else:
        assert np.array_equal(ours, np.asarray(image.convert("RGB")))
    if mode == "LAB":  # a = b = 0: neutral grays (within a level of rounding), brighter with L
        wide = ours.astype(int)
        assert np.abs(wide - wide.mean(axis=2, keepdims=True)).max() <= 1
        order = np.argsort(np.asarray(image.getchannel(0)).ravel(), kind="stable")
        assert (np.diff(wide.reshape(-1, 3)[order], axis=0) >= 0).all() and ours.std() > 30


def _palette_png_with_transparency(path: Path, rng) -> np.ndarray:
    index = rng.integers(0, 4, (S, S), dtype=np.uint8)
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [10, 20, 30]], np.uint8)
    image = Image.fromarray(index, "L").convert("P")
    image.putpalette(palette.ravel().tolist())
    image.save(path, transparency=bytes([0, 255, 128, 255]))
    return palette[index]


@pytest.mark.parametrize("kind", ["1.png", "L.png", "LA.png", "RGBA.png", "P.png", "CMYK.tif", "YCbCr.tif"])
def test_files_of_8bit_modes_decode_like_convert(tmp_path, rng, kind):
    """Lossless files of each mode decode to the numpy picture (and to PIL's convert("RGB") of the file)."""
    mode = kind.split(".")[0]
    path = tmp_path / kind
    if mode == "P":
        expected = _palette_png_with_transparency(path, rng)
    else:
        image, expected = _eight_bit_cases(rng)[mode]
        image.save(path)
    with Image.open(path) as image:
        assert image.mode == mode
        reference = np.asarray(image.convert("RGB"))
    crop = decode(path, PRE)
    assert np.array_equal(crop, reference)
    assert np.array_equal(crop, expected)


def test_cmyk_jpeg_decodes_like_convert(tmp_path, rng):
    path = tmp_path / "cmyk.jpg"
    Image.frombytes("CMYK", (S, S), rng.integers(0, 256, (S, S, 4), dtype=np.uint8).tobytes()).save(path)
    with Image.open(path) as image:
        assert image.mode == "CMYK"
        reference = np.asarray(image.convert("RGB"))
    assert np.array_equal(decode(path, PRE), reference)


# ------------------------------------------------------------------------------------------------------ pixel limit


def test_bomb_png_is_one_error_mentioning_the_limit(tmp_path):
    path = _zero_png(tmp_path / "bomb.png", 12_000, 12_000)
    assert path.stat().st_size < 200_000
    with _no_bomb_warnings():
        crop, error = decode_or_error(path, PRE, max_pixels=100_000_000)
    assert crop is None
    assert error == (
        "ImageError: image has 144,000,000 pixels (12000x12000), over the limit of 100,000,000 "
        "(raise [inference] max_image_pixels)"
    )


def test_bomb_over_pils_own_error_threshold_is_our_error(tmp_path):
    """400 MP is over twice Image.MAX_IMAGE_PIXELS (PIL would raise DecompressionBombError): our message wins."""
    path = _zero_png(tmp_path / "bigger.png", 20_000, 20_000)
    pil_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    with pytest.raises(ImageError, match=r"400,000,000 pixels .* over the limit of 89,478,485") as caught:
        decode(path, PRE)
    assert DEFAULT_MAX_PIXELS == 89_478_485
    assert "\n" not in str(caught.value) and "decompression bomb" not in str(caught.value)
    assert Image.MAX_IMAGE_PIXELS == pil_limit


def test_max_pixels_is_configurable(tmp_path, rng):
    path = tmp_path / "small.png"
    array = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    crop, error = decode_or_error(path, PRE, max_pixels=1000)
    assert crop is None and "4,096 pixels (64x64), over the limit of 1,000" in error
    crop, error = decode_or_error(path, PRE, max_pixels=10_000)
    assert error is None and crop.shape == (S, S, 3)
    assert np.array_equal(crop, crop_image(Image.fromarray(array), PRE))
    crop, error = decode_or_error(path, PRE, max_pixels=4096)  # the limit itself is allowed
    assert error is None


@pytest.mark.parametrize("suffix", ["png", "gif", "tif", "jpg"])
def test_pil_global_limit_neither_fires_nor_changes(tmp_path, rng, monkeypatch, suffix):
    """With Image.MAX_IMAGE_PIXELS far below the image, PIL alone refuses it; decode, within max_pixels, does not."""
    path = tmp_path / f"image.{suffix}"
    array = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    with _no_bomb_warnings():
        crop = decode(path, PRE, max_pixels=10_000)
    with _opened_without_limit(path) as image:
        reference = crop_image(image, PRE)
    assert np.array_equal(crop, reference)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_concurrent_decodes_restore_pils_limit(tmp_path, rng, monkeypatch):
    """Threads decoding at once (PIL's check switched off per call under a lock) leave the global as it was."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    arrays = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(6)]
    paths = []
    for i, array in enumerate(arrays):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(array).save(paths[-1])
    with ThreadPoolExecutor(4) as pool:
        crops = list(pool.map(lambda path: decode(path, PRE, max_pixels=10_000), paths * 4))
    for i, crop in enumerate(crops):
        assert np.array_equal(crop, crop_image(Image.fromarray(arrays[i % len(arrays)]), PRE))
    assert Image.MAX_IMAGE_PIXELS == 1000


def _opened_without_limit(path: Path) -> Image.Image:
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        image = Image.open(path)
        image.load()
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    return image


# ------------------------------------------------------------------------------------------------------ bad files


def _assert_one_line_error(path: Path, *, contains: str = "") -> None:
    with pytest.raises(ImageError) as caught:
        decode(path, PRE)
    reason = str(caught.value)
    assert reason.startswith("cannot decode: ") and "\n" not in reason and contains in reason
    crop, error = decode_or_error(path, PRE)
    assert crop is None and error == f"ImageError: {reason}"


def test_truncated_jpeg_is_an_error(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)  # PIL's default, whatever other tests did
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=95)
    path = tmp_path / "truncated.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    _assert_one_line_error(path, contains="truncated")


def test_corrupt_png_is_an_error(tmp_path, rng):
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[60:80] = bytes(20)  # inside IDAT: broken data and CRC
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    _assert_one_line_error(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [("notes.jpg", b"not an image at all\nsecond line\n"), ("empty.png", b""), ("header.png", b"\x89PNG\r\n\x1a\n")],
)
def test_non_images_are_errors(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    _assert_one_line_error(path)


def test_missing_file_is_an_error(tmp_path):
    _assert_one_line_error(tmp_path / "missing.jpg", contains="No such file")


@pytest.mark.parametrize(
    "exc",
    [
        struct.error("unpack requires a buffer of 4 bytes"),
        EOFError(),
        MemoryError(),
        SyntaxError("broken PNG file"),
        IndexError("list index out of range"),
        Image.DecompressionBombError("Image size (1 pixels) exceeds limit"),
        TypeError("bad tile"),
    ],
    ids=lambda exc: type(exc).__name__,
)
@pytest.mark.parametrize("stage", ["open", "load"])
def test_any_exception_of_one_image_becomes_an_image_error(tmp_path, rng, monkeypatch, exc, stage):
    path = tmp_path / "fine.png"
    Image.fromarray(rng.integers(0, 256, (S, S, 3), dtype=np.uint8)).save(path)

    def fail(*args, **kwargs):
        raise exc

    if stage == "open":
        monkeypatch.setattr(Image, "open", fail)
    else:
        monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", fail)
    crop, error = decode_or_error(path, PRE)
    assert crop is None and error.startswith("ImageError: cannot decode: ") and "\n" not in error
    assert error.endswith(str(exc) or type(exc).__name__)
    with pytest.raises(ImageError) as caught:
        decode(path, PRE)
    assert caught.value.__cause__ is exc


def test_image_error_is_a_value_error_for_existing_callers():
    """pipelines/engine/decode_cache.py catches (OSError, ValueError, SyntaxError) around decode()."""
    assert issubclass(ImageError, ValueError)


def test_unconvertible_mode_is_an_image_error():
    class Odd:
        mode = "XYZ"

        def convert(self, mode):
            raise ValueError(f"conversion from {self.mode} to {mode} not supported")

    with pytest.raises(ImageError, match="cannot convert mode XYZ to RGB"):
        to_rgb(Odd())
