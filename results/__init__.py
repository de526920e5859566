"""results — the DuckDB store, read-only SQL, leaderboards and the HTML report.

Public names are imported lazily, so ``import results`` loads neither DuckDB nor matplotlib:
``connect``/``Results`` (read-only Python API), ``Store``/``StoreError``/``ingest_frames`` (the driver's
writer), ``build_report`` (HTML report), and the submodules ``schema``, ``store``, ``sql``, ``report``,
``reference`` and ``migrations``.
"""

from __future__ import annotations

import importlib
from typing import Any

_ATTRS = {
    "connect": ("results.api", "connect"),
    "Results": ("results.api", "Results"),
    "Store": ("results.store", "Store"),
    "StoreError": ("results.store", "StoreError"),
    "ingest_frames": ("results.store", "ingest_frames"),
    "build_report": ("results.report", "build_report"),
}
_SUBMODULES = {"api", "schema", "store", "sql", "report", "reference", "migrations"}

__all__ = sorted([*_ATTRS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _ATTRS:
        module, attr = _ATTRS[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"results.{name}")
    raise AttributeError(f"module 'results' has no attribute {name!r}")
