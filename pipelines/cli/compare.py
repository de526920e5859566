"""``uebench compare NAME``: one of the seed papers' cross-model comparisons, its statistics and its rows.

The comparisons, their canned queries and statistics are :data:`results.comparisons.COMPARISONS`
(docs/comparisons.md). The rows come from the canned query on the read-only database; ``--origin`` and the
comparison's filter options narrow them before the statistics are computed.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import typer

from pipelines.cli.results import _WORKSPACE_HELP, _damaged_outputs_as_lines, _database, _open_workspace
from pipelines.errors import UserError

_FORMATS = ("table", "csv", "json")
_ORIGINS = ("both", "ours", "published")


def _comparison(name: str | None):  # -> results.comparisons.Comparison
    from results.comparisons import COMPARISONS

    if name is None:
        raise UserError(f"give a comparison: {', '.join(COMPARISONS)} (see uebench compare --list)")
    if name not in COMPARISONS:
        close = difflib.get_close_matches(name, list(COMPARISONS), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"comparisons: {', '.join(COMPARISONS)}"
        raise UserError(f"unknown comparison {name!r}; {hint}")
    return COMPARISONS[name]


def compare(
    name: str = typer.Argument(None, help="The comparison (see --list), e.g. metric_vs_accuracy."),
    metric: str = typer.Option(None, "--metric", help="Only this metric (auroc, aurc, ece15, cood_mean_auroc, …)."),
    x: str = typer.Option(None, "--x", help="metric_vs_accuracy: only this x axis, accuracy or auroc."),
    regime: str = typer.Option(None, "--regime", help="Only this regime (distilled, in21k, clip, plain, …)."),
    model: str = typer.Option(None, "--model", help="Only this model (our model id or a published name)."),
    family: str = typer.Option(None, "--family", help="Only this architecture family (resnet, vit, …)."),
    rule: str = typer.Option(None, "--rule", help="hsc_gain_by_regime: only this rule (climbing, jumping, …)."),
    origin: str = typer.Option("both", "--origin", help="ours, published or both (default)."),
    workspace: Path = typer.Option(Path("uebench-workspace"), "--workspace", "-w", help=_WORKSPACE_HELP),
    fmt: str = typer.Option("table", "--format", help="table (statistic lines, then the rows), csv or json."),
    statistics: bool = typer.Option(False, "--statistics", help="Print the statistics table instead of the rows."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples of the intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resamples."),
    confidence: float = typer.Option(0.95, "--confidence", help="Level of the bootstrap intervals."),
    list_comparisons: bool = typer.Option(False, "--list", help="List the comparisons and exit."),
) -> None:
    """Run one of the papers' cross-model comparisons over our results and the published tables."""
    import polars as pl

    from results import comparisons
    from results import sql as results_sql

    if list_comparisons:
        width = max(len(n) for n in comparisons.COMPARISONS)
        for entry in comparisons.COMPARISONS.values():
            typer.echo(f"{entry.name:<{width}}  {entry.description} — {entry.finding}")
        return
    chosen = _comparison(name)
    if fmt not in _FORMATS:
        raise UserError(f"--format must be one of {', '.join(_FORMATS)}, got {fmt!r}")
    if origin not in _ORIGINS:
        raise UserError(f"--origin must be one of {', '.join(_ORIGINS)}, got {origin!r}")
    if n_boot < 1:
        raise UserError(f"--n-boot must be >= 1, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise UserError(f"--confidence must be in (0, 1), got {confidence}")
    given = {option: value for option, value in (("metric", metric), ("x", x), ("regime", regime), ("model", model),
                                                 ("family", family), ("rule", rule)) if value is not None}
    for option, value in given.items():
        if option not in chosen.filters:
            usable = ", ".join(f"--{o}" for o in chosen.filters) or "none"
            raise UserError(f"--{option} does not apply to {chosen.name} (its options: {usable})")
        allowed = chosen.filters[option][1]
        if allowed is not None and value not in allowed:
            raise UserError(f"unknown {option} {value!r} for {chosen.name}; one of {', '.join(allowed)}")
    db_path = _database(workspace)
    _open_workspace(workspace, "uebench compare")
    with _damaged_outputs_as_lines():
        rows = results_sql.run_query(db_path, results_sql.canned_query(chosen.query).sql)
    if origin != "both":
        rows = rows.filter(pl.col("origin") == origin)
    for option, value in given.items():
        column = chosen.filters[option][0]
        matches = pl.col(column) == value
        if option == "model" and "model_id" in rows.columns:
            matches = matches | (pl.col("model_id") == value)
        narrowed = rows.filter(matches)
        if narrowed.height == 0 and option in ("model", "family"):
            known = sorted(set(rows.get_column(column).drop_nulls().to_list()))
            close = difflib.get_close_matches(value, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"no {option} {value!r} in {chosen.name} ({origin} origin){hint}")
        rows = narrowed
    stats = None
    if chosen.statistic is not None:
        stats = chosen.statistic(rows, n_boot=n_boot, seed=seed, confidence=confidence)
    if statistics:
        if stats is None:
            raise UserError(f"{chosen.name} has no statistics; its rows are the result (drop --statistics)")
        sys.stdout.write(results_sql.render(stats, fmt).decode("utf-8"))
        return
    lines = comparisons.statistic_lines(chosen.name, stats) if stats is not None else []
    if fmt == "table":
        for line in lines:
            typer.echo(line)
        if lines:
            typer.echo("")
        sys.stdout.write(results_sql.render(rows, fmt).decode("utf-8"))
    else:
        for line in lines:
            typer.echo(line, err=True)
        sys.stdout.write(results_sql.render(rows, fmt).decode("utf-8"))
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    """Add ``compare`` to the uebench CLI."""
    app.command("compare")(compare)
