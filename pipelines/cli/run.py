"""``uebench run CONFIG.toml`` (or flags): inference for a model list over datasets, then the analyses, then
ingestion. Flags build the same configuration as a TOML file would; with a config file they override it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pipelines.errors import UserError


def config_from_flags(
    raw: dict[str, Any],
    models: list[str] | None,
    id_root: Path | None,
    ood_root: Path | None,
    ray_address: str | None,
    analyses: list[str] | None,
) -> dict[str, Any]:
    """``raw`` (a parsed config, or {}) with the command-line flags applied: ``--model`` (repeatable) replaces
    ``models``; ``--id`` / ``--ood`` replace the ID / OOD dataset (named imagenet-val / imagenet21k);
    ``--ray-address`` sets ``[ray] address``; ``--analysis`` (repeatable) replaces ``analyses``."""
    merged = {key: (dict(value) if isinstance(value, dict) else value) for key, value in raw.items()}
    if models:
        merged["models"] = list(models)
    datasets = dict(merged.get("datasets", {}))
    for kind, root, default_name in (("id", id_root, "imagenet-val"), ("ood", ood_root, "imagenet21k")):
        if root is not None:
            names = [n for n, t in datasets.items() if isinstance(t, dict) and t.get("kind") == kind]
            previous = datasets.pop(names[0]) if names else {}
            datasets[names[0] if names else default_name] = {**previous, "kind": kind, "root": str(root.resolve())}
    if datasets:
        merged["datasets"] = datasets
    if ray_address:
        merged["ray"] = {**merged.get("ray", {}), "address": ray_address}
    if analyses:
        merged["analyses"] = list(analyses)
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
        id_root: Path | None = typer.Option(None, "--id", help="ImageNet-1k val folder (<wnid>/<image>)."),
        ood_root: Path | None = typer.Option(None, "--ood", help="ImageNet-21k-style OOD folder (<wnid>/<image>)."),
        ray_address: str | None = typer.Option(None, "--ray-address", help="Existing Ray cluster (host:port, auto)."),
        analysis: list[str] | None = typer.Option(
            None, "--analysis", "-a", help="Analysis to run (repeatable): selective, hsc, cood. Default: all."
        ),
        workspace: Path | None = typer.Option(None, "--workspace", "-w", help="Override the config's workspace."),
    ) -> None:
        """Run every model over every dataset (Ray, resumable), then every analysis, then ingest into DuckDB."""
        from pipelines.engine.run import run_from_config
        from pipelines.engine.run_config import load_config, load_raw, parse_config

        flags = (model, id_root, ood_root, ray_address, analysis)
        if config is None and not (model and (id_root or ood_root)):
            raise UserError("give a CONFIG.toml, or at least --model SPEC and --id DIR (see `uebench run --help`)")
        if config is not None and not any(flags):
            run_config = load_config(config, workspace)
        else:
            raw = load_raw(config) if config is not None else {}
            base = config.resolve().parent if config is not None else Path.cwd()
            run_config = parse_config(config_from_flags(raw, *flags), base, workspace)
        context = run_from_config(run_config)
        context.console.print(f"workspace: {context.workspace}")
