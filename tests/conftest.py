"""Shared pytest setup: use the repo's offline WordNet copy (scripts/install_wordnet.sh) when present."""

from __future__ import annotations

import os
from pathlib import Path

_NLTK_DATA = Path(__file__).resolve().parents[1] / ".nltk_data"

if _NLTK_DATA.is_dir():
    _paths = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    if str(_NLTK_DATA) not in _paths:
        os.environ["NLTK_DATA"] = os.pathsep.join([str(_NLTK_DATA), *_paths])

# Tests never reach the network: model hubs fail fast instead of retrying (set before any Ray worker starts).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Ray reports usage statistics by default; tests, the Ray workers they start and their subprocesses never do.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
