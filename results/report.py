"""The HTML report: one self-contained, offline file with the leaderboards, curves and provenance of a workspace.

Sections (each present even without data, saying so): selective-prediction, C-OOD and HSC leaderboards;
risk-coverage curves and reliability diagrams from the per-sample outputs (``samples`` view: confidence = MSP,
correct = pred == label, in-distribution datasets only); hierarchical risk-coverage curves (``hsc_curves``); the
C-OOD degradation graph (OOD AUROC against severity level, one line per (model, κ)); our C-OOD levels against the
published ones; and the run's provenance (runs, models, run_tasks). Plots are PNGs drawn with matplotlib's Agg
backend and embedded as base64, so the file needs no network and no other file.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from common import DB_FILENAME, atomic_write_text
from results.sql import canned_query
from results.store import Store

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RELIABILITY_BINS = 15
_MAX_TABLE_ROWS = 100
_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #1d1d1f; padding: 0 1em; }
h1 { border-bottom: 2px solid #333; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: 12px; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; }
td.text { text-align: left; }
p.empty { color: #8a4b00; background: #fff6e5; padding: .5em; border-left: 4px solid #e6a23c; }
p.note { color: #555; font-size: 12px; }
img { max-width: 100%; border: 1px solid #eee; }
div.scroll { overflow-x: auto; }
"""


@dataclass(frozen=True)
class Section:
    """One report section: an anchor id, a title and its HTML body."""

    anchor: str
    title: str
    body: str


