"""``uebench run CONFIG.toml`` (or flags): inference for a model list over datasets, then the analyses, then
ingestion. Flags build the same configuration as a TOML file would; with a config file they override it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pipelines.analysis_options import DEFAULTS
from pipelines.errors import UserError


def config_from_flags(
    raw: dict[str, Any],
    models: list[str] | None,
    id_root: Path | str | None,
    ood_root: Path | str | None,
    ray_address: str | None,
    analyses: list[str] | None,
    *,
    per_class: int | None = None,
    n_estimation: int | None = None,
    window: int | None = None,
    levels: int | None = None,
    shards: int | None = None,
    model_metadata: Path | None = None,
) -> dict[str, Any]:
    """``raw`` (a parsed config, or {}) with the command-line flags applied: ``--model`` (repeatable) replaces
    ``models``; ``--id`` / ``--ood`` replace the ID / OOD dataset (named imagenet-val / imagenet21k);
    ``--ray-address`` sets ``[ray] address``; ``--analysis`` (repeatable) replaces ``analyses``;
    ``--per-class`` / ``--n-estimation`` set ``per_class`` / ``n_estimation`` of every OOD dataset;
    ``--window`` / ``--levels`` set ``[cood] window`` / ``levels``; ``--shards`` sets ``[inference] shards``;
    ``--model-metadata`` sets ``model_metadata``.

    Only the raw keys are written (None: flag not given); their values are checked by
    :func:`pipelines.engine.run_config.parse_config`. Raises UserError when ``--per-class`` or
    ``--n-estimation`` is given without an OOD dataset to apply it to.
    """
    merged = {key: (dict(value) if isinstance(value, dict) else value) for key, value in raw.items()}
    if models:
        merged["models"] = list(models)
    datasets = dict(merged.get("datasets", {}))
    for kind, root, default_name in (("id", id_root, "imagenet-val"), ("ood", ood_root, "imagenet21k")):
        if root is not None:
            names = [n for n, t in datasets.items() if isinstance(t, dict) and t.get("kind") == kind]
            previous = datasets.pop(names[0]) if names else {}
            previous.pop("format", None)  # detected from the new root
            given = str(root) if "://" in str(root) else str(Path(root).resolve())
            datasets[names[0] if names else default_name] = {**previous, "kind": kind, "root": given}
    ood_flags = (("per_class", per_class), ("n_estimation", n_estimation))
    ood_keys = {key: value for key, value in ood_flags if value is not None}
    if ood_keys:
        ood_names = [n for n, t in datasets.items() if isinstance(t, dict) and t.get("kind") == "ood"]
        if not ood_names:
            flags = " and ".join(f"--{key.replace('_', '-')}" for key in ood_keys)
            verb = "needs" if len(ood_keys) == 1 else "need"
            raise UserError(f"{flags} {verb} an OOD dataset: give --ood DIR (or one of kind ood in the config)")
        for name in ood_names:
            datasets[name] = {**datasets[name], **ood_keys}
    if datasets:
        merged["datasets"] = datasets
    if ray_address:
        merged["ray"] = {**merged.get("ray", {}), "address": ray_address}
    if analyses:
        merged["analyses"] = list(analyses)
    cood = {key: value for key, value in (("window", window), ("levels", levels)) if value is not None}
    if cood:
        merged["cood"] = {**merged.get("cood", {}), **cood}
    if shards is not None:
        merged["inference"] = {**merged.get("inference", {}), "shards": shards}
    if model_metadata is not None:
        merged["model_metadata"] = str(Path(model_metadata).resolve())
    return merged


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        config: Path | None = typer.Argument(
            None, help="TOML run configuration (see README / pipelines/engine/run_config.py); optional with flags."
        ),
        model: list[str] | None = typer.Option(
            None, "--model", "-m", help="Model spec (repeatable), e.g. timm:resnet50.a1_in1k or timm:vit_*."
        ),
        id_root: str | None = typer.Option(
            None, "--id", help="ImageNet-1k val: folder, tars, shards or s3:// URI (docs/datasets.md)."
        ),
        ood_root: str | None = typer.Option(
            None, "--ood", help="ImageNet-21k-style OOD set: folder, tar of tars, shards or s3:// URI."
        ),
        ray_address: str | None = typer.Option(None, "--ray-address", help="Existing Ray cluster (host:port, auto)."),
        analysis: list[str] | None = typer.Option(
            None, "--analysis", "-a", help="Analysis to run (repeatable): selective, hsc, cood. Default: all."
        ),
        workspace: Path | None = typer.Option(None, "--workspace", "-w", help="Override the config's workspace."),
        per_class: int | None = typer.Option(
            None, "--per-class", help="OOD images sampled per class (classes with fewer are dropped; default 200)."
        ),
        n_estimation: int | None = typer.Option(
            None, "--n-estimation", help="Of those, images that estimate class severity (default 150)."
        ),
        window: int | None = typer.Option(
            None,
            "--window",
            help=f"C-OOD classes per severity level (default {DEFAULTS.cood_window}; the demo: its 5 ID classes).",
        ),
        levels: int | None = typer.Option(
            None, "--levels", help=f"C-OOD severity levels (default {DEFAULTS.cood_levels})."
        ),
        shards: int | None = typer.Option(
            None, "--shards", help="Inference shards per dataset (inference.shards in a config)."
        ),
        model_metadata: Path | None = typer.Option(
            None, "--model-metadata", help="Training-regime override file, .toml or .csv (docs/models.md)."
        ),
    ) -> int:
        """Run every model over every dataset (Ray, resumable), then every analysis, then ingest into DuckDB.

        Exit code: 0 ok, 3 some models or analyses failed (the others' results are stored), 1 every model
        failed, 2 bad input or a busy workspace, 130 interrupted (docs/engine.md)."""
        from pipelines.engine.inference import detector_column
        from pipelines.engine.lifecycle import exit_code_for
        from pipelines.engine.run_config import load_config, load_raw, parse_config
        from pipelines.engine.summary import print_summary
        from pipelines.run import run_from_config
        from results.store import database_path

        flags = (model, id_root, ood_root, ray_address, analysis)
        numbers = {
            "per_class": per_class, "n_estimation": n_estimation, "window": window, "levels": levels, "shards": shards,
            "model_metadata": model_metadata,
        }
        if config is None and not (model and (id_root or ood_root)):
            raise UserError("give a CONFIG.toml, or at least --model SPEC and --id DIR (see `uebench run --help`)")
        if config is not None and not any(flags) and all(value is None for value in numbers.values()):
            run_config = load_config(config, workspace)
        else:
            raw = load_raw(config) if config is not None else {}
            base = config.resolve().parent if config is not None else Path.cwd()
            run_config = parse_config(config_from_flags(raw, *flags, **numbers), base, workspace)
        context = run_from_config(run_config)
        ids = context.id_datasets()
        if context.status != "failed" and ids:
            models = [m.model_id for m in context.models]
            detectors = run_config.inference.detectors
            print_summary(context.console, database_path(context.workspace), ids[0].name, models,
                          kappas=("msp", *(detector_column(name) for name in detectors)))
        context.console.print(f"workspace: {context.workspace}")
        context.console.print(f"  database: {database_path(context.workspace)}")
        context.console.print(f"  log:      {context.workspace / 'logs' / (context.run_id + '.log')}")
        if context.status != "ok":
            context.console.print(
                f"run {context.run_id} {context.status}: see run_tasks (uebench sql \"SELECT * FROM run_tasks "
                f"WHERE run_id = '{context.run_id}' AND status = 'failed'\") and the log"
            )
        return exit_code_for(context.status)
