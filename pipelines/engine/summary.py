"""The summary tables a run prints at its end (``uebench run`` and ``uebench demo``): selective prediction,
C-OOD AUROC per severity level, and hAURC of every HSC rule with the calibrated Climbing threshold."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

ALPHA = 0.1  # target error of the calibrated Climbing threshold shown in the summary
MAX_MODELS = 40  # rows per table; a larger zoo is read in the report or with SQL


def _only(frame: pl.DataFrame, model_ids: list[str] | None) -> pl.DataFrame:
    """``frame`` restricted to the first MAX_MODELS of ``model_ids`` (None: of every model in it)."""
    keep = sorted(set(frame["model_id"].to_list()) if model_ids is None else model_ids)[:MAX_MODELS]
    return frame.filter(pl.col("model_id").is_in(keep))


def _results_table(db_path: Path, id_name: str, model_ids: list[str] | None, kappas: tuple[str, ...]) -> Table:
    from results.store import Store

    with Store.open(db_path, read_only=True) as store:
        rows = store.query(
            "SELECT model_id, kappa, n, accuracy, auroc, aurc, augrc, ece15 FROM selective_metrics "
            "WHERE NOT temperature_scaled AND subset = 'all' ORDER BY model_id"
        )
    rows = _only(rows.filter(pl.col("kappa").is_in(list(kappas))), model_ids)
    per_kappa = kappas != ("msp",)
    named = "one row per model and κ" if per_kappa else "κ = MSP"
    table = Table(title=f"selective prediction on {id_name} ({named}, no temperature scaling)")
    for column in ("model", *(("κ",) if per_kappa else ()), "images", "top-1 %", "AUROC", "AURC", "AUGRC", "ECE15"):
        table.add_column(column, justify="left" if column in ("model", "κ") else "right")
    for row in rows.sort("model_id", pl.col("kappa").replace_strict(kappas, range(len(kappas)))).iter_rows(named=True):
        table.add_row(
            row["model_id"], *((row["kappa"],) if per_kappa else ()), str(row["n"]), f"{100 * row['accuracy']:.1f}",
            *(f"{row[c]:.4f}" if row[c] is not None else "–" for c in ("auroc", "aurc", "augrc", "ece15")),
        )
    return table


def _hsc_table(db_path: Path, model_ids: list[str] | None) -> Table:
    from results.store import Store

    with Store.open(db_path, read_only=True) as store:
        rules = store.query(
            "SELECT model_id, rule, haurc, gain FROM hsc_rules "
            "WHERE risk_type = '01' AND NOT temperature_scaled ORDER BY model_id, rule"
        )
        conformal = store.query(
            f"SELECT model_id, theta_mean, accuracy_mean, coverage_mean, violation_rate, repetitions "
            f"FROM hsc_calibration WHERE method = 'conformal' AND alpha = {ALPHA} ORDER BY model_id"
        )
    rules = _only(rules, model_ids)
    table = Table(
        title=f"hierarchical selective classification (0/1 hAURC ×1000, Climbing threshold by conformal, "
        f"α = {ALPHA}: mean over splits)"
    )
    rule_names = sorted(set(rules["rule"].to_list()), key=["selective", "climbing", "max_coverage", "jumping"].index)
    for column in ("model", *rule_names, "θ̂", "test hier. acc %", "coverage %", "P(acc < 90%)"):
        table.add_column(column, justify="left" if column == "model" else "right")
    by_model = {row["model_id"]: row for row in conformal.iter_rows(named=True)}
    for model_id in sorted(set(rules["model_id"].to_list())):
        haurc = {r["rule"]: r for r in rules.filter(pl.col("model_id") == model_id).iter_rows(named=True)}
        study = by_model.get(model_id)
        cells = [
            f"{1000 * haurc[rule]['haurc']:.1f}" + ("" if rule == "selective" else f" ({haurc[rule]['gain']:+.0f}%)")
            for rule in rule_names
        ]
        if study is None:
            cells += ["–"] * 4
        else:
            cells += [
                f"{study['theta_mean']:.3f}",
                f"{100 * study['accuracy_mean']:.1f}",
                f"{100 * study['coverage_mean']:.1f}",
                f"{study['violation_rate']:.2f}",
            ]
        table.add_row(model_id, *cells)
    return table


def _cood_table(db_path: Path, model_ids: list[str] | None, kappas: tuple[str, ...] = ("msp",)) -> Table:
    from results.store import Store

    with Store.open(db_path, read_only=True) as store:
        levels = store.query(
            "SELECT model_id, kappa, level, ood_auroc FROM cood_levels ORDER BY model_id, kappa, level"
        )
    levels = _only(levels.filter(pl.col("kappa").is_in(list(kappas))), model_ids)
    num_levels = int(levels["level"].max()) + 1 if levels.height else 0
    named = "κ = MSP" if kappas == ("msp",) else "one row per model and κ"
    table = Table(title=f"C-OOD detection AUROC per severity level ({named}; level 0 = easiest for that model)")
    table.add_column("model")
    if kappas != ("msp",):
        table.add_column("κ")
    for level in range(num_levels):
        table.add_column(str(level), justify="right")
    for model_id in sorted(set(levels["model_id"].to_list())):
        for kappa in kappas:
            rows = levels.filter((pl.col("model_id") == model_id) & (pl.col("kappa") == kappa))
            if not rows.height:
                continue
            by_level = dict(rows.select("level", "ood_auroc").iter_rows())
            cells = [f"{by_level[lv]:.2f}" if by_level.get(lv) is not None else "–" for lv in range(num_levels)]
            table.add_row(model_id, *(() if kappas == ("msp",) else (kappa,)), *cells)
    return table


def print_summary(
    console: Console, db_path: Path, id_name: str, model_ids: list[str] | None = None,
    kappas: tuple[str, ...] = ("msp",),
) -> None:
    """Print the three tables from the results database for ``model_ids`` (None: every model), at most
    MAX_MODELS models each; tables the database does not have are left out. ``kappas``: the κ of the selective and
    C-OOD tables (one row per model and κ when more than MSP, e.g. the feature-space detectors' ``det_<name>``)."""
    from results.store import Store

    with Store.open(db_path, read_only=True, samples=False) as store:
        present = set(store.tables())
    if "selective_metrics" in present:
        console.print(_results_table(db_path, id_name, model_ids, kappas))
    if "cood_levels" in present:
        console.print(_cood_table(db_path, model_ids, kappas))
    if "hsc_rules" in present:
        console.print(_hsc_table(db_path, model_ids))
    if model_ids is not None and len(model_ids) > MAX_MODELS:
        console.print(f"(first {MAX_MODELS} of {len(model_ids)} models; all of them: uebench report, or uebench sql)")
