"""Hierarchy construction, node probabilities and correctness against brute-force oracles (hsc.md §1, §2, §10).

The helpers here (random is-a edge lists, the leaf-set oracle) are shared with the other test_hsc_* files.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import hsc.hierarchy as hierarchy_module
from hsc.hierarchy import Hierarchy


# ---- shared helpers ---------------------------------------------------------------------------------------
def random_edges(rng: np.random.Generator, num_leaves: int, num_internal: int, extra: int):
    """A random is-a edge list ("shallow children first") with extra non-first parents, and shuffled leaves.

    Internal node k > 0 hangs below a random earlier internal node (so chains and childless internal nodes
    occur); leaves hang below random internal nodes. Each extra edge gives a random node a second parent
    chosen among shallower nodes, listed after its first parent.
    """
    parent = {f"i{k}": f"i{rng.integers(0, k)}" for k in range(1, num_internal)}
    leaves = [f"l{k}" for k in range(num_leaves)]
    for leaf in leaves:
        parent[leaf] = f"i{rng.integers(0, num_internal)}"
    depth = {"i0": 0}
    for k in range(1, num_internal):
        depth[f"i{k}"] = depth[parent[f"i{k}"]] + 1
    for leaf in leaves:
        depth[leaf] = depth[parent[leaf]] + 1
    lines = [(depth[c], 0, rng.random(), p, c) for c, p in parent.items()]
    nodes = list(depth)
    for _ in range(extra):
        c = nodes[rng.integers(0, len(nodes))]
        shallower = [n for n in nodes if depth[n] < depth[c] and n != parent.get(c)]
        if shallower:
            lines.append((depth[c], 1, rng.random(), shallower[rng.integers(0, len(shallower))], c))
    lines.sort(key=lambda t: (t[0], t[2]))
    # Keep each child's first parent first within its group.
    first_seen: dict[str, int] = {}
    ordered = []
    for _, is_extra, _, p, c in lines:
        if is_extra and c not in first_seen:
            continue
        first_seen.setdefault(c, len(ordered))
        ordered.append((p, c))
    order = rng.permutation(num_leaves)
    return ordered, [leaves[i] for i in order]


def leaf_clusters(edges, leaves):
    """Oracle: {node id: frozenset of leaves whose first-parent chain passes through it} (before pruning)."""
    first = {}
    for p, c in edges:
        first.setdefault(c, p)
    clusters: dict[str, set] = {}
    for leaf in leaves:
        node = leaf
        clusters.setdefault(node, set()).add(leaf)
        while node in first:
            node = first[node]
            clusters.setdefault(node, set()).add(leaf)
    return {k: frozenset(v) for k, v in clusters.items()}, first


def pruned_oracle(edges, leaves):
    """Oracle of the pruned tree: {kept node id: cluster}, the deepest reached node of each distinct cluster."""
    clusters, first = leaf_clusters(edges, leaves)

    def chain_depth(node):
        d = 0
        while node in first:
            node, d = first[node], d + 1
        return d

    best: dict[frozenset, str] = {}
    for node, cluster in clusters.items():
        if cluster not in best or chain_depth(node) > chain_depth(best[cluster]):
            best[cluster] = node
    return {node: cluster for cluster, node in best.items()}


class Oracle:
    """Brute-force tree facts from leaf clusters, indexed like ``H`` (verified against H's own arrays)."""

    def __init__(self, H: Hierarchy, kept: dict[str, frozenset]):
        self.H = H
        leaf_index = {leaf: i for i, leaf in enumerate(H.ids[: H.num_leaves])}
        self.leafsets = [frozenset(leaf_index[x] for x in kept[node]) for node in H.ids]
        self.L = H.num_leaves
        self.V = H.num_nodes
        self.root = max(range(self.V), key=lambda v: len(self.leafsets[v]))
        self.phi = np.array([1 - math.log(len(s)) / math.log(self.L) for s in self.leafsets])
        self.ancestors = [
            sorted(
                (u for u in range(self.V) if self.leafsets[v] <= self.leafsets[u]), key=lambda u: len(self.leafsets[u])
            )
            for v in range(self.V)
        ]  # v itself first, then upward
        self.depth = [len(a) - 1 for a in self.ancestors]

    def node_probs(self, probs):
        return np.stack([probs[:, sorted(s)].sum(axis=1) for s in self.leafsets], axis=1)

    def lca(self, v, y):
        return next(u for u in self.ancestors[v] if y in self.leafsets[u])

    def severity(self, v, y):
        return 0.0 if self.phi[v] == 0 else 1 - self.phi[self.lca(v, y)] / self.phi[v]


def random_case(seed: int, num_leaves: int = 12, num_internal: int = 9, extra: int = 4):
    rng = np.random.default_rng(seed)
    edges, leaves = random_edges(rng, num_leaves, num_internal, extra)
    H = Hierarchy.from_edges(edges, leaves)
    return H, Oracle(H, pruned_oracle(edges, leaves)), edges, leaves


def random_probs(rng: np.random.Generator, n: int, num_leaves: int, ties: bool = True):
    """(n, L) probabilities; with ties=True many rows repeat values (ties between leaves and nodes)."""
    logits = rng.normal(size=(n, num_leaves)) * rng.uniform(0.5, 4, size=(n, 1))
    if ties:
        logits = np.round(logits)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


# ---- construction ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(25))
def test_from_edges_matches_cluster_oracle(seed):
    H, oracle, edges, leaves = random_case(seed)
    kept = pruned_oracle(edges, leaves)
    assert sorted(H.ids) == sorted(kept)
    assert H.ids[: H.num_leaves] == leaves
    # Parent = the smallest strictly larger cluster; every internal node has >= 2 children.
    for v in range(H.num_nodes):
        larger = [u for u in range(H.num_nodes) if oracle.leafsets[v] < oracle.leafsets[u]]
        expect = min(larger, key=lambda u: len(oracle.leafsets[u])) if larger else -1
        assert H.parent[v] == expect
        assert H.depth[v] == oracle.depth[v]
        assert H.leaf_count[v] == len(oracle.leafsets[v])
    internal_children = np.diff(H.children_ptr)[H.num_leaves :]
    assert internal_children.min() >= 2
    assert H.root == H.num_nodes - 1 == oracle.root
    np.testing.assert_allclose(H.coverage, oracle.phi, rtol=0, atol=1e-15)
    # DFS intervals: u is an ancestor of leaf y <=> lo[u] <= pos[y] < hi[u]; ancestors table rows.
    for v in range(H.num_nodes):
        inside = {y for y in range(H.num_leaves) if H.leaf_lo[v] <= H.leaf_pos[y] < H.leaf_hi[v]}
        assert inside == set(oracle.leafsets[v])
        assert H.tin[v] <= H.tin[v] < H.tout[v]
        path = list(H.ancestors[v][: H.depth[v] + 1])
        assert path == oracle.ancestors[v]
        assert set(H.ancestors[v][H.depth[v] :]) == {H.root}
    # Deeper nodes on a path have smaller ids (reference numbering property).
    for v in range(H.num_nodes):
        if H.parent[v] >= 0:
            assert H.parent[v] > v


def reference_fixpoint_order(edges, leaves):
    """The reference's literal procedure (hsc.md §1.1, §1.3): rescan until the map stops changing, then
    number nodes by the key walk, drop single-child nodes, stable-sort by ascending leaf count."""
    mapping: dict[str, str | None] = dict.fromkeys(leaves)
    while True:
        before = dict(mapping)
        for p, c in edges:
            if c in mapping and mapping[c] is None:
                mapping[c] = p
                mapping[p] = None
        if mapping == before:
            break
    order: dict[str, None] = {}
    for key, par in mapping.items():
        if par is not None:
            order.setdefault(key)
            order.setdefault(par)
    return mapping, list(order)


@pytest.mark.parametrize("seed", range(25))
def test_internal_numbering_matches_reference_fixpoint(seed):
    H, oracle, edges, leaves = random_case(seed, num_leaves=14, num_internal=12, extra=6)
    mapping, order = reference_fixpoint_order(edges, leaves)
    first = {}
    for p, c in edges:
        first.setdefault(c, p)
    assert {k: v for k, v in mapping.items() if v is not None} == {k: first[k] for k in mapping if k in first}
    kept = set(H.ids)
    count = {node: len(oracle.leafsets[i]) for i, node in enumerate(H.ids)}
    expected = sorted((n for n in order if n in kept), key=lambda n: count[n])
    assert H.ids == expected


ISA_EXAMPLE = """\
E F
F x
F G
G y
G2 y
F H

H z
H w
E u
Q E
Z F
K x
M unrelated
"""


def test_from_isa_file_hand_built_example(tmp_path: Path):
    path = tmp_path / "is_a.txt"
    path.write_text(ISA_EXAMPLE)
    H = Hierarchy.from_isa_file(path, ["x", "y", "z", "w", "u"])
    # Q (single-child root) and G (single child y) are contracted; G2, Z, K are later parents; M unreached.
    assert H.ids == ["x", "y", "z", "w", "u", "H", "F", "E"]
    assert H.parent.tolist() == [6, 6, 5, 5, 7, 6, 7, -1]
    assert H.root == 7 and H.ids[H.root] == "E"
    assert H.depth.tolist() == [2, 2, 3, 3, 1, 2, 1, 0]
    assert H.leaf_count.tolist() == [1, 1, 1, 1, 1, 2, 4, 5]
    assert H.coverage[5] == pytest.approx(1 - math.log(2) / math.log(5), abs=1e-15)
    assert H.coverage[H.root] == 0.0 and (H.coverage[:5] == 1.0).all()


def test_tied_leaf_counts_follow_reference_key_order():
    # P2 is the parent of the first leaf, so the key walk inserts it before P1 although P1 is recorded first.
    edges = [("R", "P2"), ("R", "P1"), ("P1", "c"), ("P1", "d"), ("P2", "a"), ("P2", "b")]
    H = Hierarchy.from_edges(edges, ["a", "b", "c", "d"])
    assert H.ids == ["a", "b", "c", "d", "P2", "P1", "R"]


def test_hierarchy_id_is_edge_canonical():
    a = Hierarchy.from_edges([("r", "x"), ("r", "y"), ("r", "s"), ("s", "z"), ("s", "w")], ["x", "y", "z", "w"])
    b = Hierarchy.from_edges([("s", "w"), ("r", "s"), ("s", "z"), ("r", "y"), ("r", "x")], ["x", "y", "z", "w"])
    c = Hierarchy.from_edges([("r", "x"), ("r", "z"), ("r", "s"), ("s", "y"), ("s", "w")], ["x", "y", "z", "w"])
    assert a.hierarchy_id == b.hierarchy_id != c.hierarchy_id
    assert len(a.hierarchy_id) == 64


@pytest.mark.parametrize(
    ("edges", "leaves", "message"),
    [
        ([("r", "a"), ("q", "b")], ["a", "b"], "exactly one root"),
        ([("r", "a")], ["a", "b"], "leaves without any parent"),
        ([("a", "b"), ("r", "a"), ("r", "c")], ["a", "b", "c"], "is an ancestor of leaf"),
        ([("x", "y"), ("y", "x"), ("x", "a"), ("x", "b")], ["a", "b"], "cycle"),
        ([("r", "a"), ("r", "a")], ["a", "a"], "distinct"),
        ([("r", "a")], ["a"], "at least 2"),
    ],
)
def test_bad_trees_raise(edges, leaves, message):
    with pytest.raises(ValueError, match=message):
        Hierarchy.from_edges(edges, leaves)


def test_bad_isa_line(tmp_path: Path):
    path = tmp_path / "bad.txt"
    path.write_text("r a\nr b c\n")
    with pytest.raises(ValueError, match="line 2"):
        Hierarchy.from_isa_file(path, ["a", "b"])


# ---- node probabilities, correctness, LCA --------------------------------------------------------------
@pytest.mark.parametrize("seed", range(10))
def test_node_probs_against_cluster_sums(seed):
    H, oracle, _, _ = random_case(seed)
    rng = np.random.default_rng(100 + seed)
    probs = random_probs(rng, 300, H.num_leaves)
    P = H.node_probs(probs)
    assert P.dtype == np.float64 and P.shape == (300, H.num_nodes)
    expect = oracle.node_probs(probs)
    expect[:, H.root] = 1.0
    np.testing.assert_allclose(P, expect, rtol=1e-13, atol=1e-15)
    assert (P[:, H.root] == 1.0).all()
    child = np.flatnonzero(H.parent >= 0)
    assert (P[:, H.parent[child]] >= P[:, child]).all()  # bitwise monotone
    np.testing.assert_array_equal(P[:, : H.num_leaves], probs)
    # float32 input is accepted and summed in float64.
    P32 = H.node_probs(probs.astype(np.float32))
    np.testing.assert_allclose(P32, expect, atol=1e-6)


def test_node_probs_chunks_agree_with_whole():
    """9,000 rows span several pool tasks (PARALLEL_SUM_ROWS) and blocks: same rows as a small call, the oracle's
    sums, bitwise monotone; a bad row in a late task is still reported under the argument's name."""
    H, oracle, _, _ = random_case(3)
    probs = random_probs(np.random.default_rng(0), 9000, H.num_leaves)
    assert probs.shape[0] > 2 * hierarchy_module.PARALLEL_SUM_ROWS
    P = H.node_probs(probs)
    np.testing.assert_array_equal(P[5000:5003], H.node_probs(probs[5000:5003]))
    expect = oracle.node_probs(probs)
    expect[:, H.root] = 1.0
    np.testing.assert_allclose(P, expect, rtol=1e-13, atol=1e-15)
    child = np.flatnonzero(H.parent >= 0)
    assert (P[:, H.parent[child]] >= P[:, child]).all()
    probs[8500, 0] = np.nan
    with pytest.raises(ValueError, match="probs: expected finite"):
        H.node_probs(probs)


def test_node_probs_fills_a_given_buffer_and_rejects_a_wrong_one():
    H, _, _, _ = random_case(4)
    probs = random_probs(np.random.default_rng(1), 50, H.num_leaves)
    buffer = np.full((50, H.num_nodes), np.nan)
    assert H.node_probs(probs, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, H.node_probs(probs))
    for bad in (np.empty((49, H.num_nodes)), np.empty((50, H.num_nodes), np.float32),
                np.empty((H.num_nodes, 50)).T):
        with pytest.raises(ValueError, match="out: expected a C-contiguous float64 array"):
            H.node_probs(probs, out=bad)


@pytest.mark.parametrize("seed", range(8))
def test_is_correct_lca_severity_against_sets(seed):
    H, oracle, _, _ = random_case(seed)
    rng = np.random.default_rng(seed)
    n = 400
    pred = rng.integers(0, H.num_nodes, n)
    labels = rng.integers(0, H.num_leaves, n)
    expect = np.array([labels[i] in oracle.leafsets[pred[i]] for i in range(n)])
    np.testing.assert_array_equal(H.is_correct(pred, labels), expect)
    lca = np.array([oracle.lca(pred[i], labels[i]) for i in range(n)])
    np.testing.assert_array_equal(H.lca_with_leaf(pred, labels), lca)
    sev = np.array([oracle.severity(pred[i], labels[i]) for i in range(n)])
    np.testing.assert_allclose(H.severity(pred, labels), sev, atol=1e-15)
    assert H.is_correct(np.full(n, H.root), labels).all()
    # 2-D predictions (N, K) broadcast against (N,) labels.
    pred2 = np.stack([pred, np.full(n, H.root)], axis=1)
    np.testing.assert_array_equal(H.is_correct(pred2, labels)[:, 0], expect)


def test_bad_probabilities_raise():
    H, _, _, _ = random_case(0)
    good = random_probs(np.random.default_rng(0), 5, H.num_leaves)
    with pytest.raises(ValueError, match=rf"probs: expected shape \(N, {H.num_leaves}\)"):
        H.node_probs(good[:, :-1])
    bad = good.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"probs: .*NaN"):
        H.node_probs(bad)
    bad = good.copy()
    bad[1, 0] = -0.1
    bad[1, 1] += 0.1
    with pytest.raises(ValueError, match=r"probs: .*negative"):
        H.node_probs(bad)
    with pytest.raises(ValueError, match=r"probs: expected rows summing to 1 within 0\.001"):
        H.node_probs(good * 1.01)
    H.node_probs(good * (1 + 5e-4))  # within tolerance
    with pytest.raises(ValueError, match="labels: expected leaf indices"):
        H.is_correct(np.zeros(2, int), np.array([0, H.num_leaves]))
    with pytest.raises(ValueError, match="pred_nodes"):
        H.is_correct(np.array([H.num_nodes]), np.array([0]))


