"""The HTML report: a folder of offline Plotly pages drawn from the stored tables of a results database.

Layout (default folder ``<workspace>/reports/report/``)::

    index.html              the overview: population scatter plots, grouped distributions, top-k tables, the
                            C-OOD degradation of the population (ours and the published one), the detectors
                            against MSP (when cood_levels holds more than one κ), HSC gain and calibration (ours
                            and the published HSC table), links to the comparisons, a searchable model index,
                            provenance
    comparisons.html        the papers' comparisons, one figure per entry of results.comparisons.COMPARISONS with
                            its statistics (results.report_comparisons)
    models/<model_id>.html  one drill-down page per model: its selective metrics, risk–coverage curves,
                            reliability diagram, C-OOD levels, hierarchical risk–coverage curves, HSC rules and
                            calibration, provenance
    assets/plotly-cartesian.min.js   plotly.js's cartesian bundle (1.5 MB; shipped in ``results/assets``): every
                            trace type the report draws but WebGL scatter; the script of every page without one
    assets/plotly.min.js    the full plotly.js of the installed ``plotly`` package (4.8 MB): the script of a page
                            with a WebGL scatter (more than ``SCATTERGL_ABOVE`` points in one figure)
    assets/report.js, report.css   (results.report_assets)

Every figure reads stored tables; nothing is computed from per-sample outputs. The risk–coverage points
(``selective_curves``) and calibration bins (``reliability_bins``) are written by the selective analysis with the
conventions of the stored metrics (hsc.selective), so a curve, a diagram and the leaderboard on the same page agree.
Overview views aggregate stored values only: quantiles of OOD AUROC per level in SQL, box plots of stored metrics.
The pages need no network: figures are plotly.js JSON specs inlined in each page, drawn by ``assets/report.js`` when
they come near the viewport (so the first screen of a page with many figures is drawn first).
"""

from __future__ import annotations

import datetime as dt
import html
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from common import DB_FILENAME, DETECTOR_PREFIX, temp_path
from results.comparisons import detector_summaries
from results.report_assets import CSS, DEFAULT_TOP_K, JS
from results.report_comparisons import comparisons_index, comparisons_sections
from results.report_parts import (
    _COLORS,
    COMPARISONS_PAGE,
    GL_TRACE,
    Plot,
    Section,
    _cell,
    _empty,
    _grid,
    _json,
    _layout,
    _note,
    _scatter_kind,
    _values,
    html_table,
)
from results.schema import polars_schema
from results.sql import canned_query
from results.store import Store

MAIN_KAPPA = "msp"
SHOWN_KAPPAS = 6  # a C-OOD figure with more κ shows msp and the detectors at first, the other κ in the legend only
MARKER = ".uebench-report"  # a folder holding this file is a report this module may replace
_SAFE_PAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]{0,150}")
# plotly.js's cartesian bundle, unmodified from npm (results/assets/README.md: version, source and checksums)
_CARTESIAN_SOURCE = Path(__file__).with_name("assets") / "plotly-cartesian.min.js"
CARTESIAN_VERSION = "4.1.1"
_SETTINGS = {  # (temperature_scaled, subset) -> label, shown by default
    (False, "all"): ("all samples, no TS", True),
    (False, "ts_eval"): ("TS evaluation split, no TS", False),
    (True, "ts_eval"): ("TS evaluation split, with TS", False),
}
_SELECTIVE_COLUMNS = (
    "kappa", "temperature_scaled", "subset", "n", "accuracy", "auroc", "aurc", "eaurc", "augrc", "ece15", "mce15",
    "aece", "sac95", "sac99", "temperature",
)  # fmt: skip


class ReportError(ValueError):
    """The report cannot be written where asked (one line, shown by the CLI)."""


def _fields(pairs: Iterable[tuple[str, object]]) -> str:
    items = []
    for name, value in pairs:
        text = _cell(value)[0] if not isinstance(value, list) else html.escape(", ".join(map(str, value)))
        items.append(f"<dt>{html.escape(name)}</dt><dd>{text}</dd>")
    return f'<dl class="fields">{"".join(items)}</dl>'


def page_name(model_id: str) -> str:
    """The drill-down page of ``model_id`` under ``models/``: ``<model_id>.html`` when the id is a safe file name
    (the zoo's ids are), else ``model-<sha1 of the id>.html``."""
    if _SAFE_PAGE.fullmatch(model_id):
        return f"{model_id}.html"
    import hashlib

    return f"model-{hashlib.sha1(model_id.encode()).hexdigest()}.html"


# The plotly.js bundles in assets/ (see the module docstring): a page loads the smaller one unless a figure of it
# needs WebGL. The cartesian bundle starts in about half the time of the full one (BENCHMARKS.md, report section).
CARTESIAN_JS = "plotly-cartesian.min.js"
FULL_JS = "plotly.min.js"


def plotly_bundle(sections: Sequence[Section]) -> str:
    """The plotly.js asset a page of ``sections`` loads: :data:`FULL_JS` when one of its figure specs has a WebGL
    trace, else :data:`CARTESIAN_JS`."""
    gl = f'"type":{_json(GL_TRACE)}'  # as Plot.html writes a trace's type into its compact JSON spec
    return FULL_JS if any(gl in section.body for section in sections) else CARTESIAN_JS


def _page(title: str, subtitle: str, sections: Sequence[Section], assets: str, back: str = "") -> str:
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)  # spaces: it may wrap
    body = "".join(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in sections)
    back_link = f'<p><a href="{back}">&larr; overview</a></p>' if back else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel="stylesheet" href="{assets}report.css">'
        # deferred: plotly.js is read and compiled while the page is parsed, then run in order
        f'<script defer src="{assets}{plotly_bundle(sections)}"></script>'
        f'<script defer src="{assets}report.js"></script>'
        "</head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{subtitle}</p>{back_link}</header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )


# -- the stored tables --------------------------------------------------------------------------------------
def _read(store: Store, table: str, present: set[str]) -> pl.DataFrame:
    """Every row of ``table`` ordered by its key when the database has it (``present``: its tables), else an
    empty frame with the table's columns (a database written before the table existed)."""
    if table not in present:
        return pl.DataFrame(schema=polars_schema(table))
    return store.table(table)


