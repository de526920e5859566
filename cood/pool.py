"""The C-OOD class pool: ImageNet-21k synsets that WordNet says are unrelated to the ImageNet-1k classes.

A candidate synset c is removed when, for some in-distribution (ID) synset y, c = y, c is an ancestor of y,
or c is a descendant of y — transitively over hypernyms ∪ instance hypernyms, along every inheritance path
(the packaged WordNet 3.0 snapshot of :mod:`hsc.taxonomy`, never the single-parent ImageNet-1k tree). With the
defaults (ID = ImageNet-1k, candidates = the 21,843 fall11 synsets) 18,838 synsets remain; that list ships as
``cood/data/wordnet_filtered_v1.txt`` (SHA-256 :data:`WORDNET_FILTERED_V1_SHA256`).

An optional exclusion file removes visually ambiguous classes on top of the WordNet filter. Format: one wnid
per line followed by a ``#`` comment saying why, e.g. ``n03942813  # ping-pong ball vs golf ball``; blank and
comment-only lines are ignored.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import WNID_PATTERN, atomic_write_text
from hsc.taxonomy import Taxonomy, load_taxonomy

WORDNET_FILTERED_V1_PATH = Path(__file__).with_name("data") / "wordnet_filtered_v1.txt"
WORDNET_FILTERED_V1_SHA256 = "1f48739e446acb10414ddc837b00fd4405b33e81a1f64069b804528bc807ebcf"
WORDNET_FILTERED_V1_COUNT = 18_838
_EXCLUDE_LINE = re.compile(r"(?P<wnid>\S+)\s*#\s*(?P<comment>.*\S)\s*")


def class_list_sha256(wnids: Sequence[str]) -> str:
    """SHA-256 hex digest of a class list serialised as one wnid per line, each ending in a newline."""
    return hashlib.sha256("".join(f"{w}\n" for w in wnids).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class OODPool:
    """Result of :func:`ood_class_pool`.

    wnids: kept candidate synsets, in candidate order.
    removed: {wnid: reason} for every removed candidate, in candidate order; reasons are
        "is an ImageNet-1k class" (or "is an ID class" for a custom ID list), "ancestor of <id wnid>",
        "descendant of <id wnid>" or "excluded: <comment>".
    sha256: hash of the kept list (:func:`class_list_sha256`); it is the pool version recorded on results.
    pool_variant: "wordnet_only" without an exclusion file, else "wordnet_excluded".
    exclude_sha256: SHA-256 of the exclusion file's bytes, or None.
    """

    wnids: list[str]
    removed: dict[str, str]
    sha256: str
    pool_variant: str
    exclude_sha256: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """The pool version: SHA-256 of the kept class list."""
        return self.sha256

    def __len__(self) -> int:
        return len(self.wnids)


def read_exclusions(path: str | os.PathLike[str], candidates: Collection[str]) -> dict[str, str]:
    """Parse an exclusion file into {wnid: comment}, in file order.

    Raises ValueError (one line naming the file, the line number and the offending text) for a line without a
    ``# comment``, a malformed wnid or a wnid that is not one of ``candidates``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exclude: exclusion file not found: {path}")
    exclusions: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _EXCLUDE_LINE.fullmatch(stripped)
        if match is None:
            raise ValueError(f"exclude: {path} line {number}: expected 'wnid  # reason', found {stripped!r}")
        wnid, comment = match["wnid"], match["comment"]
        if not WNID_PATTERN.fullmatch(wnid):
            raise ValueError(f"exclude: {path} line {number}: expected a wnid like n03942813, found {wnid!r}")
        if wnid not in candidates:
            raise ValueError(
                f"exclude: {path} line {number}: unknown wnid {wnid} "
                f"(not one of the {len(candidates)} candidate synsets)"
            )
        exclusions[wnid] = comment
    return exclusions


def _first_related(
    num_nodes: int, parent: np.ndarray, child: np.ndarray, seed: np.ndarray, upward: bool
) -> np.ndarray:
    """(S,) int64: for each node, the smallest seed rank r such that node is a proper ancestor (``upward``) or
    proper descendant of seed node ``seed[r]``; -1 where there is none. Min-label propagation over all
    is-a edges until nothing changes (at most the taxonomy depth rounds)."""
    none = np.iinfo(np.int64).max
    label = np.full(num_nodes, none, dtype=np.int64)  # smallest seed rank at the node itself or below/above
    np.minimum.at(label, seed, np.arange(seed.size, dtype=np.int64))
    source, target = (child, parent) if upward else (parent, child)
    related = np.full(num_nodes, none, dtype=np.int64)  # smallest rank reached by ≥1 step
    while True:
        incoming = np.full(num_nodes, none, dtype=np.int64)
        np.minimum.at(incoming, target, np.minimum(label[source], related[source]))
        updated = np.minimum(related, incoming)
        if np.array_equal(updated, related):
            break
        related = updated
    return np.where(related == none, -1, related)


