"""results — the DuckDB store, read-only SQL, leaderboards and the HTML report.

Public names are imported lazily, so ``import results`` loads neither DuckDB nor plotly:
``connect``/``Results`` (read-only Python API), ``Store``/``StoreError``/``ingest_frames`` (the driver's
writer), ``build_report`` (HTML report), and the submodules ``schema``, ``store``, ``sql``, ``report``,
``report_parts``, ``report_comparisons``, ``report_assets``, ``reference``, ``model_metadata``, ``migrations`` and
``comparisons`` (the papers' comparisons, docs/comparisons.md).
"""

from __future__ import annotations

from common import lazy_exports

_ATTRS = {
    "connect": ("results.api", "connect"),
    "Results": ("results.api", "Results"),
    "Store": ("results.store", "Store"),
    "StoreError": ("results.store", "StoreError"),
    "ingest_frames": ("results.store", "ingest_frames"),
    "build_report": ("results.report", "build_report"),
}
_SUBMODULES = {
    "api", "schema", "store", "sql", "report", "report_parts", "report_comparisons", "report_assets", "reference",
    "model_metadata", "migrations", "comparisons",
}

__getattr__, __all__ = lazy_exports("results", _ATTRS, _SUBMODULES)
