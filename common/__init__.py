"""Facts and file helpers that every uebench package shares; the standard library only.

This package sits below the four rooms of the design (``hsc``, ``cood``, ``results``, ``pipelines``): each of them
may import it, it imports none of them, and nothing here pulls in numpy, torch, ray or duckdb. A fact written
here is written nowhere else (docs/layout.md).

- :data:`WNID_PATTERN`: a WordNet noun id, ``n`` + 8 digits (use ``fullmatch``).
- :data:`IMAGE_EXTENSIONS`: file suffixes (lower case) that the dataset listings and the C-OOD manifest treat as
  images; both must agree or the manifest samples files the engine never lists.
- :data:`DB_FILENAME`: the DuckDB file of a workspace.
- :data:`DETECTOR_PREFIX`: the κ of a feature-space detector ``<name>`` is the column ``det_<name>`` (the engine
  writes it, the report picks detectors by it).
- :data:`PUBLISHED_KAPPA_NAMES` / :data:`KAPPA_FROM_PUBLISHED`: our κ names and the names the C-OOD reference
  results use (cood.md §5), one table read both ways.
- :func:`temp_path`, :func:`atomic_output`, :func:`atomic_write_bytes`, :func:`atomic_write_text`: write to a
  temporary file beside the target, then rename it into place; the temporary file never outlives an error.
- :func:`lazy_exports`: a package's public names, imported on first use (so ``import hsc`` stays fast).
"""

from __future__ import annotations

import importlib
import os
import re
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "DB_FILENAME",
    "DETECTOR_PREFIX",
    "IMAGE_EXTENSIONS",
    "KAPPA_FROM_PUBLISHED",
    "PUBLISHED_KAPPA_NAMES",
    "WNID_PATTERN",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
    "lazy_exports",
    "temp_path",
]

WNID_PATTERN = re.compile(r"n\d{8}")

# Pillow opens all of these; every mode it yields becomes RGB in pipelines.data.preprocess (a GIF: its first frame).
IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

DB_FILENAME = "uebench.duckdb"

DETECTOR_PREFIX = "det_"

# Our κ name -> the name the reference C-OOD results use (cood.md §5).
PUBLISHED_KAPPA_NAMES: dict[str, str] = {
    "msp": "softmax",
    "neg_entropy": "entropy",
    "max_logit": "max_logit",
    "odin": "odin_temperature-2_noise_mag-1e-05",
    "mcd_neg_entropy": "mcd_entropy",
}
KAPPA_FROM_PUBLISHED: dict[str, str] = {published: ours for ours, published in PUBLISHED_KAPPA_NAMES.items()}

def temp_path(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary name beside ``path``: ``<folder>/.<name>.<uuid4 hex>.tmp`` (same file system, so the
    final ``os.replace`` is atomic; hidden, so listings skip it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name (Parquet, ``torch.save``);
    on a normal exit it is renamed onto ``path``, on any exception it is deleted and the exception goes on.

    The parent folder is created; the file ends up with mode 0644 whatever the writer used.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_output`); returns ``path``."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically in ``encoding``; returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


def lazy_exports(
    package: str, attributes: Mapping[str, tuple[str, str]], submodules: Collection[str]
) -> tuple[Callable[[str], object], list[str]]:
    """``(__getattr__, __all__)`` for ``package``'s ``__init__`` (PEP 562): ``attributes`` maps a public name to
    (module, attribute), ``submodules`` are names of ``package.<name>``; each is imported on first access."""

    def __getattr__(name: str) -> object:
        if name in attributes:
            module, attribute = attributes[name]
            return getattr(importlib.import_module(module), attribute)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted([*attributes, *submodules])