# -- numerics -----------------------------------------------------------------------------------------------
def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Selective risk at every coverage when accepting the k most confident samples.

    confidence: (N,) float; correct: (N,) bool. Returns (coverage, risk), each (N,) float64: coverage k/N and
    the error rate among the k most confident samples (stable order among equal confidences), k = 1..N.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if confidence.ndim != 1 or confidence.shape != correct.shape or confidence.size == 0:
        raise ValueError(
            f"confidence and correct must be equal-length non-empty 1-D arrays, got {confidence.shape} "
            f"and {correct.shape}"
        )
    order = np.argsort(-confidence, kind="stable")
    accepted = np.arange(1, confidence.size + 1, dtype=np.float64)
    errors = np.cumsum(~correct[order], dtype=np.float64)
    return accepted / confidence.size, errors / accepted


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, bins: int = RELIABILITY_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin mean confidence, accuracy and count over ``bins`` equal-width bins (j/M, (j+1)/M].

    confidence: (N,) float in [0, 1]; correct: (N,) bool. Bins are left-open and right-closed (selective.md):
    confidence 0 falls in no bin. Returns three (bins,) float64 arrays; empty bins have NaN mean and accuracy.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if confidence.ndim != 1 or confidence.shape != correct.shape:
        raise ValueError(f"confidence and correct must be equal-length 1-D arrays, got {confidence.shape}")
    if confidence.size and (confidence.min() < 0 or confidence.max() > 1):
        raise ValueError("confidence must lie in [0, 1] for a reliability diagram (use a probability, e.g. msp)")
    index = np.ceil(confidence * bins).astype(np.int64) - 1
    keep = index >= 0
    index = index[keep]
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    conf_sum = np.bincount(index, weights=confidence[keep], minlength=bins)
    hit_sum = np.bincount(index, weights=correct[keep].astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return conf_sum / counts, hit_sum / counts, counts


def expected_calibration_error(mean_conf: np.ndarray, accuracy: np.ndarray, counts: np.ndarray, n: int) -> float:
    """ECE = Σ |mean confidence − accuracy| · |B| / n over non-empty bins (n counts every sample)."""
    filled = counts > 0
    return float(np.sum(np.abs(mean_conf[filled] - accuracy[filled]) * counts[filled]) / n) if n else float("nan")


# -- HTML helpers -------------------------------------------------------------------------------------------
def _cell(value: object) -> tuple[str, bool]:
    if value is None:
        return "", False
    if isinstance(value, float):
        return ("" if np.isnan(value) else f"{value:.4f}"), False
    if isinstance(value, bool | int | np.integer):
        return str(value), False
    return html.escape(str(value)), True


def html_table(frame: pl.DataFrame, max_rows: int = _MAX_TABLE_ROWS, more_hint: str = "") -> str:
    """``frame`` as an HTML table (first ``max_rows`` rows, with a note on how many were left out)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.head(max_rows).iter_rows():
        cells = []
        for value in row:
            text, is_text = _cell(value)
            cells.append(f'<td class="text">{text}</td>' if is_text else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = ""
    if frame.height > max_rows:
        note = f'<p class="note">{frame.height - max_rows} more rows. {html.escape(more_hint)}</p>'
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f'<div class="scroll">{table}</div>{note}'


def _empty(message: str) -> str:
    return f'<p class="empty">{html.escape(message)}</p>'


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _grid(count: int, columns: int = 3) -> tuple[int, int]:
    cols = min(columns, count)
    return -(-count // cols), cols


# -- data access --------------------------------------------------------------------------------------------
def _has_rows(store: Store, table: str) -> bool:
    return table in store.tables() and store.query(f"SELECT count(*) AS n FROM {table}")["n"][0] > 0


def _canned(store: Store, name: str) -> pl.DataFrame:
    return store.query(canned_query(name).sql)


def _top_models(store: Store, limit: int) -> list[str]:
    """Up to ``limit`` model ids, best selective AUROC first, then any other model with outputs or results."""
    ranked = _canned(store, "leaderboard_auroc")["model_id"].to_list() if _has_rows(store, "selective_metrics") else []
    others = store.query("SELECT DISTINCT model FROM samples ORDER BY model")["model"].to_list()
    seen = dict.fromkeys([*ranked, *others])
    return list(seen)[:limit]


def _id_samples(store: Store, models: list[str]) -> tuple[pl.DataFrame, str]:
    """(model, msp, correct) rows of in-distribution outputs for ``models``, and a note on what was used."""
    columns = set(store.query("SELECT * FROM samples LIMIT 0").columns)
    if not models or "msp" not in columns:
        return pl.DataFrame(schema={"model": pl.String, "msp": pl.Float64, "correct": pl.Boolean}), ""
    ood = []
    if _has_rows(store, "datasets"):
        ood = store.query("SELECT dataset FROM datasets WHERE kind = 'ood'")["dataset"].to_list()
    frame = store.query(
        "SELECT model, dataset, CAST(msp AS DOUBLE) AS msp, pred = label AS correct FROM samples "
        "WHERE model IN (SELECT unnest(?)) AND NOT list_contains(?, dataset) AND msp IS NOT NULL",
        [models, ood or [""]],
    )
    datasets = sorted(frame["dataset"].unique().to_list())
    note = f"in-distribution dataset(s): {', '.join(datasets)}" if datasets else ""
    return frame.select("model", "msp", "correct"), note


# -- sections -----------------------------------------------------------------------------------------------
def _leaderboards(store: Store) -> list[Section]:
    specs = [
        (
            "leaderboard-selective",
            "Leaderboard: selective prediction",
            "selective_metrics",
            "leaderboard_auroc",
            "no selective prediction results in this database",
        ),
        (
            "leaderboard-cood",
            "Leaderboard: C-OOD detection (mean OOD AUROC over severity levels)",
            "cood_levels",
            "cood_mean_auroc",
            "no C-OOD results in this database",
        ),
        (
            "leaderboard-hsc",
            "Leaderboard: hierarchical selective classification (hAURC gain over Selective)",
            "hsc_rules",
            "hsc_gain",
            "no HSC results in this database",
        ),
        (
            "hsc-calibration",
            "HSC threshold calibration (target accuracy 1 − α)",
            "hsc_calibration",
            "hsc_calibration",
            "no HSC calibration results in this database",
        ),
    ]
    sections = []
    for anchor, title, table, query, empty in specs:
        if _has_rows(store, table):
            body = html_table(_canned(store, query), more_hint=f"All rows: uebench sql --query {query}")
        else:
            body = _empty(empty)
        sections.append(Section(anchor, title, body))
    return sections


def _risk_coverage_section(samples: pl.DataFrame, note: str) -> Section:
    title = "Risk-coverage curves (MSP)"
    if samples.height == 0:
        return Section("risk-coverage", title, _empty("no per-sample outputs with msp in this workspace"))
    figure = _figure(7.5, 4.8)
    axis = figure.add_subplot()
    for model, group in samples.group_by("model", maintain_order=True):
        coverage, risk = risk_coverage(group["msp"].to_numpy(), group["correct"].to_numpy())
        axis.plot(coverage, risk, label=f"{model[0]} (AURC {risk.mean():.4f})", linewidth=1.4)
    axis.set_xlabel("coverage")
    axis.set_ylabel("selective risk (error rate among accepted)")
    axis.set_xlim(0, 1)
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    text = f'<p class="note">Confidence = MSP, correct = (pred == label); {html.escape(note)}.</p>'
    return Section("risk-coverage", title, _png(figure, "risk-coverage curves") + text)


def _reliability_section(samples: pl.DataFrame) -> Section:
    title = f"Reliability diagrams (MSP, {RELIABILITY_BINS} bins)"
    if samples.height == 0:
        return Section("reliability", title, _empty("no per-sample outputs with msp in this workspace"))
    groups = list(samples.group_by("model", maintain_order=True))
    rows, cols = _grid(len(groups))
    figure = _figure(3.6 * cols, 3.4 * rows)
    centers = (np.arange(RELIABILITY_BINS) + 0.5) / RELIABILITY_BINS
    for index, (model, group) in enumerate(groups):
        axis = figure.add_subplot(rows, cols, index + 1)
        conf = group["msp"].to_numpy()
        mean_conf, accuracy, counts = reliability_bins(conf, group["correct"].to_numpy())
        ece = expected_calibration_error(mean_conf, accuracy, counts, conf.size)
        filled = counts > 0
        axis.bar(centers[filled], accuracy[filled], width=1 / RELIABILITY_BINS, edgecolor="black", alpha=0.75)
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_title(f"{model[0]}\nECE {ece:.4f}", fontsize=8)
        axis.set_xlabel("confidence", fontsize=8)
        axis.set_ylabel("accuracy", fontsize=8)
    return Section("reliability", title, _png(figure, "reliability diagrams"))


def _hrc_section(store: Store, models: list[str]) -> Section:
    title = "Hierarchical risk-coverage curves (0/1 risk, no temperature scaling)"
    if not _has_rows(store, "hsc_curves"):
        return Section("hrc", title, _empty("no HSC results in this database"))
    curves = store.query(
        "SELECT model_id, rule, coverage, risk FROM hsc_curves WHERE risk_type = '01' AND NOT temperature_scaled "
        "ORDER BY model_id, rule, point"
    )
    present = curves["model_id"].unique(maintain_order=True).to_list()
    chosen = [m for m in models if m in present] or present[: len(models) or 6]
    curves = curves.filter(pl.col("model_id").is_in(chosen))
    if curves.height == 0:
        return Section("hrc", title, _empty("no HSC curves with 0/1 risk and no temperature scaling"))
    rows, cols = _grid(len(chosen))
    figure = _figure(3.8 * cols, 3.4 * rows)
    for index, model in enumerate(chosen):
        axis = figure.add_subplot(rows, cols, index + 1)
        for (rule,), group in curves.filter(pl.col("model_id") == model).group_by("rule", maintain_order=True):
            axis.plot(group["coverage"].to_numpy(), group["risk"].to_numpy(), label=rule, linewidth=1.3)
        axis.set_title(model, fontsize=8)
        axis.set_xlabel("coverage", fontsize=8)
        axis.set_ylabel("hierarchical risk", fontsize=8)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    return Section("hrc", title, _png(figure, "hierarchical risk-coverage curves"))


def _degradation_section(store: Store, models: list[str]) -> Section:
    title = "C-OOD degradation: OOD AUROC against severity level"
    if not _has_rows(store, "cood_levels"):
        return Section("cood-degradation", title, _empty("no C-OOD results in this database"))
    levels = store.query("SELECT model_id, kappa, level, ood_auroc FROM cood_levels ORDER BY model_id, kappa, level")
    present = levels["model_id"].unique(maintain_order=True).to_list()
    chosen = [m for m in models if m in present] or present[:8]
    levels = levels.filter(pl.col("model_id").is_in(chosen))
    figure = _figure(10, 5)
    axis = figure.add_subplot()
    for (model, kappa), group in levels.group_by(["model_id", "kappa"], maintain_order=True):
        axis.plot(
            group["level"].to_numpy(),
            group["ood_auroc"].to_numpy(),
            marker="o",
            markersize=3,
            linewidth=1.2,
            label=f"{model} / {kappa}",
        )
    axis.set_xlabel("severity level (0 = easiest OOD classes)")
    axis.set_ylabel("OOD AUROC")
    axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axis.grid(alpha=0.3)
    figure.legend(loc="outside right upper", fontsize=6)
    shown = f"{len(chosen)} of {len(present)} models" if len(present) > len(chosen) else f"{len(chosen)} models"
    note = f'<p class="note">One line per (model, κ); {shown}. Full table: uebench sql --query cood_by_level</p>'
    return Section("cood-degradation", title, _png(figure, "C-OOD degradation graph") + note)


def _reference_section(store: Store) -> Section:
    title = "C-OOD against the published results"
    if not _has_rows(store, "reference_cood_levels"):
        return Section(
            "cood-reference",
            title,
            _empty("no published results in this database (load them with uebench import-reference FILE.csv)"),
        )
    joined = _canned(store, "cood_vs_reference")
    if joined.height == 0:
        return Section("cood-reference", title, _empty("no model in this database matches a published model name"))
    figure = _figure(5, 5)
    axis = figure.add_subplot()
    axis.scatter(joined["reference_ood_auroc"].to_numpy(), joined["ood_auroc"].to_numpy(), s=10, alpha=0.7)
    axis.plot([0.4, 1], [0.4, 1], color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("published OOD AUROC")
    axis.set_ylabel("our OOD AUROC")
    axis.grid(alpha=0.3)
    summary = (
        joined.group_by(["model_id", "reference_model", "kappa"], maintain_order=True)
        .agg(
            pl.len().alias("levels"),
            pl.col("ood_auroc_difference").abs().mean().alias("mean_abs_difference"),
            pl.col("ood_auroc_difference").abs().max().alias("max_abs_difference"),
        )
        .sort("model_id", "kappa")
    )
    return Section("cood-reference", title, _png(figure, "our vs published OOD AUROC") + html_table(summary))


def _provenance_section(store: Store) -> Section:
    parts = []
    for table, query in (("runs", "runs"), ("models", "models"), ("run_tasks", None)):
        parts.append(f"<h3>{table}</h3>")
        if not _has_rows(store, table):
            parts.append(_empty(f"no {table} recorded in this database"))
            continue
        frame = _canned(store, query) if query else store.table(table)
        parts.append(html_table(frame, more_hint=f'All rows: uebench sql "SELECT * FROM {table}"'))
    return Section("provenance", "Provenance", "".join(parts))


def _resolve(source: Path) -> Path:
    source = Path(source)
    if source.is_dir():
        return source / DB_FILENAME
    return source


def build_report(source: Path, output: Path | None = None, max_models: int = 8) -> Path:
    """Write the HTML report of a results database and return its path.

    source: the workspace folder or the ``.duckdb`` file; output: the HTML file (default
    ``<workspace>/reports/report.html``), written atomically; max_models: how many models (best selective AUROC
    first) get per-model curves and diagrams. Raises StoreError when the database is missing.
    """
    db_path = _resolve(source)
    with Store.open(db_path, read_only=True) as store:
        models = _top_models(store, max_models)
        samples, note = _id_samples(store, models)
        sections = [
            *_leaderboards(store),
            _risk_coverage_section(samples, note),
            _hrc_section(store, models),
            _degradation_section(store, models),
            _reliability_section(samples),
            _reference_section(store),
            _provenance_section(store),
        ]
        version = store.schema_version
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "".join(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in sections)
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>uebench report</title>"
        f"<style>{_CSS}</style></head><body><h1>uebench report</h1>"
        f'<p class="note">Database {html.escape(str(db_path))} (schema version {version}), generated {generated}.'
        f"</p><ul>{toc}</ul>{body}</body></html>\n"
    )
    output = Path(output) if output is not None else db_path.parent / "reports" / "report.html"
    return atomic_write_text(output, document)