def _by_model(frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    if frame.height == 0:
        return {}
    return {key[0]: part for key, part in frame.partition_by("model_id", as_dict=True, maintain_order=True).items()}


@dataclass
class _Data:
    """What the pages draw, read once from the database (per-model tables also split by model)."""

    store: Store
    top_k: int
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    per_model: dict[str, dict[str, pl.DataFrame]] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    group_column: str = "source"
    model_ids: list[str] = field(default_factory=list)

    def load(self) -> _Data:
        store = self.store
        present = set(store.tables())
        for table in (
            "runs", "models", "run_tasks", "datasets", "selective_metrics", "selective_curves", "reliability_bins",
            "cood_levels", "hsc_rules", "hsc_curves", "hsc_calibration", "reference_cood_levels",
            "reference_hsc_metrics", "reference_models",
        ):  # fmt: skip
            self.tables[table] = _read(store, table, present)
        # our hAURC next to the published one, for the models a published HSC name maps to (hsc_vs_reference)
        both = self.has("hsc_rules") and self.has("reference_hsc_metrics") and self.has("reference_models")
        self.tables["hsc_vs_reference"] = self.canned("hsc_vs_reference") if both else pl.DataFrame(
            schema={"model_id": pl.String}
        )
        for table in ("selective_metrics", "selective_curves", "reliability_bins", "cood_levels", "hsc_rules",
                      "hsc_curves", "hsc_calibration", "run_tasks", "hsc_vs_reference"):
            self.per_model[table] = _by_model(self.tables[table])
        models = self.tables["models"]
        family = "family" in models.columns and models["family"].drop_nulls().len() > 0
        self.group_column = "family" if family else "source"
        self.groups = {
            row[0]: (row[1] if row[1] is not None else "unknown")
            for row in models.select("model_id", self.group_column).iter_rows()
        }
        ids: set[str] = set(models["model_id"].to_list())
        for table in ("selective_metrics", "cood_levels", "hsc_rules", "hsc_calibration"):
            ids.update(self.per_model[table])
        self.model_ids = sorted(ids)
        return self

    def has(self, table: str) -> bool:
        return self.tables[table].height > 0

    def canned(self, name: str) -> pl.DataFrame:
        return self.store.query(canned_query(name).sql)

    def model_table(self, table: str, model_id: str) -> pl.DataFrame:
        found = self.per_model[table].get(model_id)
        return found if found is not None else self.tables[table].clear()

    def group(self, model_id: str) -> str:
        return self.groups.get(model_id, "unknown")


def _main_kappa(selective: pl.DataFrame) -> str | None:
    kappas = selective["kappa"].unique().to_list()
    if not kappas:
        return None
    return MAIN_KAPPA if MAIN_KAPPA in kappas else sorted(kappas)[0]


# -- the overview -------------------------------------------------------------------------------------------
def _population_scatter(
    data: _Data, anchor: str, frame: pl.DataFrame, x: str, y: str, x_title: str, y_title: str, caption: str,
    extra: Sequence[dict] = (),
) -> Plot:  # fmt: skip
    """One trace per group (family or source) of ``frame``'s (model_id, x, y) rows; hover names the model and a
    click opens its page."""
    frame = frame.filter(pl.col(x).is_not_null() & pl.col(y).is_not_null())
    frame = frame.with_columns(
        pl.col("model_id").replace_strict(data.groups, default="unknown", return_dtype=pl.String).alias("_group")
    )
    kind = _scatter_kind(frame.height + sum(len(t["x"]) for t in extra))
    traces = []
    for index, group in enumerate(sorted(frame["_group"].unique().to_list())):
        part = frame.filter(pl.col("_group") == group)
        ids = part["model_id"].to_list()
        traces.append(
            {
                "type": kind,
                "mode": "markers",
                "name": f"{group} ({part.height})",
                "x": _values(part[x]),
                "y": _values(part[y]),
                "text": ids,
                "customdata": [f"models/{page_name(m)}" for m in ids],
                "hovertemplate": f"%{{text}}<br>{x_title} %{{x:.4f}}<br>{y_title} %{{y:.4f}}<extra>%{{fullData.name}}"
                "</extra>",
                "marker": {"size": 6, "opacity": 0.75, "color": _COLORS[index % len(_COLORS)]},
            }
        )
    for trace in extra:
        traces.append({**trace, "type": kind})
    return Plot(anchor, traces, _layout(x_title, y_title), caption)


def _overview_population(data: _Data) -> Section:
    title = "Population: selective prediction, calibration and C-OOD"
    selective = data.tables["selective_metrics"]
    kappa = _main_kappa(selective)
    if kappa is None:
        return Section("population", title, _empty("no selective prediction results in this database"))
    main = selective.filter((pl.col("kappa") == kappa) & ~pl.col("temperature_scaled") & (pl.col("subset") == "all"))
    setting = f"κ = {kappa}, no temperature scaling, every ID sample (selective_metrics)"
    plots = [
        _population_scatter(
            data, "scatter-accuracy-auroc", main, "accuracy", "auroc", "accuracy", "AUROC",
            f"Misclassification-detection AUROC against accuracy, one point per model; {setting}. "
            "Click a point to open the model.",
        ),
        _population_scatter(
            data, "scatter-aurc-ece", main, "aurc", "ece15", "AURC", "ECE (15 bins)",
            f"AURC against ECE; {setting}.",
        ),
    ]  # fmt: skip
    cood = data.tables["cood_levels"]
    if cood.height:
        mean = (
            data.canned("cood_mean_auroc")
            .filter(pl.col("kappa") == kappa)
            .join(main.select("model_id", "accuracy"), on="model_id", how="inner")
        )
        extra = []
        reference = data.tables["reference_cood_levels"].filter(pl.col("kappa") == kappa)
        if reference.height:
            published = (
                reference.group_by("model_name")
                .agg(pl.col("id_accuracy").first(), pl.col("ood_auroc").mean().alias("mean_ood_auroc"))
                .sort("model_name")
            )
            extra.append(
                {
                    "mode": "markers",
                    "name": f"published C-OOD table ({published.height})",
                    "x": _values(published["id_accuracy"]),
                    "y": _values(published["mean_ood_auroc"]),
                    "text": published["model_name"].to_list(),
                    "hovertemplate": "%{text}<br>accuracy %{x:.4f}<br>mean OOD AUROC %{y:.4f}<extra>published</extra>",
                    "marker": {"size": 6, "opacity": 0.6, "color": "#7f7f7f", "symbol": "diamond"},
                }
            )
        plots.append(
            _population_scatter(
                data, "scatter-accuracy-cood", mean, "accuracy", "mean_ood_auroc", "accuracy",
                "mean OOD AUROC over severity levels",
                f"C-OOD detection against accuracy (κ = {kappa}; mean OOD AUROC over levels, as in uebench sql "
                "--query cood_mean_auroc); grey: the published table (its id-acc and mean ood-auroc).",
                extra,
            )
        )  # fmt: skip
    return Section("population", title, _grid(plots))


def _box_by_group(
    data: _Data, anchor: str, frame: pl.DataFrame, value: str, split: str | None, names: dict, y_title: str,
    caption: str,
) -> Plot:  # fmt: skip
    """Box plots of ``value`` per group (x), one trace per value of ``split`` (named by ``names``)."""
    frame = frame.filter(pl.col(value).is_not_null()).with_columns(
        pl.col("model_id").replace_strict(data.groups, default="unknown", return_dtype=pl.String).alias("_group")
    )
    traces = []
    keys = [None] if split is None else sorted(frame[split].unique().to_list())
    for index, key in enumerate(keys):
        part = frame if key is None else frame.filter(pl.col(split) == key)
        traces.append(
            {
                "type": "box",
                "name": names.get(key, str(key)),
                "x": part["_group"].to_list(),
                "y": _values(part[value]),
                "text": part["model_id"].to_list(),
                "boxpoints": "outliers",
                "marker": {"color": _COLORS[index % len(_COLORS)], "size": 4},
                "hovertemplate": "%{text}<br>%{y:.4f}<extra>%{fullData.name}</extra>",
            }
        )
    group_title = "architecture family" if data.group_column == "family" else "model source"
    return Plot(anchor, traces, _layout(group_title, y_title, boxmode="group"), caption)


def _overview_groups(data: _Data) -> Section:
    title = f"Distributions by {'family' if data.group_column == 'family' else 'source'}"
    selective = data.tables["selective_metrics"]
    kappa = _main_kappa(selective)
    if kappa is None:
        return Section("groups", title, _empty("no selective prediction results in this database"))
    main = selective.filter((pl.col("kappa") == kappa) & ~pl.col("temperature_scaled") & (pl.col("subset") == "all"))
    plots = [
        _box_by_group(
            data, "box-auroc", main, "auroc", None, {None: f"AUROC (κ = {kappa})"}, "AUROC",
            f"AUROC of the models of each group (κ = {kappa}, no TS, every sample).",
        ),
        _box_by_group(
            data, "box-accuracy", main, "accuracy", None, {None: "accuracy"}, "accuracy",
            "Top-1 accuracy of the models of each group.",
        ),
    ]  # fmt: skip
    evaluation = selective.filter((pl.col("kappa") == kappa) & (pl.col("subset") == "ts_eval"))
    if evaluation["ece15"].drop_nulls().len():
        plots.append(
            _box_by_group(
                data, "box-ece-ts", evaluation, "ece15", "temperature_scaled",
                {False: "ECE, no TS", True: "ECE, with TS"}, "ECE (15 bins)",
                "Temperature scaling's effect on ECE, both on the TS evaluation split (subset ts_eval).",
            )
        )  # fmt: skip
    note = _note(
        f"Groups: models.{data.group_column}"
        + ("" if data.group_column == "family" else " (the models table has no family column yet)")
        + ". A box shows the quartiles of the stored values; hover a point for its model."
    )
    return Section("groups", title, note + _grid(plots))


def _overview_top(data: _Data, link: Callable[[str], str | None]) -> Section:
    k = data.top_k
    parts = []
    specs = [
        ("selective_metrics", "leaderboard_auroc", "Selective prediction: highest AUROC (MSP, no TS)"),
        ("selective_metrics", "leaderboard_aurc", "Selective prediction: lowest AURC (MSP, no TS)"),
        ("cood_levels", "cood_mean_auroc", "C-OOD: highest mean OOD AUROC over levels (per model and κ)"),
        ("hsc_rules", "hsc_gain", "HSC: largest hAURC gain over Selective (0/1 risk, no TS)"),
    ]
    for table, query, heading in specs:
        parts.append(f"<h3>{html.escape(heading)}</h3>")
        if not data.has(table):
            parts.append(_empty(f"no {table} rows in this database"))
            continue
        frame = data.canned(query)
        parts.append(html_table(frame, link=link, max_rows=k, more_hint=f"All rows: uebench sql --query {query}"))
    parts += _detector_leaderboards(data, link)
    note = _note(f"The first {k} rows of each canned query (uebench report --top-k); click a header to sort.")
    return Section("top", f"Top {k}", note + "".join(parts))


def _detector_leaderboards(data: _Data, link: Callable[[str], str | None]) -> list[str]:
    """The first top-k models of each detector κ (``det_*``) of ``leaderboard_by_kappa``, in one table with a κ
    column (so the page holds at most top-k rows per detector); nothing without detector rows."""
    kappas = data.tables["selective_metrics"]["kappa"].unique().to_list()
    if not any(kappa.startswith(DETECTOR_PREFIX) for kappa in kappas):
        return []
    k = data.top_k
    frame = data.canned("leaderboard_by_kappa").filter(pl.col("kappa").str.starts_with(DETECTOR_PREFIX))
    top = frame.group_by("kappa", maintain_order=True).head(k)
    heading = (f"Selective prediction per detector κ: highest AUROC (no TS), the first {k} models of each of "
               f"{frame['kappa'].n_unique()} detectors")  # fmt: skip
    parts = [f"<h3>{html.escape(heading)}</h3>", html_table(top, link=link)]
    if frame.height > top.height:
        parts.append(_note(f"{frame.height - top.height} more rows. All rows (and every other κ): uebench sql "
                           "--query leaderboard_by_kappa"))  # fmt: skip
    return parts


def _quantile_sql(table: str) -> str:
    return (
        f"SELECT kappa, level, count(ood_auroc) AS models, quantile_cont(ood_auroc, 0.25) AS q25, "
        f"quantile_cont(ood_auroc, 0.5) AS q50, quantile_cont(ood_auroc, 0.75) AS q75 FROM {table} "
        "WHERE ood_auroc IS NOT NULL GROUP BY kappa, level ORDER BY kappa, level"
    )


def _shown_kappas(kappas: Sequence[str]) -> set[str]:
    """The κ a C-OOD figure draws at first: every κ when there are at most :data:`SHOWN_KAPPAS`, else msp and the
    detectors (``det_*``); the others are in the legend only (a click shows them)."""
    if len(kappas) <= SHOWN_KAPPAS:
        return set(kappas)
    return {kappa for kappa in kappas if kappa == MAIN_KAPPA or kappa.startswith(DETECTOR_PREFIX)}


def _band_traces(
    frame: pl.DataFrame, label: str, color: str, dash: str, band: bool, shown: bool = True
) -> list[dict]:  # fmt: skip
    """The median line of ``frame``'s (level, models, q25, q50, q75) rows and, with ``band``, the band between its
    quartiles; one legend group (``label``), drawn at first when ``shown``, else in the legend only."""
    levels = _values(frame["level"])
    visible = {"legendgroup": label, "visible": True if shown else "legendonly"}
    traces = []
    if band:
        traces.append(
            {"type": "scatter", "mode": "lines", "x": levels, "y": _values(frame["q25"]), "line": {"width": 0},
             "showlegend": False, "hoverinfo": "skip", "name": f"{label}: 25 %", **visible}
        )  # fmt: skip
        traces.append(
            {"type": "scatter", "mode": "lines", "x": levels, "y": _values(frame["q75"]), "line": {"width": 0},
             "fill": "tonexty", "fillcolor": color + "33", "name": f"{label}: 25–75 % of models",
             "hovertemplate": "level %{x}: 75 %: %{y:.4f}<extra></extra>", **visible}
        )  # fmt: skip
    traces.append(
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": levels,
            "y": _values(frame["q50"]),
            "customdata": _values(frame["models"]),
            "name": f"{label}: median",
            "line": {"color": color, "dash": dash},
            "marker": {"size": 5},
            "hovertemplate": "level %{x}: median %{y:.4f} over %{customdata} models<extra></extra>",
            **visible,
        }
    )
    return traces


