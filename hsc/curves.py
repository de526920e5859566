"""Exact hierarchical risk-coverage (hRC) curves and hAURC by a breakpoint sweep (hsc.md §2, §7.1, §10).

Each sample's prediction is a step function of θ (:func:`hsc.rules.step_table`). Every change of prediction
is an event (t, Δcoverage, Δcorrect, Δseverity); sorting the events and taking cumulative sums gives the
curve at θ = 0, at every distinct breakpoint t <= 1 and at θ = 1, applying the events with t < θ — exactly
the curve a brute-force evaluation at every node probability gives, without a threshold grid.

- coverage(θ) = mean φ(pred); risk "01" = 1 − (1/N)·#{pred ∈ anc(y)} over all N samples (root and coarse
  predictions count as correct and stay in the denominator); risk "severity" = mean of
  1 − φ(LCA(pred, y))/φ(pred) (0 for the root).
- hAURC: trapezoid rule over the points ordered by (coverage ascending, θ descending), over the coverage range
  the curve reaches (no (0, 0) point is added).
- ``grid=2|4`` (reference parity): θ runs over unique(round(P32, grid)) of the float32, clipped node
  probabilities of all samples and nodes, the rules compare θ with the unrounded float32 probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hsc.hierarchy import Hierarchy
from hsc.ordering import stable_order
from hsc.parallel import map_row_chunks
from hsc.rules import CHUNK_ROWS, RULES, StepTable, check_rule, node_prob_chunks, step_table

RISKS = ("01", "severity")


@dataclass(frozen=True)
class HRCPoints:
    """An hRC curve evaluated at ``thetas`` (ascending): coverage, 0/1 risk and severity risk, each (M,)."""

    thetas: np.ndarray
    coverage: np.ndarray
    risk_01: np.ndarray
    risk_severity: np.ndarray

    def risk(self, risk: str) -> np.ndarray:
        """The (M,) risk values of ``risk`` ("01" or "severity")."""
        return self.risk_01 if check_risk(risk) == "01" else self.risk_severity


def check_risk(risk: str) -> str:
    """Validate a risk name."""
    if risk not in RISKS:
        raise ValueError(f"risk: expected one of {', '.join(RISKS)}, found {risk!r}")
    return risk


def check_grid(grid: int | None) -> int | None:
    """Validate the grid mode (None = exact, 2 or 4 decimals)."""
    if grid is not None and grid not in (2, 4):
        raise ValueError(f"grid: expected None (exact), 2 or 4, found {grid!r}")
    return grid


@dataclass(frozen=True)
class Events:
    """All prediction changes of one rule over N samples, sorted by threshold.

    t: (E,) float64 ascending breakpoints; d_coverage, d_severity: (E,) float64; d_correct: (E,) int64;
    sample: (E,) int64 owning sample; base_*: the sums over samples at θ = 0.
    """

    t: np.ndarray
    d_coverage: np.ndarray
    d_correct: np.ndarray
    d_severity: np.ndarray
    sample: np.ndarray
    base_coverage: float
    base_correct: int
    base_severity: float
    num_samples: int


def state_values(H: Hierarchy, table: StepTable, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """(coverage, correct, severity) of every state: (N, K+1) float64, bool, float64."""
    coverage = np.asarray(H.coverage)[table.states]
    correct = H.is_correct(table.states, labels)
    severity = np.empty(table.states.shape, dtype=np.float64)

    def fill(start: int, stop: int) -> None:
        severity[start:stop] = H.severity(table.states[start:stop], labels[start:stop])

    map_row_chunks(fill, table.states.shape[0], CHUNK_ROWS)
    return coverage, correct, severity


def events(H: Hierarchy, table: StepTable, labels: np.ndarray) -> Events:
    """The sorted events of a step table (prediction changes only)."""
    labels = H.check_labels(labels, table.states.shape[0])
    coverage, correct, severity = state_values(H, table, labels)
    changed = table.states[:, 1:] != table.states[:, :-1]
    t = table.thresholds[changed]
    order = stable_order(t)
    sample = np.broadcast_to(np.arange(table.states.shape[0])[:, None], changed.shape)[changed]
    correct = correct.astype(np.int64)
    return Events(
        t=t[order],
        d_coverage=np.diff(coverage, axis=1)[changed][order],
        d_correct=np.diff(correct, axis=1)[changed][order],
        d_severity=np.diff(severity, axis=1)[changed][order],
        sample=sample[order],
        base_coverage=float(coverage[:, 0].sum()),
        base_correct=int(correct[:, 0].sum()),
        base_severity=float(severity[:, 0].sum()),
        num_samples=table.states.shape[0],
    )


def evaluate_events(ev: Events, thetas: np.ndarray) -> HRCPoints:
    """The curve at ``thetas`` (M,), applying every event with t < θ (float sums clipped to [0, 1])."""
    thetas = np.asarray(thetas, dtype=np.float64)
    applied = np.searchsorted(ev.t, thetas, side="left")
    n = max(ev.num_samples, 1)

    def total(base: float, deltas: np.ndarray) -> np.ndarray:
        csum = np.concatenate([[0], np.cumsum(deltas)])
        return base + csum[applied]

    return HRCPoints(
        thetas=thetas,
        coverage=np.clip(total(ev.base_coverage, ev.d_coverage) / n, 0.0, 1.0),
        risk_01=1.0 - total(ev.base_correct, ev.d_correct) / n,
        risk_severity=np.clip(total(ev.base_severity, ev.d_severity) / n, 0.0, 1.0),
    )


def grid_thresholds(H: Hierarchy, probs: np.ndarray, decimals: int) -> np.ndarray:
    """unique(round(P32, decimals)) over all samples and nodes, as float64 (the reference's θ grid)."""
    scale = np.float32(10.0**decimals)
    present = np.zeros(10**decimals + 1, dtype=bool)
    for _, P in node_prob_chunks(H, probs, precision="float32"):
        present[np.rint(P.astype(np.float32) * scale).astype(np.int64)] = True
    codes = np.flatnonzero(present).astype(np.float32)
    return (codes / scale).astype(np.float64)


def hrc_points(
    H: Hierarchy, probs: np.ndarray, labels: np.ndarray, rule: str = "climbing", grid: int | None = None
) -> HRCPoints:
    """The hRC curve of ``rule`` with both risks.

    probs: (N, L) leaf or (N, V) node probabilities; labels: (N,) leaf indices. grid=None: exact, at θ = 0,
    every distinct breakpoint <= 1 and θ = 1; grid=2|4: at the reference's rounded-threshold grid.
    """
    check_rule(rule)
    check_grid(grid)
    probs = np.asarray(probs)
    labels = H.check_labels(labels, probs.shape[0] if probs.ndim == 2 else None)
    precision = "float64" if grid is None else "float32"
    table = step_table(H, probs, rule, precision)  # row chunks on the shared thread pool
    if grid is not None:
        thetas = grid_thresholds(H, probs, grid)
    ev = events(H, table, labels)
    if grid is None:
        thetas = np.unique(np.concatenate([[0.0], ev.t[ev.t <= 1.0], [1.0]]))
    return evaluate_events(ev, thetas)


def hrc_curve(
    H: Hierarchy, probs: np.ndarray, labels: np.ndarray, rule: str = "climbing", risk: str = "01"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact hRC curve -> (thetas, coverage, risk), each (M,) float64, thetas ascending from 0 to 1.

    probs: (N, L) leaf probabilities (or (N, V) node probabilities); labels: (N,) leaf indices;
    rule in {"selective", "climbing", "max_coverage", "jumping"}; risk in {"01", "severity"}.
    """
    check_risk(risk)
    points = hrc_points(H, probs, labels, rule)
    return points.thetas, points.coverage, points.risk(risk)


def area(thetas: np.ndarray, coverage: np.ndarray, risk: np.ndarray) -> float:
    """Trapezoid area under (coverage, risk) with points ordered by (coverage ↑, θ ↓)."""
    order = np.lexsort((-np.asarray(thetas), np.asarray(coverage)))
    return float(np.trapezoid(np.asarray(risk)[order], np.asarray(coverage)[order]))


def haurc(
    H: Hierarchy,
    probs: np.ndarray,
    labels: np.ndarray,
    rule: str = "climbing",
    risk: str = "01",
    grid: int | None = None,
) -> float:
    """Area under the hRC curve (raw, not ×1000). grid=None: exact sweep; grid=2|4: reference parity grid."""
    check_risk(risk)
    points = hrc_points(H, probs, labels, rule, grid)
    return area(points.thetas, points.coverage, points.risk(risk))


def gain(haurc_rule: float, haurc_selective: float) -> float:
    """% improvement of a rule's hAURC over Selective's: 100·(sel − rule)/sel (NaN when sel is 0)."""
    if haurc_selective == 0:
        return float("nan")
    return 100.0 * (haurc_selective - haurc_rule) / haurc_selective


def all_rules_haurc(
    H: Hierarchy, probs: np.ndarray, labels: np.ndarray, grid: int | None = None
) -> dict[tuple[str, str], float]:
    """hAURC of every (rule, risk) pair, computing node probabilities once. probs: (N, L) or (N, V)."""
    probs = np.asarray(probs)
    if probs.ndim == 2 and probs.shape[1] == H.num_leaves:
        probs = H.node_probs(probs)
    out = {}
    for rule in RULES:
        points = hrc_points(H, probs, labels, rule, grid)
        for risk in RISKS:
            out[rule, risk] = area(points.thetas, points.coverage, points.risk(risk))
    return out
