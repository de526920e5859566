"""The packaged WordNet 3.0 taxonomy snapshot of the ImageNet synsets.

The snapshot (``hsc/data/wordnet_taxonomy_v1.json.gz``) holds every synset of three ImageNet class
lists — ``imagenet1k`` (timm's ``imagenet_synsets.txt``: 1,000 wnids in sorted order = class index),
``imagenet21k_goog`` (the fall11 release, 21,843 wnids) and ``imagenet22k`` (timm's
``imagenet22k_synsets.txt``, 21,841 wnids) — plus all their WordNet noun ancestors: 23,548 synsets. For each
synset it stores the ordered parents (hypernyms, then instance hypernyms, each in WordNet's own pointer order
as listed in ``data.noun``), the lemma names and the definition. :func:`load_taxonomy` reads it with the
standard library and numpy only (about 0.2 s): running uebench needs no WordNet install.
:func:`build_snapshot` regenerates it from nltk's WordNet 3.0 (``uebench taxonomy build``); the build is
deterministic, so a rebuild is byte-identical to the packaged file.

Because the snapshot is closed upwards (every ancestor of a member is a member), descendant queries are exact
*within the snapshot*: every WordNet descendant of a synset that is itself a snapshot member is found.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from common import WNID_PATTERN, atomic_write_bytes

SNAPSHOT_PATH = Path(__file__).with_name("data") / "wordnet_taxonomy_v1.json.gz"
SNAPSHOT_FORMAT = "uebench-wordnet-taxonomy"
SNAPSHOT_FORMAT_VERSION = 1
LIST_NAMES = ("imagenet1k", "imagenet21k_goog", "imagenet22k")


def _csr_gather(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Concatenate ``indices[indptr[r]:indptr[r+1]]`` for every r in ``rows`` (in that order), vectorised."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=indices.dtype)
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return indices[offsets + np.arange(total)]


def _csr(rows: np.ndarray, cols: np.ndarray, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, indices) of the pairs (rows[k], cols[k]); within a row the input order is kept."""
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=num_rows), out=indptr[1:])
    return indptr, cols[order].astype(np.int32)


