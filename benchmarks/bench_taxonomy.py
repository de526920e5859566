"""Benchmark of the WordNet taxonomy snapshot and the C-OOD class pool (issues 3 and 5).

Operations:
- loading the packaged snapshot in a fresh Python process (target < 0.5 s), against reading the same 23,548
  synsets (parents, lemmas, definitions) from nltk's WordNet 3.0 — what a run would do without the snapshot
  (only when nltk finds WordNet; skipped with ``--quick``);
- ancestors ∪ descendants of the 1,000 ImageNet-1k classes (vectorised frontier BFS) against a per-synset
  recursive walk over ``Taxonomy.parents`` / ``Taxonomy.children`` without memoisation;
- the default ``ood_class_pool()`` (21,843 candidates) against a brute force that computes each candidate's
  full ancestor set by recursion and tests it against the ID set.
"ours" is the best of several repeats; the baselines are written here, not taken from another project.

Usage: python benchmarks/bench_taxonomy.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from timing import best_time, print_table  # benchmarks/timing.py (the script folder is on sys.path)

from cood.pool import ood_class_pool
from hsc.taxonomy import Taxonomy, load_taxonomy

REPO = Path(__file__).resolve().parents[1]


def cold_load_time(repeats: int) -> float:
    """Best time of ``load_taxonomy()`` (import included) in a fresh interpreter."""
    code = (
        "import time; t = time.perf_counter(); from hsc.taxonomy import load_taxonomy; load_taxonomy(); "
        "print(time.perf_counter() - t)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return min(
        float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
        for _ in range(repeats)
    )


def nltk_read_time(tax: Taxonomy) -> float | None:
    """Seconds for nltk to load WordNet and read every snapshot synset's relations, lemmas and gloss."""
    code = (
        "import sys, time; wnids = sys.stdin.read().split(); t = time.perf_counter()\n"
        "from nltk.corpus import wordnet as wn\n"
        "for w in wnids:\n"
        "    s = wn.synset_from_pos_and_offset('n', int(w[1:]))\n"
        "    s.hypernyms(); s.instance_hypernyms(); s.lemma_names(); s.definition()\n"
        "print(time.perf_counter() - t)"
    )
    nltk_data = REPO / ".nltk_data"
    env = {**os.environ, "NLTK_DATA": os.pathsep.join([str(nltk_data), os.environ.get("NLTK_DATA", "")])}
    run = subprocess.run(
        [sys.executable, "-c", code], input="\n".join(tax.wnids), env=env, capture_output=True, text=True
    )
    return float(run.stdout) if run.returncode == 0 else None


def recursive_closure(step: Callable[[str], list[str]], wnid: str) -> set[str]:
    """Baseline: proper ancestors (or descendants) by plain recursion, no memo."""
    result: set[str] = set()
    for nxt in step(wnid):
        result.add(nxt)
        result |= recursive_closure(step, nxt)
    return result


def baseline_related(tax: Taxonomy, ids: list[str]) -> set[str]:
    related: set[str] = set()
    for y in ids:
        related |= recursive_closure(tax.parents, y) | recursive_closure(tax.children, y)
    return related


def baseline_pool(tax: Taxonomy) -> list[str]:
    ids = set(tax.imagenet1k)
    id_ancestors: set[str] = set().union(*(recursive_closure(tax.parents, y) for y in ids))
    return [
        c
        for c in tax.lists["imagenet21k_goog"]
        if c not in ids and c not in id_ancestors and not recursive_closure(tax.parents, c) & ids
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no nltk baseline")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5

    tax = load_taxonomy()
    ids = tax.imagenet1k
    rows = []

    ours = cold_load_time(repeats)
    base = None if args.quick else nltk_read_time(tax)
    rows.append(("load snapshot (fresh process)", f"{len(tax):,} synsets", ours, base, "< 0.5 s"))

    ours = best_time(lambda: tax.ancestors(ids) | tax.descendants(ids), repeats)
    base = best_time(lambda: baseline_related(tax, ids), 1)
    assert baseline_related(tax, ids) == tax.ancestors(ids) | tax.descendants(ids)
    rows.append(("ancestors ∪ descendants of ImageNet-1k", "1,000 synsets", ours, base, "—"))

    ours = best_time(ood_class_pool, repeats)
    base = best_time(lambda: baseline_pool(tax), 1)
    assert baseline_pool(tax) == ood_class_pool().wnids
    rows.append(("ood_class_pool() (WordNet filter)", "21,843 candidates", ours, base, "—"))

    print_table(rows)


if __name__ == "__main__":
    main()