def ood_class_pool(
    id_wnids: Sequence[str] | None = None,
    candidates: Sequence[str] | None = None,
    exclude: str | os.PathLike[str] | None = None,
    taxonomy: Taxonomy | None = None,
) -> OODPool:
    """The WordNet-filtered OOD class pool.

    id_wnids: (W,) ID synsets (default: the 1,000 ImageNet-1k classes).
    candidates: (C,) candidate synsets (default: the 21,843 ImageNet-21k fall11 synsets).
    exclude: optional exclusion file (see module docstring), applied after the WordNet filter.
    taxonomy: the WordNet snapshot to use (default: the packaged one).
    Every wnid must be in the snapshot (ValueError naming the argument and the wnid otherwise).
    """
    tax = taxonomy if taxonomy is not None else load_taxonomy()
    default_id = id_wnids is None
    id_wnids = tax.imagenet1k if id_wnids is None else list(id_wnids)
    candidates = tax.lists["imagenet21k_goog"] if candidates is None else list(candidates)
    if not id_wnids:
        raise ValueError("id_wnids: expected at least one ID synset, found an empty list")
    for name, values in (("id_wnids", id_wnids), ("candidates", candidates)):
        unknown = [w for w in values if w not in tax]
        if unknown:
            raise ValueError(
                f"{name}: expected synsets of the WordNet snapshot, "
                f"found {len(unknown)} unknown, e.g. {unknown[0]!r}"
            )
    if len(set(candidates)) != len(candidates):
        raise ValueError("candidates: expected distinct wnids, found duplicates")

    id_rows = tax.index(id_wnids)
    cand_rows = tax.index(candidates)
    parent, child = tax.edge_index()
    ancestor_of = _first_related(len(tax), parent, child, id_rows, upward=True)[cand_rows]
    descendant_of = _first_related(len(tax), parent, child, id_rows, upward=False)[cand_rows]
    is_id = np.isin(cand_rows, id_rows)
    exclusions = read_exclusions(exclude, set(candidates)) if exclude is not None else {}

    id_reason = "is an ImageNet-1k class" if default_id else "is an ID class"
    kept: list[str] = []
    removed: dict[str, str] = {}
    counts = {"candidates": len(candidates), "id": 0, "ancestor": 0, "descendant": 0, "excluded": 0}
    for k, wnid in enumerate(candidates):  # one pass to assign reasons in candidate order
        if is_id[k]:
            removed[wnid], key = id_reason, "id"
        elif ancestor_of[k] >= 0:
            removed[wnid], key = f"ancestor of {id_wnids[ancestor_of[k]]}", "ancestor"
        elif descendant_of[k] >= 0:
            removed[wnid], key = f"descendant of {id_wnids[descendant_of[k]]}", "descendant"
        elif wnid in exclusions:
            removed[wnid], key = f"excluded: {exclusions[wnid]}", "excluded"
        else:
            kept.append(wnid)
            continue
        counts[key] += 1
    counts["kept"] = len(kept)
    return OODPool(
        wnids=kept,
        removed=removed,
        sha256=class_list_sha256(kept),
        pool_variant="wordnet_only" if exclude is None else "wordnet_excluded",
        exclude_sha256=hashlib.sha256(Path(exclude).read_bytes()).hexdigest()
        if exclude is not None
        else None,
        counts=counts,
    )


def wordnet_filtered_v1() -> list[str]:
    """The packaged default pool (18,838 wnids), verified against :data:`WORDNET_FILTERED_V1_SHA256`."""
    data = WORDNET_FILTERED_V1_PATH.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != WORDNET_FILTERED_V1_SHA256:
        raise ValueError(
            f"{WORDNET_FILTERED_V1_PATH}: expected SHA-256 {WORDNET_FILTERED_V1_SHA256}, found {digest}"
        )
    return data.decode("ascii").split()


def write_class_list(wnids: Sequence[str], path: str | os.PathLike[str]) -> str:
    """Write one wnid per line atomically (temp file + os.replace); returns the list's SHA-256."""
    atomic_write_text(path, "".join(f"{w}\n" for w in wnids), encoding="ascii")
    return class_list_sha256(wnids)