# ---- the default ImageNet-1k tree ------------------------------------------------------------------------
def test_imagenet_hierarchy_facts():
    from hsc.hierarchy import load_imagenet_hierarchy
    from hsc.taxonomy import load_taxonomy

    H = load_imagenet_hierarchy()
    T = load_taxonomy()
    assert H.ids[: H.num_leaves] == list(T.imagenet1k) and H.num_leaves == 1000
    assert (H.num_nodes, H.num_nodes - H.num_leaves, H.max_depth) == (1372, 372, 16)
    assert H.ids[H.root] == "n00001740" and H.root == H.num_nodes - 1  # entity: WordNet's root
    assert np.diff(H.children_ptr)[1000:].min() >= 2
    assert H.ids[H.parent[H.ids.index("n02084071")]] == "n02083346"  # dog -> canine (first hypernym)
    assert H.ids[1000] == "n01439121"  # cyprinid {tench, goldfish}, as the reference's id 1000
    assert H.coverage[1000] == pytest.approx(0.8996566681, abs=1e-10)
    assert np.bincount(H.depth[:1000]).tolist() == [0, 0, 1, 4, 8, 17, 66, 102, 183, 183, 134, 101, 78, 36, 52, 33, 2]
    assert H.hierarchy_id == "36d3cb08ac283bf3a1676fc4f6ba8821fa368dfc345758074f97e9f3a332696a"
    # every first-parent edge of a kept node is a WordNet hypernym chain
    for v in range(H.num_nodes - 1):
        assert H.ids[H.parent[v]] in T.ancestors([H.ids[v]])
