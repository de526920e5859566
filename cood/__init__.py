"""cood — per-model class-out-of-distribution benchmarks from ImageNet-21k (numpy only).

Public names (architecture.md §3) are imported lazily: ``ood_class_pool``, ``severity_levels``,
``evaluate_levels`` and the submodule ``confidence``.
"""

from __future__ import annotations

import importlib
from typing import Any

_ATTRS = {
    "ood_class_pool": ("cood.pool", "ood_class_pool"),
    "severity_levels": ("cood.severity", "severity_levels"),
    "SeverityLevels": ("cood.severity", "SeverityLevels"),
    "evaluate_levels": ("cood.evaluate", "evaluate_levels"),
}
_SUBMODULES = {"confidence", "pool", "severity", "evaluate", "imagenet21k", "export"}

__all__ = sorted([*_ATTRS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _ATTRS:
        module, attr = _ATTRS[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"cood.{name}")
    raise AttributeError(f"module 'cood' has no attribute {name!r}")
