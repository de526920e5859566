"""cood — per-model class-out-of-distribution benchmarks from ImageNet-21k (numpy only).

Public names (architecture.md §3) are imported lazily: ``ood_class_pool``, ``severity_levels``,
``evaluate_levels`` and the submodule ``confidence``.
"""

from __future__ import annotations

from common import lazy_exports

_ATTRS = {
    "ood_class_pool": ("cood.pool", "ood_class_pool"),
    "severity_levels": ("cood.severity", "severity_levels"),
    "SeverityLevels": ("cood.severity", "SeverityLevels"),
    "evaluate_levels": ("cood.evaluate", "evaluate_levels"),
}
_SUBMODULES = {"confidence", "detectors", "pool", "severity", "evaluate", "imagenet21k", "export"}

__getattr__, __all__ = lazy_exports("cood", _ATTRS, _SUBMODULES)
