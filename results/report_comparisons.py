"""The report's comparisons page (``comparisons.html``): a figure per entry of :data:`results.comparisons.COMPARISONS`.

Each figure draws the rows of the comparison's canned query (the rows ``uebench compare NAME`` prints) as its
:class:`results.comparisons.Figure` describes them — nothing is recomputed from stored metrics:

- ``scatter`` (metric_vs_accuracy): ``y`` against ``x``, one trace per (colour value, origin);
- ``paired`` (regime_pairs): the value with the regime against the value without, one point per paired
  architecture, over the line y = x (above it: the regime raises the metric); unpaired rows are not drawn;
  (detectors): each κ's OOD AUROC at a model's hardest level against MSP's there, one point per (κ, model);
- ``rank`` (ts_effect): each model's rank after temperature scaling against its rank before, over y = x;
- ``box`` (regime_groups, hsc_gain_by_regime): the stored quantiles as boxes (median, quartiles, min–max whiskers,
  mean) per ``x`` category, one trace per (colour value, origin);
- ``lines`` (cood_degradation_by_family, detector_levels): ``y`` over ``x``, one line per (colour value, origin);
- ``bar`` (model_percentile): the percentile of each metric for the model the paper's finding is about — per origin
  the CLIP model with the highest mean C-OOD AUROC (:func:`percentile_models`).

Ours and published rows differ by marker symbol (circle / diamond), line dash (solid / dotted) or box fill (solid /
light), and by the origin in every trace name. A comparison with facets (``Figure.facet``) draws one view per facet
value; a menu on the figure switches between them (the first view in the query's order is shown first), changing the
axis titles and the statistics annotation with it. Where the comparison has a statistic
(:attr:`results.comparisons.Comparison.statistic`), the figure's annotation gives the shown view's statistics (ρ and
τ-b with their bootstrap intervals; mean paired Δ with its interval and the sign test) and a table under the figure
every statistics row — the same numbers as ``uebench compare NAME --statistics`` with its default bootstrap settings.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import polars as pl

from results.comparisons import COMPARISONS, Comparison, Figure
from results.report_parts import (
    _COLORS,
    COMPARISONS_PAGE,
    Plot,
    Section,
    _empty,
    _layout,
    _note,
    _scatter_kind,
    _values,
    html_table,
)
from results.sql import canned_query
from results.store import Store, StoreError

_SYMBOLS = {"ours": "circle", "published": "diamond"}
_DASHES = {"ours": "solid", "published": "dot"}
_FILL_ALPHA = {"ours": "88", "published": "22"}  # box fill: #rrggbb + alpha
_DIAGONAL_KINDS = ("paired", "rank")
# Axis titles of the Figure columns; {metric} is the shown view's metric (facet 'metric' or 'x_metric').
_AXIS_TITLES = {
    "x_value": "{x_metric}",
    "value": "{metric}",
    "value_without": "{metric} without the regime (plain models of the architecture)",
    "value_with": "{metric} with the regime",
    "rank_before": "rank by {metric} before temperature scaling (1 = best)",
    "rank_after": "rank by {metric} after temperature scaling",
    "regime": "training regime",
    "median": "{metric}: median, quartiles, min–max over the regime's models",
    "median_gain": "hAURC gain over Selective (%): median, quartiles, min–max",
    "metric": "metric",
    "percentile": "percentile among the origin's models (100 = better than all others)",
    "level": "severity level (0 = easiest OOD classes)",
    "mean_ood_auroc": "mean OOD AUROC (MSP) over the family's models",
    "msp_hardest_auroc": "MSP's OOD AUROC at the model's hardest severity level",
    "hardest_auroc": "the κ's OOD AUROC at its hardest level (same level number)",
    "median_auroc_gain": "median OOD AUROC gain over MSP (κ − MSP, paired per model and level)",
}


def _label(value: object) -> str:
    return "unknown" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _axis_title(column: str, view: Mapping[str, object]) -> str:
    names = {"metric": _label(view.get("metric", "value")), "x_metric": _label(view.get("x_metric", "x"))}
    return _AXIS_TITLES.get(column, column).format(**names)


def _facets(rows: pl.DataFrame, figure: Figure) -> list[tuple[dict[str, object], pl.DataFrame]]:
    """(facet values, rows) of each view, in the order of the rows (one view of every row without facets)."""
    if not figure.facet:
        return [({}, rows)]
    return [
        (dict(zip(figure.facet, key, strict=True)), part)
        for key, part in rows.group_by(list(figure.facet), maintain_order=True)
    ]


def _view_name(view: Mapping[str, object]) -> str:
    return ", ".join(f"{column} = {_label(value)}" for column, value in view.items()) or "all rows"


def _short(value: object, limit: int = 120) -> object:
    """A hover value: long texts (the model lists of regime_pairs) cut to ``limit`` characters."""
    return value[: limit - 1] + "…" if isinstance(value, str) and len(value) > limit else value


def _hover(part: pl.DataFrame, figure: Figure, y_format: str = ".4f") -> tuple[list, list, str]:
    """(text, customdata, hovertemplate) of a trace: the first hover column as the text, the others as custom data."""
    hover = [c for c in figure.hover if c in part.columns]
    text = [_label(v) for v in part[hover[0]].to_list()] if hover else [""] * part.height
    extra = hover[1:]
    columns = [[_short(v) for v in _values(part[c])] for c in extra]
    customdata = [list(row) for row in zip(*columns, strict=True)] if extra else []
    lines = [f"{c} %{{customdata[{i}]}}" for i, c in enumerate(extra)]
    template = "<br>".join(["%{text}", f"{figure.x} %{{x}}", f"{figure.y} %{{y:{y_format}}}", *lines])
    return text, customdata, template + "<extra>%{fullData.name}</extra>"


def _groups(part: pl.DataFrame, color: str | None) -> list[tuple[str, str, pl.DataFrame]]:
    """(colour value, origin, rows) per trace: by the colour column and the origin."""
    keys = ["origin"] if color in (None, "origin") else [color, "origin"]
    out = []
    for key, rows in part.group_by(keys, maintain_order=True):
        values = dict(zip(keys, key, strict=True))
        out.append((_label(values.get(color, values["origin"])), str(values["origin"]), rows))
    return sorted(out, key=lambda item: (item[1], item[0]))


def _trace_name(value: str, origin: str, color: str | None) -> str:
    return origin if color in (None, "origin") else f"{value} ({origin})"


def _marker_traces(part: pl.DataFrame, figure: Figure, colors: Mapping[str, str], meta: str) -> list[dict]:
    part = part.filter(pl.col(figure.x).is_not_null() & pl.col(figure.y).is_not_null())
    traces = []
    kind = _scatter_kind(part.height)
    for value, origin, rows in _groups(part, figure.color):
        text, customdata, template = _hover(rows, figure)
        traces.append(
            {
                "type": kind, "mode": "markers", "name": _trace_name(value, origin, figure.color),
                "legendgroup": value, "meta": meta, "x": _values(rows[figure.x]), "y": _values(rows[figure.y]),
                "text": text, "customdata": customdata, "hovertemplate": template,
                "marker": {"size": 6, "opacity": 0.7, "color": colors[value], "symbol": _SYMBOLS.get(origin, "square"),
                           "line": {"width": 0.5, "color": "#333"} if origin == "published" else {"width": 0}},
            }
        )  # fmt: skip
    if figure.kind in _DIAGONAL_KINDS and part.height:
        both = pl.concat([part[figure.x].cast(pl.Float64), part[figure.y].cast(pl.Float64)])
        ends = [float(both.min()), float(both.max())]
        traces.append(
            {"type": "scatter", "mode": "lines", "name": "no change (y = x)", "meta": meta, "x": ends, "y": ends,
             "line": {"color": "#999", "dash": "dash"}, "hoverinfo": "skip"}
        )  # fmt: skip
    return traces


def _box_traces(part: pl.DataFrame, figure: Figure, colors: Mapping[str, str], meta: str) -> list[dict]:
    """Boxes from the stored quantiles: ``figure.y`` is the median column (``median``, ``median_gain``); the other
    statistics are the columns with the same suffix (``q25``/``q75``, ``min``/``max``, ``mean``)."""
    suffix = figure.y.removeprefix("median")
    columns = {"q1": f"q25{suffix}", "median": figure.y, "q3": f"q75{suffix}", "lowerfence": f"min{suffix}",
               "upperfence": f"max{suffix}", "mean": f"mean{suffix}"}  # fmt: skip
    part = part.filter(pl.col(figure.y).is_not_null())
    traces = []
    for value, origin, rows in _groups(part, figure.color):
        color = colors[value]
        counts = rows["models"].to_list() if "models" in rows.columns else [None] * rows.height
        traces.append(
            {
                "type": "box", "name": _trace_name(value, origin, figure.color), "legendgroup": value, "meta": meta,
                "x": [_label(v) for v in rows[figure.x].to_list()],
                **{key: _values(rows[column]) for key, column in columns.items()},
                "text": [f"{n} models" for n in counts], "hoverinfo": "x+y+text+name",
                "marker": {"color": color}, "line": {"color": color, "width": 1.5},
                "fillcolor": color + _FILL_ALPHA.get(origin, "55"),
            }
        )  # fmt: skip
    return traces


def _line_traces(part: pl.DataFrame, figure: Figure, colors: Mapping[str, str], meta: str) -> list[dict]:
    traces = []
    for value, origin, rows in _groups(part.filter(pl.col(figure.y).is_not_null()), figure.color):
        rows = rows.sort(figure.x)
        text, customdata, template = _hover(rows.with_columns(pl.lit(value).alias("_name")),
                                            Figure(figure.kind, figure.x, figure.y, hover=("_name", *figure.hover)))
        traces.append(
            {
                "type": "scatter", "mode": "lines+markers", "name": _trace_name(value, origin, figure.color),
                "legendgroup": value, "meta": meta, "x": _values(rows[figure.x]), "y": _values(rows[figure.y]),
                "text": text, "customdata": customdata, "hovertemplate": template,
                "line": {"color": colors[value], "dash": _DASHES.get(origin, "dash")},
                "marker": {"size": 5, "symbol": _SYMBOLS.get(origin, "square")},
            }
        )  # fmt: skip
    return traces


def percentile_models(rows: pl.DataFrame) -> dict[str, tuple[str, str]]:
    """origin -> (model, why) of a ``model_percentile`` frame: the model the C-OOD paper's finding is about, the CLIP
    model with the highest ``cood_mean_auroc``; without a CLIP model with that metric the model with the highest
    ``cood_mean_auroc``; without any, the model ranked first by accuracy (ties: the first model name)."""
    chosen = {}
    for origin in sorted(rows["origin"].unique().to_list()):
        own = rows.filter(pl.col("origin") == origin)
        cood = own.filter((pl.col("metric") == "cood_mean_auroc") & pl.col("value").is_not_null())
        clip = cood.filter(pl.col("clip").fill_null(False))
        if clip.height:
            pick, why = clip, "the CLIP model with the highest mean C-OOD AUROC"
        elif cood.height:
            pick, why = cood, "the model with the highest mean C-OOD AUROC (no CLIP model)"
        else:
            pick = own.filter(pl.col("metric") == "accuracy")
            pick, why = (pick if pick.height else own), "the most accurate model (no C-OOD results)"
        chosen[origin] = (str(pick.sort(["value", "model"], descending=[True, False], nulls_last=True)["model"][0]),
                          why)
    return chosen


def _bar_traces(part: pl.DataFrame, figure: Figure, colors: Mapping[str, str], meta: str) -> list[dict]:
    traces = []
    for origin, (model, why) in percentile_models(part).items():
        rows = part.filter((pl.col("origin") == origin) & (pl.col("model") == model))
        text, customdata, template = _hover(rows, figure, ".1f")
        traces.append(
            {
                "type": "bar", "name": f"{model} ({origin}: {why})", "meta": meta, "x": _values(rows[figure.x]),
                "y": _values(rows[figure.y]), "text": text, "customdata": customdata, "hovertemplate": template,
                "textposition": "none", "marker": {"color": colors.get(origin, _COLORS[0]), "opacity": 0.85,
                                                   "pattern": {"shape": "" if origin == "ours" else "/"}},
            }
        )  # fmt: skip
    return traces


_TRACES = {"scatter": _marker_traces, "paired": _marker_traces, "rank": _marker_traces, "box": _box_traces,
           "lines": _line_traces, "bar": _bar_traces}  # fmt: skip


# -- statistics -------------------------------------------------------------------------------------------------
def _number(value: object, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _statistic_text(row: Mapping[str, object], keys: Sequence[str]) -> str:
    """One short line of a statistics row (the fields of results.comparisons' Correlation or PairedDifference)."""
    label = ", ".join(_label(row[k]) for k in keys)
    if "spearman" in row:
        return (
            f"{label} (n = {row['n']}): ρ {_number(row['spearman'], '.3f')} [{_number(row['spearman_low'], '.3f')}, "
            f"{_number(row['spearman_high'], '.3f')}], τb {_number(row['kendall'], '.3f')} "
            f"[{_number(row['kendall_low'], '.3f')}, {_number(row['kendall_high'], '.3f')}]"
        )
    text = (
        f"{label} ({row['n_pairs']} {'models' if 'models_moved' in row else 'pairs'}): mean Δ "
        f"{_number(row['mean'], '+.4f')} [{_number(row['mean_low'], '+.4f')}, {_number(row['mean_high'], '+.4f')}], "
        f"{row['n_positive']} up / {row['n_negative']} down, sign test p {_number(row['sign_test_p'], '.2g')}"
    )
    if "models_moved" in row:
        text += f"; ranking τb {_number(row['kendall'], '.3f')}, {row['models_moved']} models move"
    return text


def _annotation(statistics: pl.DataFrame | None, view: Mapping[str, object]) -> list[dict]:
    if statistics is None or statistics.height == 0:
        return []
    shown = statistics
    for column, value in view.items():
        if column in shown.columns:
            shown = shown.filter(pl.col(column) == value)
    keys = [c for c in ("origin", "regime", "kappa") if c in shown.columns]
    lines = [_statistic_text(row, keys) for row in shown.iter_rows(named=True)]
    if not lines:
        return []
    first = statistics.row(0, named=True)
    lines.append(
        f"{100 * float(first['confidence']):g}% bootstrap intervals, {first['n_boot']} resamples, seed {first['seed']}"
    )
    return [{"xref": "paper", "yref": "paper", "x": 0.01, "y": 0.99, "xanchor": "left", "yanchor": "top",
             "align": "left", "showarrow": False, "text": "<br>".join(html.escape(line) for line in lines),
             "font": {"size": 10}, "bgcolor": "rgba(255,255,255,0.85)", "bordercolor": "#bbb", "borderwidth": 1}]


def _statistics_table(name: str, statistics: pl.DataFrame) -> str:
    settings = [c for c in ("confidence", "n_boot", "seed") if c in statistics.columns]
    return (
        f"<h3>Statistics (uebench compare {html.escape(name)} --statistics)</h3>"
        + html_table(statistics.drop(settings), max_rows=60)
    )


# -- one comparison -------------------------------------------------------------------------------------------------
def comparison_plot(comparison: Comparison, rows: pl.DataFrame, statistics: pl.DataFrame | None) -> Plot | None:
    """The figure of ``comparison`` from its query's ``rows`` and its ``statistics`` (None: no statistic); None when
    there are no rows to draw."""
    figure = comparison.figure
    color_values = (
        sorted({_label(v) for v in rows[figure.color].to_list()}) if figure.color not in (None, "origin") else []
    )
    colors = {value: _COLORS[index % len(_COLORS)] for index, value in enumerate(color_values)}
    colors.update({"ours": _COLORS[0], "published": _COLORS[1]} if figure.color in (None, "origin") else {})
    traces: list[dict] = []
    views = []
    for view, part in _facets(rows, figure):
        meta = _view_name(view)
        drawn = _TRACES[figure.kind](part, figure, colors, meta)
        if drawn:
            views.append((view, meta, len(traces), len(traces) + len(drawn)))
            traces += drawn
    if not traces:
        return None
    layouts = [
        {"xaxis.title.text": _axis_title(figure.x, view), "yaxis.title.text": _axis_title(figure.y, view),
         "annotations": _annotation(statistics, view)}
        for view, *_ in views
    ]  # fmt: skip
    first_start, first_stop = views[0][2], views[0][3]
    for index, trace in enumerate(traces):
        if not first_start <= index < first_stop:
            trace["visible"] = False
    extra: dict = {"height": 520, "annotations": layouts[0]["annotations"]}
    if figure.kind == "box":
        extra["boxmode"] = "group"
    if figure.kind == "bar":
        extra.update(barmode="group", yaxis={"range": [0, 100]})
    if figure.kind == "rank":
        extra["yaxis"] = {"autorange": "reversed"}
        extra["xaxis"] = {"autorange": "reversed"}
    if len(views) > 1:
        buttons = []
        for (_, meta, start, stop), layout in zip(views, layouts, strict=True):
            visible = [start <= i < stop for i in range(len(traces))]
            buttons.append({"label": meta, "method": "update", "args": [{"visible": visible}, layout]})
        extra["updatemenus"] = [{"type": "dropdown", "buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.0,
                                 "yanchor": "bottom", "direction": "down", "showactive": True,
                                 "font": {"size": 11}}]  # fmt: skip
        extra["margin"] = {"t": 50}
    layout = _layout(layouts[0]["xaxis.title.text"], layouts[0]["yaxis.title.text"], **extra)
    caption = f"{comparison.description}. Paper: {comparison.finding}."
    if len(views) > 1:
        caption += f" {len(views)} views ({', '.join(figure.facet)}): choose one in the menu at the top right."
    if comparison.name == "regime_pairs":
        caption += " Architectures of a regime without a plain counterpart are not drawn (uebench compare lists them)."
    return Plot(f"cmp-{comparison.name}", traces, layout, caption)


def comparison_section(comparison: Comparison, rows: pl.DataFrame) -> Section:
    """The section of one comparison: its figure, statistics and where its rows come from."""
    statistics = comparison.statistic(rows) if comparison.statistic is not None and rows.height else None
    intro = _note(
        f"Rows: uebench compare {comparison.name} (the canned query {comparison.query}, "
        f"{rows.height} rows; ours and published: origin)."
    )
    plot = comparison_plot(comparison, rows, statistics)
    if plot is None:
        return Section(comparison.name, comparison.name,
                       intro + _empty(f"no rows for {comparison.name} in this database"))  # fmt: skip
    body = intro + f'<div class="grid single">{plot.html()}</div>'
    if statistics is not None and statistics.height:
        body += _statistics_table(comparison.name, statistics)
    return Section(comparison.name, comparison.name, body)


def comparisons_sections(store: Store) -> list[Section]:
    """A section per entry of :data:`COMPARISONS`, in the registry's order, from the canned queries on ``store``."""
    sections = []
    for comparison in COMPARISONS.values():
        try:
            rows = store.query(canned_query(comparison.query).sql)
        except StoreError as exc:  # a database written before a table or column the query reads
            sections.append(Section(comparison.name, comparison.name, _empty(f"{comparison.query}: {exc}")))
            continue
        sections.append(comparison_section(comparison, rows))
    return sections


def comparisons_index() -> str:
    """The overview's list of the comparisons, each linked to its figure on ``comparisons.html``."""
    items = "".join(
        f'<li><a href="{COMPARISONS_PAGE}#{c.name}">{html.escape(c.name)}</a>: {html.escape(c.description)} '
        f"<span class=\"finding\">({html.escape(c.finding)})</span></li>"
        for c in COMPARISONS.values()
    )
    return (
        _note("The papers' cross-model comparisons, one figure each with its statistics, on a page of their own "
              "(uebench compare NAME prints the same rows and statistics).")
        + f'<ul class="comparisons">{items}</ul>'
    )  # fmt: skip