def _overview_cood(data: _Data) -> Section:
    title = "C-OOD degradation of the population"
    ours, published = data.has("cood_levels"), data.has("reference_cood_levels")
    if not ours and not published:
        return Section("cood", title, _empty("no C-OOD results and no published C-OOD table in this database"))
    traces = []
    frames = {}
    if ours:
        frames["ours"] = data.store.query(_quantile_sql("cood_levels"))
    if published:
        frames["published"] = data.store.query(_quantile_sql("reference_cood_levels"))
    kappas = sorted(set().union(*(set(f["kappa"].to_list()) for f in frames.values())))
    shown = _shown_kappas(kappas)
    for index, kappa in enumerate(kappas):
        color = _COLORS[index % len(_COLORS)]
        if "ours" in frames and (part := frames["ours"].filter(pl.col("kappa") == kappa)).height:
            traces += _band_traces(part, f"{kappa}, ours", color, "solid", True, kappa in shown)
        if "published" in frames and (part := frames["published"].filter(pl.col("kappa") == kappa)).height:
            traces += _band_traces(part, f"{kappa}, published", color, "dot", not ours, kappa in shown)
    hidden = "" if len(shown) == len(kappas) else (
        f" With more than {SHOWN_KAPPAS} κ, {MAIN_KAPPA} and the detectors (det_*) are drawn at first; click the "
        f"legend for the other {len(kappas) - len(shown)}."
    )  # fmt: skip
    plot = Plot(
        "cood-degradation",
        traces,
        _layout("severity level (0 = easiest OOD classes)", "OOD AUROC"),
        "Median OOD AUROC over models at each severity level (quantile_cont over cood_levels), with the band of "
        "the middle half of the models; dotted: the published table (reference_cood_levels)." + hidden,
    )
    body = _grid([plot])
    if ours and published:
        joined = data.canned("cood_vs_reference")
        if joined.height:
            body += _grid([_reference_scatter(joined)])
        else:
            body += _note("No model of ours matches a published model name (models.name = model name).")
    elif not published:
        body += _note("No published C-OOD table here: load one with uebench import-reference FILE.csv.")
    return Section("cood", title, body)


