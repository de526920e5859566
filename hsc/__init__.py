"""hsc — hierarchical selective classification and flat selective-prediction metrics (numpy only).

Public names (architecture.md §3) are imported lazily so that ``import hsc`` stays fast:
``Hierarchy``, ``load_imagenet_hierarchy`` and the submodules ``rules``, ``curves``, ``calibration``,
``selective``, ``taxonomy``.
"""

from __future__ import annotations

from common import lazy_exports

_ATTRS = {
    "Hierarchy": ("hsc.hierarchy", "Hierarchy"),
    "load_imagenet_hierarchy": ("hsc.hierarchy", "load_imagenet_hierarchy"),
}
_SUBMODULES = {
    "rules", "curves", "calibration", "selective", "softmax", "temperature", "taxonomy", "hierarchy", "study",
    "ordering",
}

__getattr__, __all__ = lazy_exports("hsc", _ATTRS, _SUBMODULES)