class Taxonomy:
    """WordNet noun taxonomy restricted to the ImageNet synsets and their ancestors.

    Synsets are identified by wnid (``'n' + 8-digit WordNet 3.0 noun offset``). Internally synset i is
    ``self.wnids[i]`` (sorted wnids); parent and child relations are CSR arrays over those indices.
    """

    def __init__(
        self,
        wnids: Sequence[str],
        parents: Sequence[Sequence[int]],
        lemmas: Sequence[Sequence[str]],
        definitions: Sequence[str],
        lists: Mapping[str, Sequence[str]],
        sha256: str,
    ) -> None:
        """wnids: (S,) sorted synset ids; parents[i]: indices of synset i's parents in WordNet order;
        lemmas[i], definitions[i]: WordNet lemma names and gloss; lists: named class lists (wnids);
        sha256: hex digest of the snapshot file this taxonomy was read from."""
        self.wnids: list[str] = list(wnids)
        self._index = {w: i for i, w in enumerate(self.wnids)}
        if len(self._index) != len(self.wnids):
            raise ValueError("wnids: expected unique synset ids, found duplicates")
        counts = np.fromiter((len(p) for p in parents), dtype=np.int64, count=len(parents))
        self._parent_indptr = np.zeros(len(self.wnids) + 1, dtype=np.int64)
        np.cumsum(counts, out=self._parent_indptr[1:])
        self._parent_idx = np.fromiter(
            (p for ps in parents for p in ps), dtype=np.int32, count=int(self._parent_indptr[-1])
        )
        if self._parent_idx.size and (self._parent_idx.min() < 0 or self._parent_idx.max() >= len(self.wnids)):
            raise ValueError(f"parents: expected row indices in [0, {len(self.wnids)}), found out-of-range ones")
        child_of_edge = np.repeat(np.arange(len(self.wnids), dtype=np.int32), counts)
        self._child_indptr, self._child_idx = _csr(self._parent_idx, child_of_edge, len(self.wnids))
        self._lemmas = [list(x) for x in lemmas]
        self._definitions = list(definitions)
        self._lists = {name: list(values) for name, values in lists.items()}
        self.sha256 = sha256
        for name, values in self._lists.items():
            missing = [w for w in values if w not in self._index]
            if missing:
                raise ValueError(f"lists[{name!r}]: expected synsets of the taxonomy, found unknown {missing[:3]}")

    # ---- lists and membership -------------------------------------------------------------------------
    @property
    def lists(self) -> dict[str, list[str]]:
        """Named class lists (copies): imagenet1k, imagenet21k_goog, imagenet22k, in their file order."""
        return {name: list(values) for name, values in self._lists.items()}

    @property
    def imagenet1k(self) -> list[str]:
        """The 1,000 ImageNet-1k wnids in sorted order (= timm/torchvision class index)."""
        return list(self._lists["imagenet1k"])

    def __contains__(self, wnid: object) -> bool:
        return isinstance(wnid, str) and wnid in self._index

    def __len__(self) -> int:
        return len(self.wnids)

    def index(self, wnids: Iterable[str]) -> np.ndarray:
        """(K,) int64 positions of ``wnids`` in :attr:`wnids`; ValueError naming the first unknown wnid."""
        wnids = list(wnids)
        try:
            return np.fromiter((self._index[w] for w in wnids), dtype=np.int64, count=len(wnids))
        except KeyError as exc:
            raise ValueError(
                f"wnids: expected synsets of the WordNet snapshot, found unknown {exc.args[0]!r}"
            ) from None

    # ---- per-synset attributes -----------------------------------------------------------------------
    def _row(self, wnid: str) -> int:
        try:
            return self._index[wnid]
        except KeyError:
            raise ValueError(f"wnid: expected a synset of the WordNet snapshot, found {wnid!r}") from None

    def parents(self, wnid: str) -> list[str]:
        """Direct parents of ``wnid``: hypernyms then instance hypernyms, in WordNet's order."""
        i = self._row(wnid)
        return [self.wnids[j] for j in self._parent_idx[self._parent_indptr[i] : self._parent_indptr[i + 1]]]

    def children(self, wnid: str) -> list[str]:
        """Direct hyponyms and instance hyponyms of ``wnid`` that are snapshot members, in wnid order."""
        i = self._row(wnid)
        return [self.wnids[j] for j in self._child_idx[self._child_indptr[i] : self._child_indptr[i + 1]]]

    def lemmas(self, wnid: str) -> list[str]:
        """WordNet lemma names of ``wnid`` (underscores as in WordNet)."""
        return list(self._lemmas[self._row(wnid)])

    def name(self, wnid: str) -> str:
        """Readable name: the first lemma with underscores replaced by spaces."""
        return self._lemmas[self._row(wnid)][0].replace("_", " ")

    def definition(self, wnid: str) -> str:
        """WordNet gloss (definition) of ``wnid``."""
        return self._definitions[self._row(wnid)]

    # ---- transitive closures -------------------------------------------------------------------------
    def edge_index(self) -> tuple[np.ndarray, np.ndarray]:
        """All is-a edges as index arrays (parent (E,) int32, child (E,) int32) into :attr:`wnids`,
        grouped by child in wnid order and, within a child, its parents in WordNet order."""
        counts = np.diff(self._parent_indptr)
        child = np.repeat(np.arange(len(self.wnids), dtype=np.int32), counts)
        return self._parent_idx.copy(), child

    def _closure_mask(self, start: np.ndarray, upward: bool) -> np.ndarray:
        """(S,) bool: synsets reachable from ``start`` by ≥1 parent (upward) or child steps, all paths."""
        indptr, indices = (self._parent_indptr, self._parent_idx) if upward else (self._child_indptr, self._child_idx)
        reached = np.zeros(len(self.wnids), dtype=bool)
        frontier = np.unique(start)
        while frontier.size:
            step = _csr_gather(indptr, indices, frontier)
            step = np.unique(step[~reached[step]])
            reached[step] = True
            frontier = step
        return reached

    def ancestors(self, wnids: Iterable[str]) -> set[str]:
        """Proper ancestors of any of ``wnids`` (transitive over hypernyms ∪ instance hypernyms, all paths).
        A given wnid is included only if it is also an ancestor of another given wnid."""
        mask = self._closure_mask(self.index(wnids), upward=True)
        return {self.wnids[i] for i in np.flatnonzero(mask)}

    def descendants(self, wnids: Iterable[str]) -> set[str]:
        """Proper descendants of any of ``wnids`` among the snapshot members (hyponyms ∪ instance hyponyms,
        transitive, all paths). A given wnid is included only if it descends from another given wnid."""
        mask = self._closure_mask(self.index(wnids), upward=False)
        return {self.wnids[i] for i in np.flatnonzero(mask)}

    def isa_edges(self, leaves: Sequence[str]) -> list[tuple[str, str]]:
        """(parent, child) is-a edges reached upward from ``leaves``, in "file order".

        Nodes are visited breadth first from the leaves (given order, then each level in order of first
        discovery); each visited node contributes its parents in WordNet order (hypernyms, then instance
        hypernyms). Feeding the result to ``Hierarchy.from_edges(edges, leaves)`` ("first listed parent of a
        child wins") therefore picks each synset's first WordNet hypernym.
        """
        rows = self.index(leaves)
        if np.unique(rows).size != rows.size:
            raise ValueError("leaves: expected distinct wnids, found duplicates")
        seen = np.zeros(len(self.wnids), dtype=bool)
        seen[rows] = True
        order = [rows]
        frontier = rows
        while frontier.size:
            step = _csr_gather(self._parent_indptr, self._parent_idx, frontier).astype(np.int64)
            step = step[~seen[step]]
            _, first = np.unique(step, return_index=True)
            frontier = step[np.sort(first)]
            seen[frontier] = True
            order.append(frontier)
        visited = np.concatenate(order)
        counts = self._parent_indptr[visited + 1] - self._parent_indptr[visited]
        parents = _csr_gather(self._parent_indptr, self._parent_idx, visited)
        children = np.repeat(visited, counts)
        return [(self.wnids[p], self.wnids[c]) for p, c in zip(parents.tolist(), children.tolist(), strict=True)]


