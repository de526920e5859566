"""A run from its configuration: datasets, models and analyses resolved and validated, then executed by the
driver (pipelines.engine.driver). The layer above the engine and the analyses, below the CLI."""

from __future__ import annotations

import pipelines.analyses as analyses
from pipelines.data.datasets import ImageDataset, load_dataset, load_flat, load_ood_split
from pipelines.engine.detectors import check_disjoint, sample_fit_set
from pipelines.engine.driver import RunContext, execute
from pipelines.engine.run_config import RunConfig
from pipelines.errors import UserError
from pipelines.zoo import resolve_all


def load_datasets(config: RunConfig) -> list[ImageDataset]:
    """Scan or index every configured dataset (UserError on a missing root, bad layout, unreadable container,
    bad label or non-1k wnids); container indexes are cached in the workspace (docs/datasets.md)."""
    loaded = []
    for ds in config.datasets:
        if ds.kind == "fit":
            continue  # not evaluated: load_fit_set
        if ds.ground_truth is not None:
            loaded.append(load_flat(ds.name, ds.root, ds.ground_truth))
        elif ds.kind == "ood":
            loaded.append(
                load_ood_split(
                    ds.name, ds.root, config.workspace, seed=config.seed, per_class=ds.per_class,
                    n_estimation=ds.n_estimation, min_images=ds.per_class, min_classes=config.analysis.cood_window,
                    format=ds.format, classes=ds.classes,
                )
            )
        else:
            loaded.append(load_dataset(
                ds.name, ds.root, ds.kind, workspace=config.workspace, format=ds.format, classes=ds.classes
            ))
    return loaded


def load_fit_set(config: RunConfig, datasets: list[ImageDataset]) -> ImageDataset | None:
    """The detectors' fit set (None without ``[detectors]``): the dataset of kind ``fit`` read as ImageNet-1k
    labelled images, sampled per class when ``fit_per_class`` is set; UserError when it shares an image with one
    of the evaluated ``datasets`` (pipelines.engine.detectors.check_disjoint)."""
    settings = config.detectors
    if settings is None:
        return None
    ds = next(d for d in config.datasets if d.name == settings.fit)
    if ds.ground_truth is not None:
        full = load_flat(ds.name, ds.root, ds.ground_truth)
    else:
        full = load_dataset(ds.name, ds.root, "id", workspace=config.workspace, format=ds.format, classes=ds.classes)
    fit_set = sample_fit_set(full, settings.fit_per_class, settings.seed)
    check_disjoint(fit_set, datasets)
    return fit_set


def default_analyses(datasets: list[ImageDataset]) -> list[str]:
    """Every registered analysis whose inputs exist: selective/hsc need an ID set, cood an ID and an OOD set."""
    kinds = {d.kind for d in datasets}
    wanted = []
    for name in analyses.REGISTRY:
        needs = analyses.REQUIRES.get(name, {"id"})
        if needs <= kinds:
            wanted.append(name)
    return wanted


def run_from_config(config: RunConfig) -> RunContext:
    """Validate everything that can be validated before touching the workspace, then run."""
    datasets = load_datasets(config)
    fit_set = load_fit_set(config, datasets)
    models = resolve_all(config.models)
    names = config.analyses if config.analyses is not None else default_analyses(datasets)
    unknown = [n for n in names if n not in analyses.REGISTRY]
    if unknown:
        raise UserError(f"unknown analyses {unknown}; available: {', '.join(analyses.REGISTRY)}")
    return execute(
        models,
        datasets,
        config.workspace,
        [(name, analyses.REGISTRY[name]) for name in names],
        options=config.analysis,
        config=config.raw,
        inference=config.inference,
        settings=config.engine,
        ray_address=config.ray_address,
        num_cpus=config.num_cpus,
        metadata_overrides=config.metadata_overrides,
        detectors=config.detectors,
        fit_set=fit_set,
    )