_DETECTOR_COLUMNS = {  # the table of κ against MSP: detector_summaries' column -> the table's header
    "kappa": "kappa", "models": "models", "median_mean_auroc": "median_mean_ood_auroc",
    "median_msp_mean_auroc": "msp_median_mean_ood_auroc", "median_mean_gain": "median_mean_gain",
    "median_hardest_auroc": "median_hardest_ood_auroc", "median_msp_hardest_auroc": "msp_median_hardest_ood_auroc",
    "median": "median_hardest_gain", "beats_msp_hardest": "beats_msp_hardest", "sign_test_p": "sign_test_p",
    "selective_models": "selective_models", "median_selective_auroc": "median_selective_auroc",
    "median_msp_selective_auroc": "msp_median_selective_auroc", "median_selective_aurc": "median_selective_aurc",
}  # fmt: skip


def _overview_detectors(data: _Data) -> Section | None:
    """Each κ against MSP (the comparisons detector_levels and detectors); None when cood_levels holds one κ or
    none."""
    title = "Detectors against MSP"
    cood = data.tables["cood_levels"]
    kappas = sorted(cood["kappa"].unique().to_list()) if cood.height else []
    if len(kappas) < 2:
        return None
    if MAIN_KAPPA not in kappas:
        return Section("detectors", title, _empty(f"no {MAIN_KAPPA} rows in cood_levels to pair the other κ with"))
    levels = data.canned("detector_levels")
    if levels.height == 0:
        return Section("detectors", title, _empty(f"no pretrained model has {MAIN_KAPPA} and another κ on a level"))
    shown = _shown_kappas(kappas)
    ends = [levels["level"].min(), levels["level"].max()]
    traces = [
        {"type": "scatter", "mode": "lines", "name": f"no gain (= {MAIN_KAPPA})", "x": ends, "y": [0.0, 0.0],
         "line": {"color": "#999", "dash": "dash"}, "hoverinfo": "skip"}
    ]  # fmt: skip
    for kappa in sorted(levels["kappa"].unique().to_list()):
        part = levels.filter(pl.col("kappa") == kappa).sort("level")
        part = part.select(
            "level", "models", pl.col("q25_auroc_gain").alias("q25"), pl.col("median_auroc_gain").alias("q50"),
            pl.col("q75_auroc_gain").alias("q75"),
        )  # fmt: skip
        color = _COLORS[kappas.index(kappa) % len(_COLORS)]
        traces += _band_traces(part, kappa, color, "solid", True, kappa in shown)
    hidden = len(set(levels["kappa"].to_list()) - shown)
    plot = Plot(
        "detector-gain",
        traces,
        _layout("severity level (each κ's own levels; 0 = easiest OOD classes)",
                f"OOD AUROC gain over {MAIN_KAPPA} (κ − {MAIN_KAPPA})"),
        f"Median over models of each κ's OOD AUROC minus {MAIN_KAPPA}'s at the same severity level, paired per "
        "model and level, with the band of the middle half of the models; above 0 the κ detects the model's OOD "
        "classes of that difficulty better (uebench compare detector_levels)."
        + (f" {hidden} κ other than the detectors (det_*) are in the legend only." if hidden else ""),
    )  # fmt: skip
    summary = detector_summaries(data.canned("detectors"))
    summary = summary.select([pl.col(column).alias(name) for column, name in _DETECTOR_COLUMNS.items()])
    note = _note(
        f"One row per κ over the pretrained models that have it and {MAIN_KAPPA} on the same levels, best median "
        "mean OOD AUROC first: medians over models of the mean OOD AUROC over levels, of the gain over "
        f"{MAIN_KAPPA}, of the OOD AUROC and the gain at each model's hardest level; beats_msp_hardest: the "
        f"fraction of models where the κ beats {MAIN_KAPPA} there (sign test p); selective AUROC/AURC: no TS, "
        "every ID sample. uebench compare detectors --statistics adds the bootstrap interval of the mean gain."
    )
    heading = f"<h3>Each κ against {MAIN_KAPPA} (uebench compare detectors)</h3>"
    return Section("detectors", title, _grid([plot]) + heading + note + html_table(summary, max_rows=100))