# ---- packaged snapshot ---------------------------------------------------------------------------------
def snapshot_sha256(path: str | os.PathLike[str] | None = None) -> str:
    """SHA-256 hex digest of the snapshot file (default: the packaged one)."""
    return hashlib.sha256(Path(path or SNAPSHOT_PATH).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path) -> Taxonomy:
    raw = path.read_bytes()
    try:
        payload = json.loads(gzip.decompress(raw))
    except (OSError, EOFError, ValueError) as exc:
        raise ValueError(f"path: expected a gzip'ed JSON taxonomy snapshot, cannot read {path}: {exc}") from None
    if payload.get("format") != SNAPSHOT_FORMAT or payload.get("format_version") != SNAPSHOT_FORMAT_VERSION:
        raise ValueError(
            f"path: expected a {SNAPSHOT_FORMAT} v{SNAPSHOT_FORMAT_VERSION} snapshot, found "
            f"{payload.get('format')!r} v{payload.get('format_version')!r} in {path}"
        )
    synsets = payload["synsets"]
    return Taxonomy(
        wnids=synsets["wnid"],
        parents=synsets["parents"],
        lemmas=synsets["lemmas"],
        definitions=synsets["definition"],
        lists=payload["lists"],
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def load_taxonomy(path: str | os.PathLike[str] | None = None) -> Taxonomy:
    """The taxonomy snapshot (default: the packaged one), cached per path; needs no WordNet install."""
    path = Path(path or SNAPSHOT_PATH).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"path: taxonomy snapshot not found: {path}")
    return _load_cached(path)


def _serialise(payload: dict) -> bytes:
    """Deterministic gzip'ed JSON: sorted keys, no whitespace, ASCII, gzip mtime 0 and no file name."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as handle:
        handle.write(text + b"\n")
    return buffer.getvalue()


def _pointer_order(data_noun: BinaryIO, offset: int) -> list[str]:
    """Hypernyms ('@') then instance hypernyms ('@i') of the data.noun line at byte ``offset``, each in the
    line's pointer order. (nltk keeps pointers in a set, so its ``hypernyms()`` order is arbitrary.)"""
    data_noun.seek(offset)
    fields = data_noun.readline().split(b" | ", 1)[0].split()
    if int(fields[0]) != offset:
        raise ValueError(f"WordNet: data.noun has no synset line at offset {offset:08d}")
    num_words = int(fields[3], 16)
    start = 4 + 2 * num_words
    num_pointers = int(fields[start])
    pointers = [fields[start + 1 + 4 * k : start + 5 + 4 * k] for k in range(num_pointers)]
    return [
        f"n{int(target):08d}" for symbol in (b"@", b"@i") for kind, target, _pos, _source in pointers if kind == symbol
    ]


