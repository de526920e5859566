"""Hierarchical inference rules: Selective, Climbing, MaxCoverage and Jumping (hsc.md §3).

Every rule, for one sample, is a step function of the threshold θ (hsc.md §10): a row of candidate nodes
``s_0..s_K`` and non-decreasing thresholds ``t_1..t_K`` with ``pred(θ) = s_j``, ``j = #{k : t_k < θ}``.
:func:`step_table` builds these rows for all samples at once ((N, K+1) states, (N, K) thresholds); the rule
functions evaluate them at one θ, and :mod:`hsc.curves` sweeps them exactly over all θ.

Each rule is "the first candidate whose score reaches θ, else the last one (the root)", with candidates:

- ``selective``: [ŷ, root], scores [p(ŷ), –];
- ``climbing``: ŷ's path to the root (deepest first), scores = path probabilities (padded with the root);
- ``jumping``: the max-p node of each cut h = 0..D (cut h: internal nodes at depth D−h and leaves at depth
  ≤ D−h; ties to the lowest id), scores = the cut maxima;
- ``max_coverage``: the max-p node of each leaf-count class in ascending leaf count (= descending φ; ties
  to the lowest id), scores = the class maxima; the first class reaching θ has the largest φ among all
  nodes with p ≥ θ, and within it the largest p.

Thresholds are the running maxima of the scores, which leaves "first candidate with score ≥ θ" unchanged
and makes them non-decreasing even for non-monotone (e.g. float32 parity) node probabilities. ŷ is the first
maximal leaf. The root qualifies at every θ, including θ > 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from hsc.hierarchy import CHUNK_ROWS, Hierarchy
from hsc.parallel import map_row_chunks

T = TypeVar("T")

RULES = ("selective", "climbing", "max_coverage", "jumping")


@dataclass(frozen=True)
class StepTable:
    """Per-sample step functions of one rule.

    states: (N, K+1) int64 node indices; thresholds: (N, K) float64, non-decreasing along each row;
    pred(θ) = states[i, #{k : thresholds[i, k] < θ}].
    """

    states: np.ndarray
    thresholds: np.ndarray

    def predict(self, theta: float) -> np.ndarray:
        """(N,) predicted node indices at threshold ``theta``."""
        j = np.count_nonzero(self.thresholds < theta, axis=1)
        return np.take_along_axis(self.states, j[:, None], axis=1)[:, 0]


def check_theta(theta: float) -> float:
    """Validate a threshold θ ∈ [0, ∞]."""
    value = float(theta)
    if not value >= 0.0:
        raise ValueError(f"theta: expected a threshold in [0, inf], found {theta}")
    return value


def check_scores(scores: np.ndarray) -> None:
    """Reject NaN/inf or negative node probabilities among the ones a rule uses (NaN wins argmax, so a NaN
    anywhere on the compared nodes reaches the scores)."""
    low = scores.min(initial=0.0)
    if not (np.isfinite(low) and np.isfinite(scores.max(initial=0.0))) or low < 0:
        raise ValueError("probs: expected finite non-negative node probabilities, found NaN, inf or a negative value")


def check_rule(rule: str) -> str:
    """Validate a rule name."""
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {', '.join(RULES)}, found {rule!r}")
    return rule


def _prepare_probs(H: Hierarchy, probs: np.ndarray, precision: str) -> tuple[np.ndarray, bool]:
    """Validate ``probs`` once: (array, True for (N, V) node probabilities / False for (N, L) leaf ones)."""
    probs = np.asarray(probs)
    if probs.ndim == 2 and probs.shape[1] == H.num_nodes:
        if not np.issubdtype(probs.dtype, np.floating):
            raise ValueError(f"probs: expected floating-point probabilities, found dtype {probs.dtype}")
        node_input = True
    else:
        H.check_leaf_probs(probs)
        node_input = False
    if precision not in ("float64", "float32"):
        raise ValueError(f"precision: expected 'float64' or 'float32', found {precision!r}")
    return probs, node_input


def _node_block(H: Hierarchy, probs: np.ndarray, rows: slice, node_input: bool, precision: str) -> np.ndarray:
    """(n, V) float64 node probabilities of ``probs[rows]`` (validated by :func:`_prepare_probs`)."""
    if node_input:  # validated where used (check_scores), not here: a full pass costs more than a rule
        block = np.asarray(probs[rows], dtype=np.float64)
    else:
        block = H._node_probs_chunk(probs[rows])
    if precision == "float32":
        block = np.minimum(block.astype(np.float32), np.float32(1.0)).astype(np.float64)
    return block


def node_prob_chunks(H: Hierarchy, probs: np.ndarray, precision: str = "float64") -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (row slice, (n, V) float64 node probabilities) over chunks of rows.

    probs: (N, L) leaf probabilities, or (N, V) node probabilities (e.g. from ``H.node_probs``) used as they
    are. precision="float32" gives the reference's parity probabilities: rounded to float32, clipped at 1.
    """
    probs, node_input = _prepare_probs(H, probs, precision)
    for start in range(0, probs.shape[0], CHUNK_ROWS):
        rows = slice(start, min(start + CHUNK_ROWS, probs.shape[0]))
        yield rows, _node_block(H, probs, rows, node_input, precision)


def map_node_prob_chunks(
    H: Hierarchy, probs: np.ndarray, fn: Callable[[np.ndarray], T], precision: str = "float64"
) -> list[T]:
    """``[fn(P) for P in node_prob_chunks(H, probs, precision)]``, with the chunks spread over the shared
    thread pool (:mod:`hsc.parallel`); results in row order."""
    probs, node_input = _prepare_probs(H, probs, precision)

    def run(start: int, stop: int) -> T:
        return fn(_node_block(H, probs, slice(start, stop), node_input, precision))

    return map_row_chunks(run, probs.shape[0], CHUNK_ROWS)


def _first_max(P: np.ndarray, nodes: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
    """Max of P over ``nodes`` (ascending ids) per row and the first (lowest-id) node attaining it."""
    block = P[:, nodes]
    arg = np.argmax(block, axis=1)
    value = np.take_along_axis(block, arg[:, None], axis=1)[:, 0]
    ids = np.arange(P.shape[1])[nodes]
    return value, ids[arg]


def _better(value: np.ndarray, node: np.ndarray, best_value: np.ndarray, best_node: np.ndarray) -> np.ndarray:
    """Mask where (value, node) beats (best_value, best_node): higher p, ties to the lower id."""
    return (value > best_value) | ((value == best_value) & (node < best_node))


def _table_chunk(H: Hierarchy, P: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """(states (n, K+1), scores (n, K+1)) of ``rule`` on node probabilities ``P: (n, V)``; ValueError when a
    score the rule uses is NaN, inf or negative (:func:`check_scores`)."""
    n, L = P.shape[0], H.num_leaves
    top = np.argmax(P[:, :L], axis=1)
    rows = np.arange(n)
    if rule == "selective":
        states = np.stack([top, np.full(n, H.root)], axis=1)
        scores = np.stack([P[rows, top], np.ones(n)], axis=1)
    elif rule == "climbing":
        states = H.ancestors[top]
        scores = np.take_along_axis(P, states, axis=1)
    elif rule == "max_coverage":
        classes = _leaf_count_classes(H)
        states = np.empty((n, len(classes)), dtype=np.int64)
        scores = np.empty((n, len(classes)), dtype=np.float64)
        for k, (lo, hi) in enumerate(classes):
            scores[:, k], states[:, k] = _first_max(P, slice(lo, hi))
    else:
        depth_leaves, depth_internal = _depth_groups(H)
        best_value = np.full(n, -np.inf)
        best_node = np.full(n, np.iinfo(np.int64).max)
        cuts = []
        for d in range(H.max_depth + 1):  # leaves at depth <= d, as a running best
            if depth_leaves[d].size:
                value, node = _first_max(P, depth_leaves[d])
                take = _better(value, node, best_value, best_node)
                best_value = np.where(take, value, best_value)
                best_node = np.where(take, node, best_node)
            cut_value, cut_node = best_value, best_node
            if depth_internal[d].size:
                value, node = _first_max(P, depth_internal[d])
                take = _better(value, node, cut_value, cut_node)
                cut_value, cut_node = np.where(take, value, cut_value), np.where(take, node, cut_node)
            cuts.append((cut_value, cut_node))
        cuts.reverse()  # h = 0 is depth D
        scores = np.stack([c[0] for c in cuts], axis=1)
        states = np.stack([c[1] for c in cuts], axis=1)
    check_scores(scores)
    return states.astype(np.int64, copy=False), scores


def step_table(H: Hierarchy, probs: np.ndarray, rule: str, precision: str = "float64") -> StepTable:
    """The per-sample step functions of ``rule`` (see module docstring).

    probs: (N, L) leaf probabilities or (N, V) node probabilities. precision: "float64" (default) or
    "float32" (reference parity: node probabilities rounded to float32 and clipped at 1).
    """
    check_rule(rule)

    def chunk_table(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        states, scores = _table_chunk(H, P, rule)
        return states, np.maximum.accumulate(scores[:, :-1], axis=1)

    parts = map_node_prob_chunks(H, probs, chunk_table, precision)
    states_parts = [states for states, _ in parts]
    threshold_parts = [thresholds for _, thresholds in parts]
    if not states_parts:
        width = {"selective": 2, "climbing": H.max_depth + 1, "jumping": H.max_depth + 1}.get(
            rule, len(_leaf_count_classes(H))
        )
        return StepTable(np.empty((0, width), np.int64), np.empty((0, width - 1)))
    return StepTable(np.concatenate(states_parts), np.concatenate(threshold_parts))


def _leaf_count_classes(H: Hierarchy) -> list[tuple[int, int]]:
    """Contiguous id ranges [lo, hi) of equal leaf count, ascending leaf count (leaves first, root last)."""
    counts = np.asarray(H.leaf_count)
    if np.any(np.diff(counts) < 0):
        raise ValueError("H: max_coverage needs node ids in ascending leaf count (as built by from_edges)")
    edges = np.flatnonzero(np.diff(counts)) + 1
    bounds = np.concatenate([[0], edges, [H.num_nodes]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def _depth_groups(H: Hierarchy) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Leaves and internal nodes at each depth 0..D (ascending ids)."""
    depth = np.asarray(H.depth)
    nodes = np.arange(H.num_nodes)
    is_leaf = nodes < H.num_leaves
    leaves = [nodes[is_leaf & (depth == d)] for d in range(H.max_depth + 1)]
    internal = [nodes[~is_leaf & (depth == d)] for d in range(H.max_depth + 1)]
    return leaves, internal


def _predict(H: Hierarchy, probs: np.ndarray, theta: float, rule: str) -> np.ndarray:
    """(N,) predictions of ``rule`` at one θ: per chunk, the first candidate whose score reaches θ, else the
    last one (the same node as ``step_table(...).predict(θ)``, whose thresholds are running maxima of the
    scores, without building and keeping the (N, K) table)."""
    theta = check_theta(theta)
    check_rule(rule)

    def chunk_predict(P: np.ndarray) -> np.ndarray:
        states, scores = _table_chunk(H, P, rule)
        reached = scores >= theta
        reached[:, -1] = True
        return np.take_along_axis(states, np.argmax(reached, axis=1)[:, None], axis=1)[:, 0]

    parts = map_node_prob_chunks(H, probs, chunk_predict)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def selective(H: Hierarchy, probs: np.ndarray, theta: float) -> np.ndarray:
    """Selective baseline: ŷ if p(ŷ) >= θ, else the root.

    probs: (N, L) leaf probabilities or (N, V) node probabilities; theta in [0, inf] -> (N,) node indices.
    """
    return _predict(H, probs, theta, "selective")


def climbing(H: Hierarchy, probs: np.ndarray, theta: float) -> np.ndarray:
    """Climbing: the deepest node on ŷ's path to the root with p >= θ (the root when none).

    probs: (N, L) leaf probabilities or (N, V) node probabilities; theta in [0, inf] -> (N,) node indices.
    """
    return _predict(H, probs, theta, "climbing")


def max_coverage(H: Hierarchy, probs: np.ndarray, theta: float) -> np.ndarray:
    """MaxCoverage: among all nodes with p >= θ the largest φ, ties to higher p, then the lowest id; the root
    when none qualifies. probs: (N, L) or (N, V); theta in [0, inf] -> (N,) node indices."""
    return _predict(H, probs, theta, "max_coverage")


def jumping(H: Hierarchy, probs: np.ndarray, theta: float) -> np.ndarray:
    """Jumping: the max-p node (lowest id on ties) of the first cut h = 0..D whose maximum reaches θ; the root
    when none does. probs: (N, L) or (N, V); theta in [0, inf] -> (N,) node indices."""
    return _predict(H, probs, theta, "jumping")
