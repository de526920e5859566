"""The hierarchical selective classification analysis of one model (hsc.md §7): rows for the ``hsc_rules``,
``hsc_curves`` and ``hsc_calibration`` tables (results/schema.py).

- ``hsc_rules``: exact hAURC (raw, not ×1000) of every rule (selective, climbing, max_coverage, jumping) ×
  risk kind (``risk_type``: "01", "severity"), with the % gain over Selective in the same setting; ``grid`` is
  NULL (exact sweep). Rows without temperature scaling always; with ``temperature`` given, also rows from ``logits / T``
  (``temperature_scaled`` = true) over the same samples.
- ``hsc_curves``: the exact hRC curves, downsampled for storage to at most :data:`MAX_CURVE_POINTS` points per
  (rule, risk_type): evenly spaced positions along the θ-ordered points, always keeping θ = 0 and θ = 1; the
  numeric risk of each point is ``risk``.
- ``hsc_calibration``: the threshold study (:func:`hsc.study.threshold_study`) without temperature scaling,
  every α of ``alphas``: Climbing thresholds by conformal, pac (δ = 0.1) and quantile, and the DARTS baseline
  (ε = α; its ``theta_mean`` is the mean λ).

Softmax is computed in float64 from the stored logits (hsc.softmax.softmax, on row blocks in parallel).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from hsc import curves, study
from hsc.hierarchy import Hierarchy
from hsc.rules import RULES
from hsc.softmax import softmax
from pipelines.analysis_options import DEFAULTS
from results.schema import polars_schema, table_frame

MAX_CURVE_POINTS = 512
PAC_DELTA = 0.1
STUDY_METHODS = ("conformal", "pac", "quantile", "darts")


def downsample_indices(num_points: int, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """At most ``max_points`` sorted indices into ``num_points`` points, evenly spaced, first and last kept."""
    if num_points <= max_points:
        return np.arange(num_points)
    return np.unique(np.round(np.linspace(0, num_points - 1, max_points)).astype(np.int64))


def leaf_probabilities(logits: np.ndarray, hierarchy: Hierarchy, temperature: float | None = None) -> np.ndarray:
    """``logits: (N, L)`` -> ``(N, L) float64`` softmax(logits / T) (:func:`hsc.softmax.softmax`, block by block
    on the shared thread pool); ValueError on a wrong class count, a bad T or non-finite logits."""
    z = np.asarray(logits)
    if z.ndim != 2 or z.shape[1] != hierarchy.num_leaves:
        raise ValueError(f"logits: expected shape (N, {hierarchy.num_leaves}) for this hierarchy, found {z.shape}")
    if temperature is not None and not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature: expected a positive finite number, found {temperature}")
    return softmax(z, temperature=temperature)


def _rule_rows(
    model_id: str, H: Hierarchy, node_probs: np.ndarray, labels: np.ndarray, scaled: bool
) -> tuple[list[dict], list[dict]]:
    """hsc_rules and hsc_curves rows from ``node_probs: (N, V)`` float64 node probabilities."""
    rule_rows, curve_rows = [], []
    areas = {}
    for rule in RULES:
        points = curves.hrc_points(H, node_probs, labels, rule)
        keep = downsample_indices(points.thetas.size)
        for risk in curves.RISKS:
            values = points.risk(risk)
            areas[rule, risk] = curves.area(points.thetas, points.coverage, values)
            curve_rows.extend(
                {
                    "model_id": model_id,
                    "rule": rule,
                    "temperature_scaled": scaled,
                    "risk_type": risk,
                    "point": i,
                    "theta": float(points.thetas[k]),
                    "coverage": float(points.coverage[k]),
                    "risk": float(values[k]),
                }
                for i, k in enumerate(keep.tolist())
            )
    for (rule, risk), value in areas.items():
        rule_rows.append(
            {
                "model_id": model_id,
                "rule": rule,
                "temperature_scaled": scaled,
                "risk_type": risk,
                "haurc": value,
                "gain": 0.0 if rule == "selective" else curves.gain(value, areas["selective", risk]),
                "grid": None,
                "hierarchy_id": H.hierarchy_id,
            }
        )
    return rule_rows, curve_rows


def analyse_hsc(
    model_id: str,
    logits: np.ndarray,
    labels: np.ndarray,
    hierarchy: Hierarchy,
    *,
    temperature: float | None = None,
    alphas: Sequence[float] = DEFAULTS.hsc_alphas,
    repetitions: int = DEFAULTS.hsc_repetitions,
    seed: int = DEFAULTS.seed,
    n_cal: int | None = None,
) -> dict[str, pl.DataFrame]:
    """hAURC per rule and risk, the hRC curves and the threshold study of one model.

    logits: (N, L) float (L = hierarchy.num_leaves, class i = leaf i); labels: (N,) int leaf indices;
    temperature: T > 0 for additional temperature-scaled hsc_rules/hsc_curves rows; alphas, repetitions,
    seed, n_cal (default min(DEFAULTS.hsc_n_cal, N // 2)): the threshold study. Returns {table name: DataFrame} with
    exactly the columns of results/schema.py; ``run_id`` is null (the caller adds provenance,
    :func:`results.schema.with_values`).
    """
    labels = hierarchy.check_labels(labels, np.shape(logits)[0] if np.ndim(logits) == 2 else None)
    if temperature is not None:  # first, so that only one (N, L) and one (N, V) array are alive at a time
        scaled_nodes = hierarchy.node_probs(leaf_probabilities(logits, hierarchy, temperature))
        scaled_rules, scaled_curves = _rule_rows(model_id, hierarchy, scaled_nodes, labels, scaled=True)
        del scaled_nodes
    # one (N, V) node-probability array serves the curves and the study's step tables (Climbing and DARTS)
    node_probs = hierarchy.node_probs(leaf_probabilities(logits, hierarchy))
    rule_rows, curve_rows = _rule_rows(model_id, hierarchy, node_probs, labels, scaled=False)
    if temperature is not None:
        rule_rows += scaled_rules
        curve_rows += scaled_curves
    n = labels.size
    n_cal = DEFAULTS.calibration_size(n, n_cal)
    study_rows = study.threshold_study(
        hierarchy,
        node_probs,
        labels,
        alphas,
        methods=STUDY_METHODS,
        delta=PAC_DELTA,
        repetitions=repetitions,
        n_cal=n_cal,
        seed=seed,
    )
    study_columns = [c for c in polars_schema("hsc_calibration") if c not in ("model_id", "run_id")]
    calibration_rows = [{"model_id": model_id, **{k: row[k] for k in study_columns}} for row in study_rows]
    return {
        "hsc_rules": table_frame("hsc_rules", rule_rows),
        "hsc_curves": table_frame("hsc_curves", curve_rows),
        "hsc_calibration": table_frame("hsc_calibration", calibration_rows),
    }
