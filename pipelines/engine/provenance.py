"""Provenance attached to every run: code version, library versions, device."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path


def code_version() -> str:
    """``uebench <version>`` plus the git commit (and ``-dirty``) when running from a checkout; the version is
    ``source`` when the code runs from a source tree that was never installed (``PYTHONPATH=.``)."""
    try:
        version = metadata.version("uebench")
    except metadata.PackageNotFoundError:
        version = "source"
    repo = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"uebench {version}"
    return f"uebench {version} ({sha}{'-dirty' if dirty else ''})"


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that change numbers."""
    names = ("torch", "torchvision", "timm", "open_clip_torch", "numpy", "pillow", "ray", "duckdb", "polars")
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_description(device: str) -> str:
    """Human-readable device: the GPU name for CUDA, the CPU architecture otherwise."""
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({platform.machine()}, {platform.processor() or 'unknown processor'})"
