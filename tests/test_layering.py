"""The room table of docs/layout.md, checked on the source: each package imports only what its row allows."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("common", "hsc", "cood", "results", "pipelines")
# package -> our packages it may import (third-party limits: the heavy frameworks below are checked separately)
ALLOWED = {
    "common": set(),
    "hsc": {"common", "hsc"},
    "cood": {"common", "hsc", "cood"},
    "results": {"common", "results"},
    "pipelines": set(OURS),
}
HEAVY = ("torch", "torchvision", "timm", "open_clip", "ray")


def _imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports; any nesting depth)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", list(ALLOWED))
def test_package_imports_only_its_row(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        names = _imports(path)
        ours = {n for n in names if n in OURS} - ALLOWED[package]
        heavy = {n for n in names if n in HEAVY} if package != "pipelines" else set()
        if ours or heavy:
            bad.append(f"{path.relative_to(ROOT)}: {sorted(ours | heavy)}")
    assert not bad, "imports outside the room table:\n" + "\n".join(bad)


def test_common_uses_the_standard_library_only() -> None:
    names = set().union(*(_imports(p) for p in (ROOT / "common").rglob("*.py")))
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, sorted(names - set(sys.stdlib_module_names))


def test_analysis_packages_import_without_heavy_frameworks() -> None:
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in ("common", "hsc", "cood", "results")
        for p in sorted((ROOT / package).rglob("*.py"))
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in {(*HEAVY, 'pipelines')!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