def build_snapshot(
    synset_lists: Mapping[str, Sequence[str]],
    path: str | os.PathLike[str] = SNAPSHOT_PATH,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Build the snapshot from nltk's WordNet 3.0 and write it atomically to ``path``; returns ``path``.

    synset_lists: {"imagenet1k": 1,000 wnids, "imagenet21k_goog": 21,843, "imagenet22k": 21,841}, all three
        required (each kept in the given order; further names are accepted and stored the same way).
    progress: optional callback ``progress(done, total)`` over the synsets read from WordNet.
    Raises ValueError for a malformed wnid or one that is not a WordNet 3.0 noun synset, and
    LookupError (from nltk) when no WordNet database is installed.
    """
    lists: dict[str, list[str]] = {}
    for name, values in synset_lists.items():
        values = [str(v).strip() for v in values]
        bad = [v for v in values if not WNID_PATTERN.fullmatch(v)]
        if bad:
            raise ValueError(f"synset_lists[{name!r}]: expected wnids like 'n01440764', found {bad[:3]}")
        if len(set(values)) != len(values):
            raise ValueError(f"synset_lists[{name!r}]: expected distinct wnids, found duplicates")
        lists[name] = values
    missing = [name for name in LIST_NAMES if name not in lists]
    if missing:
        raise ValueError(f"synset_lists: expected the lists {list(LIST_NAMES)}, missing {missing}")

    from nltk.corpus import wordnet  # the only place nltk is used: building, never loading

    if wordnet.get_version() != "3.0":
        raise ValueError(f"WordNet: expected version 3.0, found {wordnet.get_version()}")

    records: dict[str, tuple[list[str], list[str], str]] = {}
    pending = sorted({w for values in lists.values() for w in values})
    total = len(pending)
    with open(wordnet.abspath("data.noun"), "rb") as data_noun:
        while pending:
            discovered: set[str] = set()
            for wnid in pending:
                try:
                    synset = wordnet.synset_from_pos_and_offset("n", int(wnid[1:]))
                except Exception as exc:  # nltk raises WordNetError or ValueError for unknown offsets
                    raise ValueError(f"synset_lists: {wnid} is not a WordNet 3.0 noun synset ({exc})") from None
                if synset is None or synset.pos() != "n" or synset.offset() != int(wnid[1:]):
                    raise ValueError(f"synset_lists: {wnid} is not a WordNet 3.0 noun synset")
                parents = _pointer_order(data_noun, int(wnid[1:]))
                expected = {f"n{p.offset():08d}" for p in (*synset.hypernyms(), *synset.instance_hypernyms())}
                if set(parents) != expected:
                    raise ValueError(f"WordNet: data.noun hypernyms of {wnid} disagree with nltk's")
                records[wnid] = (parents, list(synset.lemma_names()), synset.definition())
                discovered.update(p for p in parents if p not in records)
                if progress is not None:
                    progress(len(records), total)
            pending = sorted(discovered - records.keys())
            total += len(pending)

    wnids = sorted(records)
    row = {w: i for i, w in enumerate(wnids)}
    payload = {
        "format": SNAPSHOT_FORMAT,
        "format_version": SNAPSHOT_FORMAT_VERSION,
        "wordnet_version": "3.0",
        "lists": lists,
        "synsets": {
            "wnid": wnids,
            "parents": [[row[p] for p in records[w][0]] for w in wnids],
            "lemmas": [records[w][1] for w in wnids],
            "definition": [records[w][2] for w in wnids],
        },
    }
    path = Path(path)
    atomic_write_bytes(path, _serialise(payload))
    _load_cached.cache_clear()
    return path
