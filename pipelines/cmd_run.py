"""``uebench run CONFIG.toml``: inference for a model list over datasets, then the analyses, then ingestion."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        config: Path = typer.Argument(..., help="TOML run configuration (see pipelines/run_config.py)."),
        workspace: Path | None = typer.Option(None, "--workspace", "-w", help="Override the config's workspace."),
    ) -> None:
        """Run every model over every dataset (Ray, resumable), then every analysis, then ingest into DuckDB."""
        from pipelines.run import run_from_config
        from pipelines.run_config import load_config

        context = run_from_config(load_config(config, workspace))
        context.console.print(f"workspace: {context.workspace}")
