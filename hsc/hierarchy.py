"""The class hierarchy as flat arrays: tree construction, node probabilities and correctness (hsc.md §1, §10).

A :class:`Hierarchy` is a rooted tree whose leaves are the classes. Leaves are nodes ``0..L-1`` in the order
the caller gives (timm's sorted-wnid order for ImageNet-1k, so leaf ``i`` is class index ``i``); internal nodes
follow, numbered like the reference implementation (ascending leaf count, ties in the order the reference's
child→parent fixpoint first records them, hsc.md §1.3), so the root is node ``V-1`` and on every root-to-leaf
path a deeper node has a smaller id. Internally every subtree is a contiguous range of a DFS leaf order, so

- ``u`` is an ancestor of leaf ``y`` ⇔ ``leaf_lo[u] <= leaf_pos[y] < leaf_hi[u]`` (O(1), no V×V table);
- node probabilities are float64 bottom-up sums, one vectorised ``np.add.reduceat`` over the (contiguous)
  children of each depth level, deepest first, so that p(parent) >= p(child) bitwise; p(root) := 1 exactly.

Construction (the reference's net rule, hsc.md §1.1): each child takes the parent of the *first* edge that
lists it; only nodes reached upward from the leaves are kept; every internal node with exactly one child is
contracted (a single-child root included); the root is the node without a parent.

Default ImageNet-1k tree (:func:`load_imagenet_hierarchy`): the same rule over the packaged WordNet 3.0
snapshot, each synset's parents in WordNet's order (hypernyms, then instance hypernyms). It differs from the
paper's tree built from ImageNet's ``wordnet.is_a.txt`` (whose parent order is not WordNet's; pass that file to
:meth:`Hierarchy.from_isa_file` for the paper's tree). Facts of the default tree (checked by the tests):

- 1,372 nodes = 1,000 leaves + 372 internal nodes (2–26 children, mean 3.69); 53 distinct φ among internal nodes;
- root ``n00001740`` (entity), WordNet's own root: its children are physical_entity (997 leaves) and
  abstraction (3 leaves: street sign, traffic light and bubble, whose first WordNet hypernyms are abstract);
  the paper's is-a file instead roots at physical_entity with bubble as a depth-1 leaf;
- maximum depth 16; leaf depths 2–16 (mean 9.46), histogram d2:1 d3:4 d4:8 d5:17 d6:66 d7:102 d8:183 d9:183
  d10:134 d11:101 d12:78 d13:36 d14:52 d15:33 d16:2;
- ``hierarchy_id`` 36d3cb08ac28… (the full digest is in tests/test_hsc_hierarchy.py).
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import os
import threading
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from hsc.parallel import map_row_chunks

# Rows handled at once by the analysis (≈ 11 MB of (rows, V) float64: the leaf argmax copies its strided block,
# which stays in cache; 1,024 was fastest for the rules, 4,096 and 256 were 20-40% slower).
CHUNK_ROWS = 1024
# Rows per block of the node-probability sums (a 5.6 MB node-major scratch; 256: +3%, 128: +20%), and
# rows per task when node_probs spreads its blocks over the thread pool.
SUM_ROWS = 512
PARALLEL_SUM_ROWS = 2048
SUM_TOLERANCE = 1e-3



_SCRATCH = threading.local()


def _node_major_scratch(num_nodes: int, rows: int) -> np.ndarray:
    """A per-thread reusable C-contiguous ``(num_nodes, rows)`` float64 scratch (no page faults per block)."""
    flat = getattr(_SCRATCH, "flat", None)
    if flat is None or flat.size < num_nodes * rows:
        flat = _SCRATCH.flat = np.empty(num_nodes * max(rows, SUM_ROWS), dtype=np.float64)
    return flat[: num_nodes * rows].reshape(num_nodes, rows)


def _check_rows(leaf_probs: np.ndarray, row_sums: np.ndarray, name: str) -> None:
    """Raise ValueError unless ``leaf_probs: (n, L)`` are finite, >= 0 and ``row_sums: (n,)`` are 1 within
    SUM_TOLERANCE (NaN and ±inf propagate into the row sums, so they are caught there first)."""
    if not np.isfinite(row_sums).all():
        raise ValueError(f"{name}: expected finite probabilities in [0, 1], found NaN or inf")
    low = leaf_probs.min(initial=0.0)
    if low < 0:
        raise ValueError(f"{name}: expected probabilities in [0, 1], found a negative value {low}")
    deviation = np.abs(row_sums - 1.0)
    if deviation.max(initial=0.0) > SUM_TOLERANCE:
        raise ValueError(
            f"{name}: expected rows summing to 1 within {SUM_TOLERANCE}, found a row summing to "
            f"{row_sums[np.argmax(deviation)]:.6g}"
        )

class Hierarchy:
    """A rooted class tree as arrays; leaves are nodes ``0..L-1``, the root is ``V-1``.

    Attributes (V = num_nodes, L = num_leaves, D = max depth):
        parent: (V,) int64, -1 for the root.
        children_ptr, children: CSR child lists (``children[children_ptr[v]:children_ptr[v+1]]``, ascending id).
        depth: (V,) int64, root 0.
        leaf_count: (V,) int64, number of leaves under each node.
        coverage: (V,) float64, φ(v) = 1 − log leaf_count(v) / log L (leaves 1, root 0).
        tin, tout: (V,) int64 DFS preorder entry time and exclusive exit time.
        leaf_order: (L,) int64, leaves in DFS order; leaf_pos: (L,) their position in it.
        leaf_lo, leaf_hi: (V,) int64, each subtree's contiguous leaf range [lo, hi) in DFS leaf order.
        ancestors: (V, D+1) int64, ``ancestors[v, k]`` = k-th ancestor of v (v itself at k = 0), padded with
            the root.
        ids: list of V node identifiers (wnids); names: list of V readable names.
        hierarchy_id: SHA-256 hex digest of the canonical sorted (parent id, child id) edge list.
    """

    def __init__(self, parent: np.ndarray, num_leaves: int, ids: Sequence[str], names: Sequence[str]):
        parent = np.asarray(parent, dtype=np.int64)
        num_nodes = parent.size
        if num_leaves < 2 or num_leaves > num_nodes:
            raise ValueError(f"num_leaves: expected 2 <= num_leaves <= {num_nodes}, found {num_leaves}")
        if len(ids) != num_nodes or len(names) != num_nodes:
            raise ValueError(f"ids/names: expected {num_nodes} entries, found {len(ids)}/{len(names)}")
        roots = np.flatnonzero(parent < 0)
        if roots.size != 1:
            raise ValueError(f"parent: expected exactly one root (parent -1), found {roots.size}")
        self.num_nodes = int(num_nodes)
        self.num_leaves = int(num_leaves)
        self.root = int(roots[0])
        self.parent = parent
        self.ids = list(ids)
        self.names = list(names)

        child_nodes = np.flatnonzero(parent >= 0)
        order = np.lexsort((child_nodes, parent[child_nodes]))
        self.children = child_nodes[order]
        self.children_ptr = np.zeros(num_nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(parent[child_nodes], minlength=num_nodes), out=self.children_ptr[1:])
        if np.any(self.children_ptr[1 : num_leaves + 1] != 0):
            raise ValueError("parent: nodes 0..L-1 must be leaves (no children)")
        if np.any(np.diff(self.children_ptr)[num_leaves:] == 0):
            raise ValueError("parent: every node numbered >= L must have children")

        # Iterative DFS preorder (children visited in ascending id), O(V).
        tin = np.full(num_nodes, -1, dtype=np.int64)
        tout = np.zeros(num_nodes, dtype=np.int64)
        depth = np.zeros(num_nodes, dtype=np.int64)
        children_list = self.children.tolist()
        ptr = self.children_ptr.tolist()
        clock = 0
        stack = [(self.root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                tout[node] = clock
                continue
            tin[node] = clock
            clock += 1
            stack.append((node, True))
            kids = children_list[ptr[node] : ptr[node + 1]]
            for kid in reversed(kids):
                depth[kid] = depth[node] + 1
                stack.append((kid, False))
        if clock != num_nodes:
            raise ValueError("parent: not a tree (some nodes are not reachable from the root, or a cycle)")
        self.tin, self.tout, self.depth = tin, tout, depth

        leaves = np.arange(num_leaves)
        self.leaf_order = leaves[np.argsort(tin[:num_leaves], kind="stable")]
        self.leaf_pos = np.empty(num_leaves, dtype=np.int64)
        self.leaf_pos[self.leaf_order] = leaves
        # Leaves with tin < tin[v] precede v's subtree; those with tin < tout[v] end it.
        sorted_tin = tin[self.leaf_order]
        self.leaf_lo = np.searchsorted(sorted_tin, tin, side="left").astype(np.int64)
        self.leaf_hi = np.searchsorted(sorted_tin, tout, side="left").astype(np.int64)
        self.leaf_count = self.leaf_hi - self.leaf_lo
        self.coverage = 1.0 - np.log(self.leaf_count.astype(np.float64)) / np.log(float(num_leaves))

        self.max_depth = int(depth.max())
        anc = np.empty((num_nodes, self.max_depth + 1), dtype=np.int64)
        anc[:, 0] = np.arange(num_nodes)
        up = parent.copy()
        up[self.root] = self.root
        for k in range(1, self.max_depth + 1):
            anc[:, k] = up[anc[:, k - 1]]
        self.ancestors = anc

        # Internal nodes by depth, deepest first, for the bottom-up sums (see _sum_levels).
        internal = np.arange(num_leaves, num_nodes)
        self._level_nodes = [internal[depth[internal] == d] for d in range(self.max_depth - 1, -1, -1)]

        edges = sorted((self.ids[p], self.ids[c]) for c, p in enumerate(parent.tolist()) if p >= 0)
        digest = hashlib.sha256("".join(f"{p}\t{c}\n" for p, c in edges).encode())
        self.hierarchy_id = digest.hexdigest()
        for array in (
            self.parent,
            self.children,
            self.children_ptr,
            self.tin,
            self.tout,
            self.depth,
            self.leaf_order,
            self.leaf_pos,
            self.leaf_lo,
            self.leaf_hi,
            self.leaf_count,
            self.coverage,
            self.ancestors,
        ):
            array.flags.writeable = False

    def __repr__(self) -> str:
        return (
            f"Hierarchy(num_leaves={self.num_leaves}, num_nodes={self.num_nodes}, "
            f"max_depth={self.max_depth}, root={self.ids[self.root]!r}, id={self.hierarchy_id[:12]})"
        )

    # ---- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_edges(
        cls,
        edges: Iterable[tuple[str, str]],
        leaves: Sequence[str],
        names: Mapping[str, str] | None = None,
    ) -> Hierarchy:
        """Build the tree from (parent, child) edges in "file order" with the reference's net rule.

        Each child takes the parent of the first edge listing it; only ancestors of ``leaves`` are kept;
        single-child internal nodes are contracted; the root is the one reached node without a parent.
        leaves: L >= 2 distinct ids, which become nodes 0..L-1 in this order. names: optional id -> name.
        Raises ValueError when a leaf has no parent, the leaves reach several roots, a leaf lies above
        another leaf, or the first-parent map has a cycle.
        """
        leaves = [str(leaf) for leaf in leaves]
        if len(leaves) < 2:
            raise ValueError(f"leaves: expected at least 2 leaf ids, found {len(leaves)}")
        if len(set(leaves)) != len(leaves):
            raise ValueError("leaves: expected distinct ids, found duplicates")
        first_parent: dict[str, str] = {}
        first_line: dict[str, int] = {}
        for line, edge in enumerate(edges):
            if len(edge) != 2:
                raise ValueError(f"edges: expected (parent, child) pairs, found {edge!r} at position {line}")
            p, c = str(edge[0]), str(edge[1])
            if p == c:
                raise ValueError(f"edges: self-loop {p!r} at position {line}")
            if c not in first_parent:
                first_parent[c] = p
                first_line[c] = line

        # Walk up from every leaf; collect the reached nodes and detect cycles.
        leaf_set = set(leaves)
        reached: set[str] = set(leaves)
        for leaf in leaves:
            node, path = leaf, {leaf}
            while node in first_parent:
                node = first_parent[node]
                if node in path:
                    raise ValueError(f"edges: the first-parent map has a cycle through {node!r}")
                if node in leaf_set:
                    raise ValueError(f"leaves: {node!r} is an ancestor of leaf {leaf!r}, so it is not a leaf")
                path.add(node)
                if node in reached:
                    break
                reached.add(node)
        roots = sorted(n for n in reached if n not in first_parent)
        if len(roots) != 1:
            orphan_leaves = [leaf for leaf in leaves if leaf not in first_parent]
            detail = f"; leaves without any parent: {orphan_leaves[:5]}" if orphan_leaves else ""
            raise ValueError(
                f"edges: expected the leaves to reach exactly one root, found {len(roots)}: {roots[:5]}{detail}"
            )
        root = roots[0]
        num_children: dict[str, int] = dict.fromkeys(reached, 0)
        for node in reached:
            if node != root:
                num_children[first_parent[node]] += 1

        # Reference key order (hsc.md §1.3): when each node is first recorded as a parent by the fixpoint.
        # A node entering the map at (pass, line) gets its parent at the first line listing it as a child,
        # in the same pass if that line comes later, otherwise in the next pass.
        recorded: dict[str, tuple[int, int]] = dict.fromkeys(leaves, (1, -1))
        heap: list[tuple[int, int, str]] = []

        def schedule(node: str) -> None:
            if node == root:
                return
            rec_pass, rec_line = recorded[node]
            line = first_line[node]
            heapq.heappush(heap, (rec_pass if line > rec_line else rec_pass + 1, line, node))

        for leaf in leaves:
            schedule(leaf)
        internal_keys: list[str] = []
        while heap:
            when_pass, when_line, child = heapq.heappop(heap)
            p = first_parent[child]
            if p not in recorded:
                recorded[p] = (when_pass, when_line)
                internal_keys.append(p)
                schedule(p)
        insertion: dict[str, None] = {}
        for key in [*leaves, *internal_keys]:
            if key != root:
                insertion.setdefault(key)
                insertion.setdefault(first_parent[key])
        insertion.setdefault(root)

        # Contract single-child nodes: keep leaves and nodes with >= 2 children.
        kept = [n for n in insertion if n in leaf_set or num_children[n] >= 2]
        kept_set = set(kept)

        def kept_parent(node: str) -> str | None:
            while node != root:
                node = first_parent[node]
                if node in kept_set:
                    return node
            return None

        leaf_count = dict.fromkeys(kept, 0)
        for leaf in leaves:
            node: str | None = leaf
            while node is not None:
                leaf_count[node] += 1
                node = kept_parent(node)
        internal = [n for n in kept if n not in leaf_set]
        internal.sort(key=lambda n: leaf_count[n])  # stable: insertion order breaks ties
        order = [*leaves, *internal]
        index = {n: i for i, n in enumerate(order)}
        parent = np.array([-1 if (q := kept_parent(n)) is None else index[q] for n in order], dtype=np.int64)
        node_names = [str(names.get(n, n)) if names is not None else n for n in order]
        return cls(parent, len(leaves), order, node_names)

    @classmethod
    def from_isa_file(
        cls, path: str | os.PathLike[str], leaves: Sequence[str], names: Mapping[str, str] | None = None
    ) -> Hierarchy:
        """Build the tree from an ImageNet-format is-a file (one ``parent_id child_id`` pair per line).

        Same rule as :meth:`from_edges` with the file's line order: the first line listing a child wins.
        Blank lines are ignored; any other line without exactly two fields raises ValueError.
        """
        edges = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise ValueError(
                        f"path: expected 'parent_id child_id' on every line of {path}, found {line.strip()!r}"
                        f" on line {number}"
                    )
                edges.append((fields[0], fields[1]))
        return cls.from_edges(edges, leaves, names)

    # ---- probabilities and correctness ------------------------------------------------------------------
    def check_leaf_probs(self, probs: np.ndarray, name: str = "probs") -> np.ndarray:
        """Validate ``probs: (N, L)`` leaf probabilities (finite, >= 0, rows summing to 1 within 1e-3)."""
        probs = self._check_leaf_layout(probs, name)
        for start in range(0, probs.shape[0], CHUNK_ROWS):
            chunk = probs[start : start + CHUNK_ROWS]
            _check_rows(chunk, chunk.sum(axis=1, dtype=np.float64), name)
        return probs

    def _check_leaf_layout(self, probs: np.ndarray, name: str = "probs") -> np.ndarray:
        """Shape and dtype part of :meth:`check_leaf_probs` (the values are checked where they are summed)."""
        probs = np.asarray(probs)
        if probs.ndim != 2 or probs.shape[1] != self.num_leaves:
            raise ValueError(f"{name}: expected shape (N, {self.num_leaves}) leaf probabilities, found {probs.shape}")
        if not np.issubdtype(probs.dtype, np.floating):
            raise ValueError(f"{name}: expected floating-point probabilities, found dtype {probs.dtype}")
        return probs

    @functools.cached_property
    def _sum_levels(self) -> list[tuple[np.ndarray, object]]:
        """Per depth level, deepest first: (internal nodes at that depth, their (n_nodes, V) CSR 0/1 matrix of
        children in CSR child order). Built on first use (scipy.sparse costs ~0.2 s to import)."""
        from scipy.sparse import csr_matrix

        levels = []
        for nodes in self._level_nodes:
            if nodes.size == 0:
                continue
            starts, ends = self.children_ptr[nodes], self.children_ptr[nodes + 1]
            kids = np.concatenate([self.children[s:e] for s, e in zip(starts, ends, strict=True)])
            pointers = np.concatenate(([0], np.cumsum(ends - starts)))
            matrix = csr_matrix((np.ones(kids.size), kids, pointers), shape=(nodes.size, self.num_nodes))
            levels.append((nodes, matrix))
        return levels

    def _node_probs_into(self, leaf_probs: np.ndarray, out: np.ndarray, check_as: str | None = None) -> None:
        """``leaf_probs: (n, L)`` (validated layout) -> node probabilities written into ``out: (n, V) float64``.

        Works on blocks of SUM_ROWS rows in a node-major (V, rows) float64 scratch, so that a node's values are
        one contiguous row: the leaves are copied in transposed, then each depth level, deepest first, is one
        sparse product ``children (n_nodes, V) 0/1 @ scratch``, which adds each parent's children rows one
        after the other in child order (products by 1.0 are exact). A sequential float sum of non-negative
        terms is >= each term, so p(parent) >= p(child) bitwise. The internal rows are copied back transposed
        and p(root) := 1. ``check_as``: validate the values on the fly under this argument name (the root's
        sum is the row sum), instead of a separate pass of :meth:`check_leaf_probs`.
        """
        num_leaves, levels = self.num_leaves, self._sum_levels
        for start in range(0, leaf_probs.shape[0], SUM_ROWS):
            leaves = leaf_probs[start : start + SUM_ROWS]
            block = out[start : start + SUM_ROWS]
            block[:, :num_leaves] = leaves
            scratch = _node_major_scratch(self.num_nodes, leaves.shape[0])
            np.copyto(scratch[:num_leaves], leaves.T)
            for nodes, children in levels:
                scratch[nodes] = children @ scratch
            if check_as is not None:
                _check_rows(leaves, scratch[self.root], check_as)
            np.copyto(block[:, num_leaves:], scratch[num_leaves:].T)
            block[:, self.root] = 1.0

    def _node_probs_chunk(self, leaf_probs: np.ndarray) -> np.ndarray:
        """``leaf_probs: (n, L)`` (validated) -> ``(n, V) float64`` node probabilities."""
        out = np.empty((leaf_probs.shape[0], self.num_nodes), dtype=np.float64)
        self._node_probs_into(leaf_probs, out)
        return out

    def node_probs(self, probs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``probs: (N, L)`` leaf probabilities -> ``(N, V) float64`` node probabilities p(v) = Σ_{y∈v} p(y).

        Float64 bottom-up accumulation (one vectorised sum per depth level, deepest first), which keeps
        p(parent) >= p(child) bitwise; then p(root) := 1 exactly. Works on blocks of rows, spread over the
        shared thread pool (:mod:`hsc.parallel`). ``out``: an optional
        C-contiguous ``(N, V) float64`` buffer to fill and return (reusing one across models avoids allocating
        and first-touching N·V·8 bytes per call). Raises ValueError on a wrong shape, NaN, negative values or
        rows not summing to 1 within 1e-3.
        """
        probs = self._check_leaf_layout(probs)
        shape = (probs.shape[0], self.num_nodes)
        if out is None:
            out = np.empty(shape, dtype=np.float64)
        elif out.shape != shape or out.dtype != np.float64 or not out.flags.c_contiguous:
            raise ValueError(
                f"out: expected a C-contiguous float64 array of shape {shape}, found {out.shape} {out.dtype}"
            )
        map_row_chunks(
            lambda a, b: self._node_probs_into(probs[a:b], out[a:b], check_as="probs"),
            probs.shape[0],
            PARALLEL_SUM_ROWS,
        )
        return out

    def check_labels(self, labels: np.ndarray, num_samples: int | None = None, name: str = "labels") -> np.ndarray:
        """Validate ``labels: (N,)`` leaf indices in [0, L) and return them as int64."""
        labels = np.asarray(labels)
        if labels.ndim != 1 or (num_samples is not None and labels.shape[0] != num_samples):
            want = f"({num_samples},)" if num_samples is not None else "(N,)"
            raise ValueError(f"{name}: expected shape {want} leaf indices, found {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{name}: expected integer leaf indices, found dtype {labels.dtype}")
        labels = labels.astype(np.int64, copy=False)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_leaves):
            raise ValueError(
                f"{name}: expected leaf indices in [0, {self.num_leaves}), found range [{labels.min()}, {labels.max()}]"
            )
        return labels

    def is_correct(self, pred_nodes: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``pred_nodes``: node indices (any shape (N, ...)); ``labels: (N,)`` leaf indices -> bool array of
        pred_nodes' shape: the prediction is the true leaf or one of its ancestors (DFS-interval test, O(N))."""
        pred = np.asarray(pred_nodes, dtype=np.int64)
        labels = self.check_labels(labels, pred.shape[0] if pred.ndim else None)
        if pred.size and (pred.min() < 0 or pred.max() >= self.num_nodes):
            raise ValueError(
                f"pred_nodes: expected node indices in [0, {self.num_nodes}), found range [{pred.min()}, {pred.max()}]"
            )
        pos = self.leaf_pos[labels].reshape(labels.shape + (1,) * (pred.ndim - 1))
        return (self.leaf_lo[pred] <= pos) & (pos < self.leaf_hi[pred])

    def lca_with_leaf(self, nodes: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``nodes: (N, ...)`` node indices, ``labels: (N,)`` leaves -> lowest common ancestors, nodes' shape.

        Climbs the (V, D+1) ancestor table of each node until its leaf range contains the label (≤ D+1 steps).
        """
        nodes = np.asarray(nodes, dtype=np.int64)
        pos = self.leaf_pos[self.check_labels(labels, nodes.shape[0])]
        pos = pos.reshape(pos.shape + (1,) * nodes.ndim)
        anc = self.ancestors[nodes]
        inside = (self.leaf_lo[anc] <= pos) & (pos < self.leaf_hi[anc])
        first = np.argmax(inside, axis=-1)
        return np.take_along_axis(anc, first[..., None], axis=-1)[..., 0]

    def severity(self, nodes: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Severity loss ℓ(v, y) = 1 − φ(LCA(v, y))/φ(v) (0 when φ(v) = 0) as float64, nodes' shape (hsc.md §2)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        lca = self.lca_with_leaf(nodes, labels)
        phi = self.coverage[nodes]
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = 1.0 - self.coverage[lca] / phi
        return np.where(phi > 0, loss, 0.0)


@functools.lru_cache(maxsize=1)
def load_imagenet_hierarchy() -> Hierarchy:
    """The default ImageNet-1k tree from the packaged WordNet 3.0 snapshot (cached; arrays are read-only).

    Leaves are the 1,000 ImageNet-1k wnids in timm's sorted order; each synset's first WordNet hypernym
    (instance hypernyms after hypernyms) is its parent. See the module docstring for the tree's facts.
    """
    from hsc.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    leaves = taxonomy.imagenet1k
    edges = taxonomy.isa_edges(leaves)
    nodes = {n for edge in edges for n in edge} | set(leaves)
    return Hierarchy.from_edges(edges, leaves, {n: taxonomy.name(n) for n in nodes})