def _reference_scatter(joined: pl.DataFrame) -> Plot:
    """Ours against the published mean OOD AUROC per (model, κ), over the levels both have."""
    means = (
        joined.group_by("model_id", "reference_model", "kappa")
        .agg(pl.len().alias("levels"), pl.col("ood_auroc").mean(), pl.col("reference_ood_auroc").mean())
        .sort("kappa", "model_id")
    )
    traces = []
    kind = _scatter_kind(means.height)
    for index, kappa in enumerate(sorted(means["kappa"].unique().to_list())):
        part = means.filter(pl.col("kappa") == kappa)
        ids = part["model_id"].to_list()
        traces.append(
            {
                "type": kind,
                "mode": "markers",
                "name": f"{kappa} ({part.height} models)",
                "x": _values(part["reference_ood_auroc"]),
                "y": _values(part["ood_auroc"]),
                "text": [f"{m} ~ {r}" for m, r in zip(ids, part["reference_model"], strict=True)],
                "customdata": [f"models/{page_name(m)}" for m in ids],
                "hovertemplate": "%{text}<br>published %{x:.4f}<br>ours %{y:.4f}<extra>%{fullData.name}</extra>",
                "marker": {"size": 6, "color": _COLORS[index % len(_COLORS)]},
            }
        )
    both = pl.concat([means["ood_auroc"], means["reference_ood_auroc"]]).drop_nulls().drop_nans()
    if both.len():
        ends = [both.min(), both.max()]  # the diagonal over the drawn values only, so it does not set the range
        traces.append(
            {"type": "scatter", "mode": "lines", "name": "equal", "x": ends, "y": ends,
             "line": {"color": "#999", "dash": "dash"}, "hoverinfo": "skip"}
        )  # fmt: skip
    return Plot(
        "cood-vs-published",
        traces,
        _layout("published mean OOD AUROC", "our mean OOD AUROC"),
        "Our mean OOD AUROC against the published one per (model, κ), over the levels matched by architecture "
        "name (uebench sql --query cood_vs_reference has every level); a model's page compares level by level.",
    )


def _overview_hsc(data: _Data) -> Section:
    title = "Hierarchical selective classification"
    published = data.tables["reference_hsc_metrics"]
    if not data.has("hsc_rules") and not data.has("hsc_calibration") and not published.height:
        return Section("hsc", title, _empty("no HSC results and no published HSC table in this database"))
    plots = []
    rules = data.tables["hsc_rules"].filter((pl.col("risk_type") == "01") & (pl.col("rule") != "selective"))
    gains = published.filter(
        (pl.col("metric") == "Gain") & (pl.col("risk_type") == "01") & (pl.col("rule") != "selective")
    ).select(pl.col("model_name").alias("model_id"), "rule", "temperature_scaled", pl.col("value").alias("gain"))
    if rules.height or gains.height:
        traces = []
        for origin, frame in (("ours", rules), ("published", gains)):
            for index, scaled in enumerate((False, True)):
                part = frame.filter(pl.col("temperature_scaled") == scaled).drop_nulls("gain").sort("rule")
                if part.height:
                    color = _COLORS[index]
                    traces.append(
                        {
                            "type": "box",
                            "name": f"{'with TS' if scaled else 'no TS'}, {origin} ({part['model_id'].n_unique()})",
                            "x": part["rule"].to_list(),
                            "y": _values(part["gain"]),
                            "text": part["model_id"].to_list(),
                            "boxpoints": "outliers",
                            "marker": {"color": color, "size": 4, "symbol": "circle" if origin == "ours" else
                                       "diamond"},
                            "line": {"color": color},
                            "fillcolor": color + ("88" if origin == "ours" else "22"),
                            "hovertemplate": "%{text}<br>gain %{y:.2f} %<extra>%{fullData.name}</extra>",
                        }
                    )  # fmt: skip
        plots.append(
            Plot(
                "hsc-gain",
                traces,
                _layout("inference rule", "hAURC gain over Selective (%)", boxmode="group"),
                "The % improvement of each rule's hAURC over Selective (0/1 risk) over models: ours (hsc_rules.gain, "
                "solid boxes) and the published HSC table's population (reference_hsc_metrics Gain_<rule>_01[_TS], "
                "light boxes; NaN cells, the CLIP rows, left out); the count is the models of each box.",
            )
        )
    if data.has("hsc_vs_reference"):
        plots.append(_hsc_reference_scatter(data.tables["hsc_vs_reference"]))
    calibration = data.tables["hsc_calibration"].drop_nulls("accuracy_mean")
    if calibration.height:
        calibration = calibration.with_columns(
            (pl.col("accuracy_mean") - (1 - pl.col("alpha"))).alias("excess"),
            pl.format("α = {}", pl.col("alpha")).alias("target"),
        ).sort("alpha")
        traces = []
        for index, method in enumerate(sorted(calibration["method"].unique().to_list())):
            part = calibration.filter(pl.col("method") == method)
            traces.append(
                {
                    "type": "box",
                    "name": method,
                    "x": part["target"].to_list(),
                    "y": _values(part["excess"]),
                    "text": part["model_id"].to_list(),
                    "boxpoints": "outliers",
                    "marker": {"color": _COLORS[index % len(_COLORS)], "size": 4},
                    "hovertemplate": "%{text}<br>%{y:.4f}<extra>%{fullData.name}</extra>",
                }
            )
        plots.append(
            Plot(
                "hsc-calibration",
                traces,
                _layout("target risk α", "achieved accuracy − target (1 − α)", boxmode="group"),
                "Calibrated Climbing thresholds: mean test accuracy minus the target, per method (hsc_calibration); "
                "below 0 misses the target.",
            )
        )
    return Section("hsc", title, _grid(plots))


