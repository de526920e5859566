"""hsc — hierarchical selective classification and flat selective-prediction metrics (numpy only).

Public names (architecture.md §3) are imported lazily so that ``import hsc`` stays fast:
``Hierarchy``, ``load_imagenet_hierarchy`` and the submodules ``rules``, ``curves``, ``calibration``,
``selective``, ``taxonomy``.
"""

from __future__ import annotations

import importlib
from typing import Any

_ATTRS = {
    "Hierarchy": ("hsc.hierarchy", "Hierarchy"),
    "load_imagenet_hierarchy": ("hsc.hierarchy", "load_imagenet_hierarchy"),
}
_SUBMODULES = {
    "rules", "curves", "calibration", "selective", "softmax", "temperature", "taxonomy", "hierarchy", "study",
    "ordering",
}

__all__ = sorted([*_ATTRS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _ATTRS:
        module, attr = _ATTRS[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"hsc.{name}")
    raise AttributeError(f"module 'hsc' has no attribute {name!r}")
