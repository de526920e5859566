"""``uebench demo``."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.analysis_options import DEFAULTS


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        workspace: Path = typer.Option(
            Path("uebench-workspace"), "--workspace", "-w", help="Folder for data, outputs, database and report."
        ),
        images_per_class: int = typer.Option(
            24, min=2, help="Augmented images generated per class (more = slower, smoother metrics)."
        ),
        seed: int | None = typer.Option(
            None, help=f"Seed of the augmentations and of every random split (default {DEFAULTS.seed})."
        ),
    ) -> int:
        """Run the whole pipeline offline on real pretrained weights and real photographs (< 3 min on 2 cores)."""
        from pipelines.demo import run_demo
        from pipelines.engine.lifecycle import exit_code_for

        seed = DEFAULTS.seed if seed is None else seed
        return exit_code_for(run_demo(workspace, images_per_class=images_per_class, seed=seed).status)