def _hsc_reference_scatter(joined: pl.DataFrame) -> Plot:
    """Our hAURC against the published one per (model, rule, risk type, TS) of ``hsc_vs_reference``."""
    traces = []
    keys = joined.select("rule", "risk_type", "temperature_scaled").unique().sort("risk_type", "temperature_scaled",
                                                                                 "rule")  # fmt: skip
    rules = sorted(joined["rule"].unique().to_list())
    for rule, risk_type, scaled in keys.iter_rows():
        part = joined.filter(
            (pl.col("rule") == rule) & (pl.col("risk_type") == risk_type) & (pl.col("temperature_scaled") == scaled)
        ).sort("model_id")
        ids = part["model_id"].to_list()
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"{rule}, {risk_type} risk, {'with' if scaled else 'no'} TS",
                "x": _values(part["reference_haurc"]),
                "y": _values(part["haurc"]),
                "text": [f"{m} ~ {r}" for m, r in zip(ids, part["reference_model"], strict=True)],
                "customdata": [f"models/{page_name(m)}" for m in ids],
                "hovertemplate": "%{text}<br>published hAURC %{x:.4f}<br>our hAURC %{y:.4f}"
                "<extra>%{fullData.name}</extra>",
                "marker": {"size": 7, "color": _COLORS[rules.index(rule) % len(_COLORS)],
                           "symbol": ("circle" if risk_type == "01" else "square") + ("-open" if scaled else "")},
            }
        )  # fmt: skip
    both = pl.concat([joined["haurc"], joined["reference_haurc"]]).drop_nulls().drop_nans()
    if both.len():
        ends = [both.min(), both.max()]
        traces.append(
            {"type": "scatter", "mode": "lines", "name": "equal", "x": ends, "y": ends,
             "line": {"color": "#999", "dash": "dash"}, "hoverinfo": "skip"}
        )  # fmt: skip
    return Plot(
        "hsc-vs-published",
        traces,
        _layout("published hAURC (reference_hsc_metrics)", "our hAURC (hsc_rules)"),
        "Our hAURC against the published HSC table's for the same model (a published name that maps to our model "
        "id through reference_models; uebench sql --query hsc_vs_reference), per rule, risk type (circle: 0/1, "
        "square: severity) and TS (open: with TS).",
    )


def _model_index(data: _Data, link: Callable[[str], str | None]) -> Section:
    title = f"Model index ({len(data.model_ids)} models)"
    if not data.model_ids:
        return Section("index", title, _empty("no models in this database"))
    frame = pl.DataFrame({"model_id": data.model_ids})
    models = data.tables["models"]
    frame = frame.join(models.select("model_id", pl.col(data.group_column).alias("group"), "params"), on="model_id",
                       how="left")  # fmt: skip
    selective = data.tables["selective_metrics"]
    kappa = _main_kappa(selective)
    if kappa is not None:
        main = selective.filter(pl.col("kappa") == kappa)
        raw = main.filter(~pl.col("temperature_scaled") & (pl.col("subset") == "all"))
        scaled = main.filter(pl.col("temperature_scaled")).select("model_id", pl.col("ece15").alias("ece15_ts"))
        frame = frame.join(raw.select("model_id", "accuracy", "auroc", "aurc", "ece15"), on="model_id", how="left")
        frame = frame.join(scaled, on="model_id", how="left")
    if data.has("cood_levels"):
        cood = data.tables["cood_levels"].filter(pl.col("kappa") == (kappa or MAIN_KAPPA))
        mean = cood.group_by("model_id").agg(pl.col("ood_auroc").mean().alias("mean_ood_auroc"))
        frame = frame.join(mean, on="model_id", how="left")
    if data.has("hsc_rules"):
        best = (
            data.tables["hsc_rules"]
            .filter((pl.col("risk_type") == "01") & ~pl.col("temperature_scaled") & (pl.col("rule") != "selective"))
            .group_by("model_id")
            .agg(pl.col("gain").max().alias("best_hsc_gain"))
        )
        frame = frame.join(best, on="model_id", how="left")
    search = '<input class="filter" type="search" placeholder="filter models…" data-filter="model-index">'
    note = _note(
        f"One row per model; metrics: κ = {kappa or MAIN_KAPPA}, no TS, every sample (ece15_ts: with TS on the TS "
        "evaluation split); mean_ood_auroc as cood_mean_auroc; best_hsc_gain over the hierarchical rules (0/1 "
        "risk, no TS). Click a header to sort, a model to open it."
    )
    return Section("index", title, search + note + html_table(frame, link=link, table_id="model-index", tall=True))


def _overview_provenance(data: _Data) -> Section:
    parts = []
    for heading, table, query in (("Runs", "runs", "runs"), ("Datasets", "datasets", None)):
        parts.append(f"<h3>{heading}</h3>")
        if not data.has(table):
            parts.append(_empty(f"no {table} recorded in this database"))
            continue
        parts.append(html_table(data.canned(query) if query else data.tables[table]))
    failures = data.canned("failures") if data.has("runs") else pl.DataFrame()
    parts.append("<h3>Failures</h3>")
    if failures.height:
        parts.append(html_table(failures, max_rows=100, more_hint="All rows: uebench sql --query failures"))
    else:
        parts.append(_note("nothing failed"))
    return Section("provenance", "Provenance", "".join(parts))


def _overview(data: _Data, subtitle: str) -> str:

    known = set(data.model_ids)

    def link(model_id: str) -> str | None:
        return f"models/{page_name(model_id)}" if model_id in known else None

    sections = [
        _overview_population(data),
        _overview_groups(data),
        _overview_top(data, link),
        _overview_cood(data),
        *([detectors] if (detectors := _overview_detectors(data)) is not None else []),
        _overview_hsc(data),
        Section("comparisons", "The papers' comparisons", comparisons_index()),
        _model_index(data, link),
        _overview_provenance(data),
    ]
    return _page("uebench report", subtitle, sections, "assets/")


# -- the drill-down page of one model -----------------------------------------------------------------------
def _setting(scaled: bool, subset: str) -> tuple[str, bool]:
    return _SETTINGS.get((scaled, subset), (f"{subset}, {'with' if scaled else 'no'} TS", False))


