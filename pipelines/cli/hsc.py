"""``uebench hsc calibrate``: a Climbing threshold with an accuracy guarantee from a model's stored outputs.

Reads ``<workspace>/outputs/model=<M>/dataset=<dataset>/`` (logits and ImageNet-1k labels), takes the float64
softmax, draws one seeded stratified calibration/test split (repetition 0 of :mod:`hsc.study`'s splits),
calibrates θ̂ on the calibration part (hsc.md §5) and prints θ̂ with the test part's hierarchical accuracy,
exact (leaf) accuracy and coverage. ``--repetitions R`` also runs the threshold study over R splits and prints
the mean test accuracy and the violation rate P(accuracy < 1 − α).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import typer
from rich.console import Console

from pipelines.analysis_options import DEFAULTS
from pipelines.engine.lifecycle import interrupted_note, open_workspace
from pipelines.engine.outputs import read_outputs, workspace_dataset
from pipelines.errors import UserError


def load_hierarchy(isa_file: Path | None):
    """The ImageNet-1k hierarchy: from an ImageNet ``wordnet.is_a.txt`` file, or the packaged default."""
    from hsc.hierarchy import Hierarchy, load_imagenet_hierarchy
    from hsc.taxonomy import load_taxonomy

    if isa_file is None:
        return load_imagenet_hierarchy()
    if not isa_file.is_file():
        raise UserError(f"--isa-file {isa_file} does not exist")
    return Hierarchy.from_isa_file(isa_file, load_taxonomy().imagenet1k)


def calibrate_model(
    workspace: Path,
    model: str,
    dataset: str,
    alpha: float,
    delta: float | None,
    method: str,
    seed: int,
    n_cal: int | None,
    isa_file: Path | None,
) -> dict[str, float | int | str | None]:
    """Calibrate on one seeded split of the stored outputs; returns the printed summary as a dict."""
    from hsc import calibration, rules
    from hsc.study import StratifiedSplitter
    from pipelines.analyses.hsc import leaf_probabilities

    if method not in calibration.METHODS:
        raise UserError(f"--method must be one of {', '.join(calibration.METHODS)}, got {method!r}")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be in (0, 1), got {alpha}")
    if method == "pac" and delta is None:
        raise UserError("--method pac needs --delta (e.g. --delta 0.1)")
    if delta is not None and not 0 < delta < 1:
        raise UserError(f"--delta must be in (0, 1), got {delta}")
    outputs = read_outputs(workspace, model, dataset)
    if outputs.logits is None:
        raise UserError(f"outputs of {model!r} on {dataset!r} have no logits column")
    H = load_hierarchy(isa_file)
    if outputs.logits.shape[1] != H.num_leaves:
        raise UserError(
            f"outputs of {model!r} have {outputs.logits.shape[1]} classes; the hierarchy has {H.num_leaves} leaves"
        )
    labels = outputs.labels
    if labels.min() < 0 or labels.max() >= H.num_leaves:
        raise UserError(f"labels of {model!r} on {dataset!r} are not ImageNet-1k class indices")
    n = labels.size
    n_cal = DEFAULTS.calibration_size(n, n_cal)
    if not 0 < n_cal < n:
        raise UserError(f"--n-cal must be between 1 and {n - 1} for {n} samples, got {n_cal}")
    probs = leaf_probabilities(outputs.logits, H)
    P = H.node_probs(probs)
    cal = StratifiedSplitter(labels, n_cal, seed, H.num_leaves).calibration_indices(0)
    test = np.setdiff1d(np.arange(n), cal)
    theta = calibration.calibrate(H, P[cal], labels[cal], alpha, delta, method)
    pred = rules.climbing(H, P[test], theta)
    return {
        "model": model,
        "dataset": dataset,
        "method": method,
        "alpha": alpha,
        "delta": delta,
        "seed": seed,
        "n_cal": int(n_cal),
        "n_test": int(test.size),
        "theta": theta,
        "accuracy": float(H.is_correct(pred, labels[test]).mean()),
        "exact_accuracy": float((pred == labels[test]).mean()),
        "coverage": float(H.coverage[pred].mean()),
        "hierarchy_id": H.hierarchy_id,
    }


def register(app: typer.Typer) -> None:
    """Add the ``hsc`` command group (``hsc calibrate``) to the ``uebench`` app."""
    group = typer.Typer(help="Hierarchical selective classification (calibrated thresholds).", no_args_is_help=True)

    @group.command("calibrate")
    def calibrate(
        model: str = typer.Option(..., "--model", "-m", help="Model id as stored under outputs/model=<id>."),
        alpha: float = typer.Option(..., "--alpha", "-a", help="Target hierarchical accuracy is 1 − alpha."),
        delta: float | None = typer.Option(None, "--delta", "-d", help="PAC confidence: P[acc >= 1−α] >= 1−δ."),
        method: str = typer.Option("conformal", "--method", help="conformal | pac | quantile (reference)."),
        workspace: Path = typer.Option(Path("uebench-workspace"), "--workspace", "-w", help="Workspace folder."),
        dataset: str | None = typer.Option(
            None, "--dataset", help="ID dataset name of the outputs (default: the workspace's ID dataset)."
        ),
        isa_file: Path | None = typer.Option(
            None, "--isa-file", help="ImageNet wordnet.is_a.txt for the paper's tree (default: WordNet snapshot)."
        ),
        seed: int | None = typer.Option(
            None, "--seed", help=f"Seed of the stratified calibration/test split (default {DEFAULTS.seed})."
        ),
        n_cal: int | None = typer.Option(
            None, "--n-cal", help=f"Calibration samples (default min({DEFAULTS.hsc_n_cal}, N/2))."
        ),
        repetitions: int = typer.Option(0, "--repetitions", "-r", help="Also run the study over R splits."),
    ) -> None:
        """Calibrate a Climbing threshold for target accuracy 1 − α; print θ, test accuracy and coverage."""
        marked = open_workspace(workspace, "uebench hsc calibrate")
        if marked:
            typer.echo(interrupted_note(marked), err=True)
        dataset = dataset or workspace_dataset(workspace, "id", "imagenet-val")
        seed = DEFAULTS.seed if seed is None else seed
        summary = calibrate_model(workspace, model, dataset, alpha, delta, method, seed, n_cal, isa_file)
        console = Console()
        theta = summary["theta"]
        theta_text = "inf (always the root)" if math.isinf(theta) else f"{theta:.6g}"
        console.print(
            f"{model} on {dataset}: {method} θ = {theta_text} for target accuracy {1 - alpha:.4g}"
            + (f" (δ = {delta})" if method == "pac" else "")
        )
        console.print(
            f"test ({summary['n_test']} samples; calibration {summary['n_cal']}, split seed {seed}): "
            f"hierarchical accuracy {summary['accuracy']:.4f}, leaf accuracy {summary['exact_accuracy']:.4f}, "
            f"coverage {summary['coverage']:.4f}; hierarchy {summary['hierarchy_id'][:12]}"
        )
        if repetitions > 0:
            from hsc.study import threshold_study
            from pipelines.analyses.hsc import PAC_DELTA, leaf_probabilities

            outputs = read_outputs(workspace, model, dataset)
            H = load_hierarchy(isa_file)
            row = threshold_study(
                H,
                leaf_probabilities(outputs.logits, H),
                outputs.labels,
                [alpha],
                methods=[method],
                delta=delta if delta is not None else PAC_DELTA,
                repetitions=repetitions,
                n_cal=summary["n_cal"],
                seed=seed,
            )[0]
            console.print(
                f"over {repetitions} splits: mean test accuracy {row['accuracy_mean']:.4f} "
                f"(± {row['accuracy_std']:.4f}), mean coverage {row['coverage_mean']:.4f}, "
                f"violation rate {row['violation_rate']:.3f}"
            )

    app.add_typer(group, name="hsc")
