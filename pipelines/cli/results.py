"""``uebench sql``, ``uebench report`` and ``uebench import-reference``: the results database from the CLI.

``sql`` and ``report`` first tidy the workspace when no run holds it
(:func:`pipelines.engine.lifecycle.open_workspace`: runs left ``running`` by a dead driver become
``interrupted``, stale temporary files go). ``sql`` takes a QUERY that starts with a ``--`` comment as the query
(click would otherwise read it as an unknown option; a real unknown option, a word with no white space, is still
a one-line error). A damaged Parquet output is left out of the ``samples`` view with one
``warning:`` line naming it on stderr (:class:`results.store.DamagedOutputWarning`), never a traceback.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import typer

from pipelines.errors import UserError
from results.report_assets import DEFAULT_TOP_K

_WORKSPACE_HELP = "Workspace folder holding uebench.duckdb."


def _database(workspace: Path, must_exist: bool = True) -> Path:
    from results.store import database_path

    workspace = Path(workspace)
    if must_exist and not workspace.is_dir():
        raise UserError(f"workspace not found: {workspace} (set it with --workspace)")
    return database_path(workspace)


def _open_workspace(workspace: Path, command: str) -> None:
    """Housekeeping of ``workspace`` before reading it (skipped while a run holds it); notes marked runs."""
    from pipelines.engine.lifecycle import interrupted_note, open_workspace

    marked = open_workspace(workspace, command)
    if marked:
        typer.echo(interrupted_note(marked), err=True)


@contextlib.contextmanager
def _damaged_outputs_as_lines() -> Iterator[None]:
    """Print each :class:`~results.store.DamagedOutputWarning` raised inside as one ``warning:`` line on stderr
    (other warnings are shown as usual), also when the block raises."""
    from results.store import DamagedOutputWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedOutputWarning)
        try:
            yield
        finally:
            shown: set[str] = set()
            for item in caught:
                if not issubclass(item.category, DamagedOutputWarning):
                    warnings.showwarning(item.message, item.category, item.filename, item.lineno)
                elif str(item.message) not in shown:  # each store opened inside warns again
                    shown.add(str(item.message))
                    typer.echo(f"warning: {' '.join(str(item.message).split())}", err=True)


def sql(
    ctx: typer.Context,
    query: str = typer.Argument(None, help='One reading SQL statement, e.g. "SELECT * FROM models".'),
    file: Path = typer.Option(None, "--file", "-f", help="Read the SQL statement from this file."),
    name: str = typer.Option(None, "--query", "-q", help="Run the canned query NAME (see --list)."),
    workspace: Path = typer.Option(Path("uebench-workspace"), "--workspace", "-w", help=_WORKSPACE_HELP),
    fmt: str = typer.Option("table", "--format", help="Output format: table, csv, json or parquet."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the result to this file (needed for parquet)."),
    list_queries: bool = typer.Option(False, "--list", help="List the canned queries and exit."),
) -> None:
    """Run read-only SQL over the results database (a query, a .sql file or a canned query). It reads only the
    database and the workspace's outputs: other files, URLs, extensions and settings are refused."""
    from results import sql as results_sql

    # Unknown options pass through (a query may start with a `--` comment); a lone dash word is a mistyped option.
    if query is not None and query.startswith("-") and not any(char.isspace() for char in query):
        raise UserError(f"No such option: {query.split('=', 1)[0]} (see `uebench sql --help`)")
    if ctx.args:
        raise UserError(f"uebench sql takes one query argument; also got {' '.join(ctx.args)!r} (quote the query)")
    if list_queries:
        queries = results_sql.canned_queries()
        width = max(len(n) for n in queries)
        for query_name, canned in queries.items():
            typer.echo(f"{query_name:<{width}}  {canned.description}")
        return
    given = [flag for flag, value in (("QUERY", query), ("--file", file), ("--query", name)) if value is not None]
    if len(given) != 1:
        raise UserError(
            "give exactly one of QUERY, --file FILE.sql or --query NAME"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if fmt not in results_sql.FORMATS:
        raise UserError(f"--format must be one of {', '.join(results_sql.FORMATS)}, got {fmt!r}")
    if fmt == "parquet" and output is None:
        raise UserError("--format parquet writes a binary file: give --output FILE.parquet")
    if file is not None:
        if not Path(file).is_file():
            raise UserError(f"SQL file not found: {file}")
        text = Path(file).read_text(encoding="utf-8")
    elif name is not None:
        text = results_sql.canned_query(name).sql
    else:
        text = query
    db_path = _database(workspace)
    _open_workspace(workspace, "uebench sql")
    with _damaged_outputs_as_lines():
        frame = results_sql.run_query(db_path, text)
    data = results_sql.render(frame, fmt)
    if output is not None:
        path = results_sql.write_output(data, output)
        typer.echo(f"wrote {path} ({frame.height} rows, {fmt})", err=True)
    else:
        sys.stdout.write(data.decode("utf-8"))
        sys.stdout.flush()


def report(
    workspace: Path = typer.Option(Path("uebench-workspace"), "--workspace", "-w", help=_WORKSPACE_HELP),
    output: Path = typer.Option(
        None, "--output", "-o", help="Report folder to write (default: <workspace>/reports/report)."
    ),
    top_k: int = typer.Option(
        DEFAULT_TOP_K, "--top-k", "--max-models", help="Rows in each top-k table of the overview (old: --max-models)."
    ),
) -> None:
    """Write the offline HTML report: an overview page and one page per model; prints the overview's path."""
    from results.report import ReportError, build_report

    if top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {top_k}")
    db_path = _database(workspace)
    _open_workspace(workspace, "uebench report")
    with _damaged_outputs_as_lines():
        try:
            path = build_report(db_path, output, top_k=top_k)
        except ReportError as exc:
            raise UserError(str(exc)) from None
    typer.echo(str(path))


def import_reference(
    csv_file: Path = typer.Argument(
        ..., help="A published table: the C-OOD results CSV or the HSC models comparison CSV (told apart by header)."
    ),
    workspace: Path = typer.Option(Path("uebench-workspace"), "--workspace", "-w", help=_WORKSPACE_HELP),
    model_metadata: Path = typer.Option(
        None, "--model-metadata", help="Training-regime override file, .toml or .csv, keyed by published name."
    ),
) -> None:
    """Load a published table (C-OOD results -> reference_cood_levels, HSC models comparison ->
    reference_hsc_metrics) and its models' ids and training regimes (reference_models); replaces rows by key."""
    from pipelines.zoo.timm_models import published_timm_name
    from results.model_metadata import load_overrides
    from results.reference import COOD_FORMAT, detect_format, read_hsc_csv, read_reference_csv, reference_models
    from results.store import Store

    kind = detect_format(csv_file)
    overrides = load_overrides(model_metadata) if model_metadata is not None else None
    table = "reference_cood_levels" if kind == COOD_FORMAT else "reference_hsc_metrics"
    rows = read_reference_csv(csv_file) if kind == COOD_FORMAT else read_hsc_csv(csv_file)
    models = reference_models(rows["model_name"].unique(maintain_order=True), resolve=published_timm_name,
                              overrides=overrides)
    db_path = _database(workspace, must_exist=False)
    with Store.open(db_path) as store:
        counts = store.ingest_frames({table: rows, "reference_models": models})
    mapped = models["model_id"].drop_nulls().len()
    if kind == COOD_FORMAT:
        kappas = ", ".join(sorted(rows["kappa"].unique().to_list()))
        what = f"imported {counts[table]} rows ({models.height} models; κ {kappas})"
    else:
        what = f"imported {counts[table]} values ({models.height} models × {rows['column_name'].n_unique()} columns)"
    typer.echo(f"{what} into {table} of {db_path}; {mapped} of {models.height} model names map to a model id")


def register(app: typer.Typer) -> None:
    """Add ``sql``, ``report`` and ``import-reference`` to the uebench CLI."""
    # unknown options reach sql() as QUERY, so that "-- comment\nSELECT …" is a query (sql() refuses the rest)
    app.command("sql", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})(sql)
    app.command("report")(report)
    app.command("import-reference")(import_reference)