def _model_selective(data: _Data, model_id: str) -> list[Section]:
    metrics = data.model_table("selective_metrics", model_id)
    curves = data.model_table("selective_curves", model_id)
    bins = data.model_table("reliability_bins", model_id)
    sections = []
    if metrics.height:
        table = metrics.select([c for c in _SELECTIVE_COLUMNS if c in metrics.columns]).sort(
            "kappa", "temperature_scaled", "subset"
        )
        sections.append(Section("selective", "Selective prediction and calibration metrics", html_table(table)))
    else:
        sections.append(Section("selective", "Selective prediction and calibration metrics",
                                _empty("no selective prediction results for this model")))  # fmt: skip
    plots = []
    if curves.height:
        traces = []
        keys = curves.select("kappa", "temperature_scaled", "subset").unique().sort("kappa", "temperature_scaled",
                                                                                     "subset")  # fmt: skip
        kappas = sorted(curves["kappa"].unique().to_list())
        for kappa, scaled, subset in keys.iter_rows():
            part = curves.filter(
                (pl.col("kappa") == kappa) & (pl.col("temperature_scaled") == scaled) & (pl.col("subset") == subset)
            ).sort("point")
            label, shown = _setting(scaled, subset)
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"{kappa}: {label}",
                    "x": _values(part["coverage"]),
                    "y": _values(part["risk"]),
                    "customdata": _values(part["threshold"]),
                    "visible": True if shown else "legendonly",
                    "line": {"color": _COLORS[kappas.index(kappa) % len(_COLORS)],
                             "dash": "solid" if not scaled and subset == "all" else ("dash" if scaled else "dot")},
                    "hovertemplate": "coverage %{x:.4f}<br>risk %{y:.4f}<br>threshold %{customdata:.4g}"
                    "<extra>%{fullData.name}</extra>",
                }
            )  # fmt: skip
        plots.append(
            Plot(
                "risk-coverage",
                traces,
                _layout("coverage", "selective risk (error rate among accepted)", xaxis={"range": [0, 1]}),
                "Stored risk–coverage points (selective_curves): exact tie-aware points at distinct thresholds, "
                "ranked as the metrics rank (log-MSP for MSP); click the legend for the other settings.",
            )
        )
    if bins.height:
        traces = []
        keys = bins.select("kappa", "temperature_scaled", "subset").unique().sort("kappa", "temperature_scaled",
                                                                                   "subset")  # fmt: skip
        ece = {
            (r["kappa"], r["temperature_scaled"], r["subset"]): r["ece15"] for r in metrics.iter_rows(named=True)
        }
        for index, (kappa, scaled, subset) in enumerate(keys.iter_rows()):
            part = bins.filter(
                (pl.col("kappa") == kappa) & (pl.col("temperature_scaled") == scaled) & (pl.col("subset") == subset)
            ).sort("bin")
            label, shown = _setting(scaled, subset)
            stored = ece.get((kappa, scaled, subset))
            name = f"{kappa}: {label}" + (f" (ECE {stored:.4f})" if stored is not None else "")
            traces.append(
                {
                    "type": "bar",
                    "name": name,
                    "x": _values((part["lo"] + part["hi"]) / 2),
                    "width": _values(part["hi"] - part["lo"]),
                    "y": _values(part["accuracy"]),
                    "customdata": [list(r) for r in zip(_values(part["mean_conf"]), part["count"], strict=True)],
                    "visible": True if shown else "legendonly",
                    "opacity": 0.65,
                    "marker": {"color": _COLORS[index % len(_COLORS)], "line": {"color": "#333", "width": 0.5}},
                    "hovertemplate": "bin (%{x:.3f} ± %{width:.3f}/2)<br>accuracy %{y:.4f}<br>mean confidence "
                    "%{customdata[0]:.4f}<br>%{customdata[1]} samples<extra>%{fullData.name}</extra>",
                }
            )
        traces.append(
            {"type": "scatter", "mode": "lines", "name": "perfect calibration", "x": [0.0, 1.0], "y": [0.0, 1.0],
             "line": {"color": "#999", "dash": "dash"}, "hoverinfo": "skip"}
        )  # fmt: skip
        convention = bins["bin_convention"].drop_nulls()
        plots.append(
            Plot(
                "reliability",
                traces,
                _layout(
                    "confidence (bin)", "accuracy in the bin", barmode="overlay", xaxis={"range": [0, 1]},
                    yaxis={"range": [0, 1]},
                ),
                f"Stored calibration bins (reliability_bins, {convention[0] if convention.len() else ''} bins): "
                "Σ count·|mean confidence − accuracy| / n over them is the ECE in the legend.",
            )
        )
    if plots:
        sections.append(Section("curves", "Risk–coverage curve and reliability diagram", _grid(plots)))
    else:
        sections.append(Section("curves", "Risk–coverage curve and reliability diagram",
                                _empty("no stored curves or calibration bins for this model")))  # fmt: skip
    return sections


def _model_cood(data: _Data, model_id: str, name: str | None) -> Section:
    title = "C-OOD levels"
    levels = data.model_table("cood_levels", model_id)
    if levels.height == 0:
        return Section("cood", title, _empty("no C-OOD results for this model"))
    levels = levels.sort("kappa", "level")
    reference = data.tables["reference_cood_levels"]
    reference = reference.filter(pl.col("model_name") == name).sort("kappa", "level") if name else reference.clear()
    traces = []
    kappas = sorted(set(levels["kappa"].to_list()) | set(reference["kappa"].to_list()))
    for kappa in kappas:
        color = _COLORS[kappas.index(kappa) % len(_COLORS)]
        part = levels.filter(pl.col("kappa") == kappa)
        if part.height:
            traces.append(
                {"type": "scatter", "mode": "lines+markers", "name": f"{kappa}", "x": _values(part["level"]),
                 "y": _values(part["ood_auroc"]), "line": {"color": color},
                 "hovertemplate": "level %{x}<br>OOD AUROC %{y:.4f}<extra>%{fullData.name}</extra>"}
            )  # fmt: skip
        part = reference.filter(pl.col("kappa") == kappa)
        if part.height:
            traces.append(
                {"type": "scatter", "mode": "lines+markers", "name": f"{kappa}, published", "x": _values(part["level"]),
                 "y": _values(part["ood_auroc"]), "line": {"color": color, "dash": "dot"},
                 "hovertemplate": "level %{x}<br>published OOD AUROC %{y:.4f}<extra>%{fullData.name}</extra>"}
            )  # fmt: skip
    plot = Plot(
        "cood-levels",
        traces,
        _layout("severity level (0 = easiest OOD classes)", "OOD AUROC"),
        "OOD AUROC per severity level and κ (cood_levels)"
        + ("; dotted: the published table for this architecture." if reference.height else "."),
    )
    columns = ["kappa", "level", "percentile", "severity", "n_id", "n_ood", "ood_auroc", "fpr95", "aupr_in",
               "aupr_out", "ood_avg_conf", "id_accuracy", "id_auroc"]  # fmt: skip
    return Section("cood", title, _grid([plot]) + html_table(levels.select(columns)))


