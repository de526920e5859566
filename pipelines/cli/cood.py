"""``uebench cood build``: the per-model C-OOD benchmark from stored inference outputs (cood.md, issue 5).

Inputs, all under the workspace:

- ``outputs/model=<M>/dataset=<id-dataset>/``: ID outputs (``label`` = ImageNet-1k index, ``pred``);
- ``outputs/model=<M>/dataset=<ood-dataset>/``: OOD outputs, ``sample_id`` = ``<wnid>/<file>`` and
  ``label`` = OOD class index;
- ``datasets/<ood-dataset>/manifest.csv`` (+ ``manifest.json``): the OOD split written by
  :func:`cood.imagenet21k.write_manifest`; it gives each OOD sample's role (estimation/test) and the
  class index -> wnid mapping.

κ is read from its output column, or computed from stored logits with ``cood.confidence`` when the column is
absent. Writes the export of :func:`cood.export.export_benchmark` plus the three result tables as Parquet
(``cood_levels.parquet``, ``cood_level_classes.parquet``, ``cood_class_severity.parquet``) into
``<workspace>/cood/<M>/<κ>/`` (or ``--output``), ingests the three tables into ``<workspace>/uebench.duckdb``
(unless ``--no-ingest``; keys are replaced, so a rebuild never duplicates rows) and prints the levels.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from pipelines.analyses.cood_benchmark import build_benchmark
from pipelines.analysis_options import DEFAULTS
from pipelines.engine.lifecycle import interrupted_note, open_workspace
from pipelines.engine.outputs import workspace_dataset
from pipelines.errors import UserError


def levels_table(levels: pl.DataFrame, title: str) -> Table:
    """A rich table of the per-level metrics."""
    table = Table(title=title)
    columns = (
        "level",
        "percentile",
        "severity",
        "n_ood",
        "ood_auroc",
        "fpr95",
        "aupr_in",
        "aupr_out",
        "ood_avg_conf",
    )
    for name in columns:
        table.add_column(name, justify="right")
    for row in levels.sort("level").iter_rows(named=True):
        table.add_row(*(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    return table


def ingest_tables(workspace: Path, tables: dict[str, pl.DataFrame]) -> dict[str, int]:
    """Ingest the C-OOD tables into the workspace's results database (one transaction); table -> rows."""
    from results.store import Store, database_path

    with Store.open(database_path(Path(workspace))) as store:
        return store.ingest_frames(tables)


def register(app: typer.Typer) -> None:
    """Add the ``cood`` command group (``cood build``) to the ``uebench`` app."""
    group = typer.Typer(
        help="Class-out-of-distribution benchmarks (severity levels per model and κ).", no_args_is_help=True
    )

    @group.command("build")
    def build(
        model: str = typer.Option(..., "--model", "-m", help="Model id as stored under outputs/model=<id>."),
        kappa: str = typer.Option(
            ...,
            "--kappa",
            "-k",
            help="Confidence function (output column or a cood.confidence name computed from logits).",
        ),
        workspace: Path = typer.Option(Path("uebench-workspace"), "--workspace", "-w", help="Workspace folder."),
        id_dataset: str | None = typer.Option(
            None, "--id-dataset", help="ID dataset name of the outputs (default: the workspace's ID dataset)."
        ),
        ood_dataset: str | None = typer.Option(
            None,
            "--ood-dataset",
            help="OOD dataset name of the outputs and of datasets/<name>/manifest.csv (default: the workspace's).",
        ),
        window: int | None = typer.Option(
            None, "--window", help=f"Classes per level (= number of ID classes; default {DEFAULTS.cood_window})."
        ),
        levels: int | None = typer.Option(
            None, "--levels", help=f"Number of severity levels (default {DEFAULTS.cood_levels})."
        ),
        output: Path | None = typer.Option(
            None, "--output", "-o", help="Export folder (default <workspace>/cood/<model>/<kappa>)."
        ),
        ingest: bool = typer.Option(
            True, "--ingest/--no-ingest", help="Also write the tables into <workspace>/uebench.duckdb."
        ),
    ) -> None:
        """Build the per-model C-OOD benchmark: severity levels, class lists, per-level metrics."""
        window = DEFAULTS.cood_window if window is None else window
        levels = DEFAULTS.cood_levels if levels is None else levels
        if window < 1 or levels < 2:
            raise UserError(f"--window must be >= 1 and --levels >= 2, got {window} and {levels}")
        marked = open_workspace(workspace, "uebench cood build")
        if marked:
            typer.echo(interrupted_note(marked), err=True)
        tables, folder = build_benchmark(
            model,
            kappa,
            workspace=workspace,
            id_dataset=id_dataset or workspace_dataset(workspace, "id", "imagenet-val"),
            ood_dataset=ood_dataset or workspace_dataset(workspace, "ood", "imagenet21k"),
            window=window,
            num_levels=levels,
            output=output,
        )
        if ingest:
            ingest_tables(workspace, tables)
        first = tables["cood_levels"].row(0, named=True)
        console = Console()
        console.print(levels_table(tables["cood_levels"], f"C-OOD levels: {model} / {kappa}"))
        console.print(
            f"ID accuracy {first['id_accuracy']:.4f}, ID AUROC {first['id_auroc']:.4f}, "
            f"K = {first['K']} classes, "
            f"mean OOD AUROC {tables['cood_levels']['ood_auroc'].mean():.4f}; written to {folder}"
        )

    app.add_typer(group, name="cood")