def _model_hsc(data: _Data, model_id: str) -> Section:
    title = "Hierarchical selective classification"
    rules = data.model_table("hsc_rules", model_id)
    curves = data.model_table("hsc_curves", model_id)
    calibration = data.model_table("hsc_calibration", model_id)
    if rules.height + curves.height + calibration.height == 0:
        return Section("hsc", title, _empty("no HSC results for this model"))
    plots = []
    curves = curves.filter(~pl.col("temperature_scaled"))  # with TS: in SQL (hsc_curves), half the page's weight
    for risk_type in sorted(curves["risk_type"].unique().to_list()):
        part_risk = curves.filter(pl.col("risk_type") == risk_type)
        rule_names = sorted(part_risk["rule"].unique().to_list())
        traces = []
        for index, rule in enumerate(rule_names):
            part = part_risk.filter(pl.col("rule") == rule).sort("point")
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": rule,
                    "x": _values(part["coverage"]),
                    "y": _values(part["risk"]),
                    "customdata": _values(part["theta"]),
                    "line": {"color": _COLORS[index % len(_COLORS)]},
                    "hovertemplate": "coverage %{x:.4f}<br>risk %{y:.4f}<br>θ %{customdata:.4g}"
                    "<extra>%{fullData.name}</extra>",
                }
            )
        label = "0/1 risk" if risk_type == "01" else f"{risk_type} risk"
        plots.append(
            Plot(
                f"hrc-{re.sub(r'[^A-Za-z0-9]', '', risk_type)}",
                traces,
                _layout("coverage", f"hierarchical risk ({label})", xaxis={"range": [0, 1]}),
                f"Hierarchical risk–coverage curves (hsc_curves, {label}, no temperature scaling), one line per "
                "inference rule; the TS curves are in hsc_curves (temperature_scaled).",
            )
        )
    body = _grid(plots) if plots else ""
    if rules.height:
        table = rules.select("rule", "risk_type", "temperature_scaled", "haurc", "gain")
        published = data.model_table("hsc_vs_reference", model_id)
        heading = "hAURC per rule (hsc_rules)"
        if published.height:
            keys = ["rule", "risk_type", "temperature_scaled"]
            table = table.join(published.select(*keys, "reference_model", "reference_haurc", "reference_gain"),
                               on=keys, how="left")  # fmt: skip
            heading += f", and the published HSC table's ({published['reference_model'][0]})"
        body += f"<h3>{html.escape(heading)}</h3>" + html_table(table.sort("risk_type", "temperature_scaled", "rule"))
    if calibration.height:
        columns = ["method", "alpha", "delta", "n_cal", "repetitions", "theta_mean", "accuracy_mean", "accuracy_error",
                   "coverage_mean", "violation_rate"]  # fmt: skip
        body += "<h3>Calibrated thresholds (hsc_calibration)</h3>" + html_table(
            calibration.select(columns).with_columns((1 - pl.col("alpha")).alias("target_accuracy")).sort(
                "alpha", "method"
            )
        )
    return Section("hsc", title, body)


def _model_provenance(data: _Data, model_id: str, model: dict | None) -> Section:
    parts = []
    if model:
        parts.append(_fields((k, v) for k, v in model.items() if k != "pretrained_cfg"))
        if model.get("pretrained_cfg"):
            parts.append(f"<h3>pretrained_cfg</h3><pre>{html.escape(str(model['pretrained_cfg']))}</pre>")
    else:
        parts.append(_empty("this model has no row in the models table"))
    tasks = data.model_table("run_tasks", model_id)
    if tasks.height:
        parts.append("<h3>Run tasks</h3>")
        parts.append(html_table(tasks.drop("model_id").sort("run_id", "dataset", "shard")))
    run_ids: set[str] = set()
    for table in ("selective_metrics", "cood_levels", "hsc_rules", "hsc_calibration"):
        frame = data.model_table(table, model_id)
        if "run_id" in frame.columns:
            run_ids.update(frame["run_id"].drop_nulls().to_list())
    if model and model.get("run_id"):
        run_ids.add(model["run_id"])
    runs = data.tables["runs"].filter(pl.col("run_id").is_in(sorted(run_ids))).drop("config")
    if runs.height:
        parts.append("<h3>Runs that wrote this model's rows</h3>" + html_table(runs))
    return Section("provenance", "Provenance", "".join(parts))


def _model_page(data: _Data, model_id: str, models: dict[str, dict], subtitle: str) -> str:
    model = models.get(model_id)
    group = data.group(model_id)
    sections = [
        *_model_selective(data, model_id),
        _model_cood(data, model_id, model["name"] if model else None),
        _model_hsc(data, model_id),
        _model_provenance(data, model_id, model),
    ]
    head = f"{html.escape(data.group_column)}: {html.escape(group)}. {subtitle}"
    return _page(model_id, head, sections, "../assets/", back="../index.html")


# -- writing ------------------------------------------------------------------------------------------------
def _resolve(source: Path) -> Path:
    source = Path(source)
    return source / DB_FILENAME if source.is_dir() else source


def _check_target(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ReportError(f"the report is a folder, but {folder} is a file; choose another --output")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise ReportError(f"{folder} exists and is not a uebench report folder; remove it or choose another --output")


def _swap_in(built: Path, folder: Path) -> None:
    """Move the finished ``built`` folder to ``folder``, replacing an earlier report there."""
    old = None
    if folder.exists():
        old = temp_path(folder)
        folder.rename(old)
    try:
        built.rename(folder)
    except BaseException:
        if old is not None:
            old.rename(folder)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_report(source: Path, output: Path | None = None, top_k: int = DEFAULT_TOP_K) -> Path:
    """Write the report folder of a results database and return the path of its ``index.html``.

    source: the workspace folder or the ``.duckdb`` file; output: the report folder (default
    ``<workspace>/reports/report``), built beside it and moved into place when complete (an earlier report
    there is replaced; any other non-empty folder is refused with :class:`ReportError`); top_k: rows in each
    top-k table of the overview. Raises StoreError when the database is missing.
    """
    if not (isinstance(top_k, int) and top_k >= 1):
        raise ReportError(f"top_k must be an integer >= 1, got {top_k!r}")
    from plotly import __version__ as plotly_version
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    db_path = _resolve(source)
    folder = Path(output) if output is not None else db_path.parent / "reports" / "report"
    _check_target(folder)
    with Store.open(db_path, read_only=True, samples=False) as store:  # the report reads no per-sample outputs
        data = _Data(store, top_k).load()
        generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        subtitle = html.escape(
            f"Database {db_path} (schema version {store.schema_version}); {len(data.model_ids)} models; generated "
            f"{generated} with plotly {plotly_version} (plotly.js {get_plotlyjs_version()}; cartesian bundle "
            f"{CARTESIAN_VERSION})."
        )
        overview = _overview(data, subtitle)
        comparisons = _page("uebench report: the papers' comparisons", subtitle, comparisons_sections(store),
                            "assets/", back="index.html")  # fmt: skip
        models = {row["model_id"]: row for row in data.tables["models"].iter_rows(named=True)}
        folder.parent.mkdir(parents=True, exist_ok=True)
        built = temp_path(folder)
        try:
            (built / "models").mkdir(parents=True)
            (built / "assets").mkdir()
            (built / "assets" / FULL_JS).write_text(get_plotlyjs(), encoding="utf-8")
            shutil.copyfile(_CARTESIAN_SOURCE, built / "assets" / CARTESIAN_JS)
            (built / "assets" / "report.js").write_text(JS, encoding="utf-8")
            (built / "assets" / "report.css").write_text(CSS, encoding="utf-8")
            for model_id in data.model_ids:
                page = _model_page(data, model_id, models, subtitle)
                (built / "models" / page_name(model_id)).write_text(page, encoding="utf-8")
            (built / "index.html").write_text(overview, encoding="utf-8")
            (built / COMPARISONS_PAGE).write_text(comparisons, encoding="utf-8")
            (built / MARKER).write_text("written by uebench report; replaced by the next one\n", encoding="utf-8")
            _swap_in(built, folder)
        finally:
            shutil.rmtree(built, ignore_errors=True)
    return folder / "index.html"
