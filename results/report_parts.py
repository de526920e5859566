"""Building blocks of the HTML report's pages (results.report, results.report_comparisons): a Plotly figure
(:class:`Plot`, drawn by the report's script from its JSON spec), a page section, plotly.js layouts with titled
axes and a legend, stored values as JSON, and sortable HTML tables. No database access, no page logic.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import polars as pl

SCATTERGL_ABOVE = 2000  # points in one figure above which scatter traces use WebGL (below, SVG draws faster than
# a WebGL context starts, notably in software rendering; a page also has few WebGL contexts)
COMPARISONS_PAGE = "comparisons.html"  # the papers' comparisons (results.report_comparisons), beside index.html
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_FIGURE_HEIGHT = 440


# -- page pieces --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plot:
    """One Plotly figure: the id of its element, its plotly.js traces and layout, and a caption."""

    anchor: str
    data: list[dict]
    layout: dict
    caption: str = ""

    def html(self) -> str:
        spec = _json({"data": self.data, "layout": self.layout})
        caption = f"<figcaption>{html.escape(self.caption)}</figcaption>" if self.caption else ""
        return (
            f'<figure class="plot"><div class="plotly-target" id="{self.anchor}"></div>{caption}'
            f'<script type="application/json" class="plot-spec" data-target="{self.anchor}">{spec}</script></figure>'
        )


@dataclass(frozen=True)
class Section:
    """One page section: an anchor id, a title and its HTML body."""

    anchor: str
    title: str
    body: str


def _json(value: object) -> str:
    """Compact JSON safe inside ``<script>`` (``<`` escaped); NaN/±inf must already be None."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def _values(series: pl.Series) -> list:
    """A column as a JSON-ready list: floats exactly as stored, NaN and ±inf as None."""
    if series.dtype.is_float():
        series = pl.select(pl.when(series.is_finite()).then(series)).to_series()
    return series.to_list()


def _layout(x_title: str, y_title: str, title: str = "", **extra: object) -> dict:
    """A plotly.js layout with titled axes and a legend under the plot (always shown, even for one trace)."""
    layout: dict = {
        "title": {"text": title, "font": {"size": 14}},
        "xaxis": {"title": {"text": x_title}, "automargin": True, "zeroline": False},
        "yaxis": {"title": {"text": y_title}, "automargin": True, "zeroline": False},
        "showlegend": True,
        "legend": {"orientation": "h", "y": -0.22, "yanchor": "top", "font": {"size": 11}},
        "height": _FIGURE_HEIGHT,
        "margin": {"l": 60, "r": 20, "t": 40 if title else 20, "b": 40},
        "hovermode": "closest",
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


def _empty(message: str) -> str:
    return f'<p class="empty">{html.escape(message)}</p>'


def _note(message: str) -> str:
    return f'<p class="note">{html.escape(message)}</p>'


def _grid(plots: Iterable[Plot]) -> str:
    return '<div class="grid">' + "".join(plot.html() for plot in plots) + "</div>"


def _cell(value: object) -> tuple[str, str | None, bool]:
    """(shown text, sort value or None, is text) of one table value."""
    if value is None:
        return "", None, False
    if isinstance(value, bool):
        return str(value).lower(), None, False
    if isinstance(value, float):
        if not math.isfinite(value):
            return "", None, False
        shown = f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e6 else f"{value:.4g}"
        return shown, repr(value), False
    if isinstance(value, int):
        return str(value), str(value), False
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S"), None, True
    return html.escape(str(value)), None, True


def html_table(
    frame: pl.DataFrame,
    *,
    link: Callable[[str], str | None] | None = None,
    max_rows: int | None = None,
    table_id: str | None = None,
    tall: bool = False,
    more_hint: str = "",
) -> str:
    """``frame`` as a sortable HTML table (first ``max_rows`` rows, with a note on how many were left out).

    Numbers show 4 decimals and sort by their full value (``data-v``); ``link`` maps a ``model_id`` cell to the
    address of its page (or None for no link).
    """
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    shown = frame if max_rows is None else frame.head(max_rows)
    link_column = frame.columns.index("model_id") if link is not None and "model_id" in frame.columns else -1
    rows = []
    for row in shown.iter_rows():
        cells = []
        for index, value in enumerate(row):
            text, sort_value, is_text = _cell(value)
            if index == link_column and value is not None and (href := link(str(value))):
                text = f'<a href="{html.escape(href)}">{text}</a>'
            attributes = (' class="text"' if is_text else "") + (f' data-v="{sort_value}"' if sort_value else "")
            cells.append(f"<td{attributes}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    identifier = f' id="{table_id}"' if table_id else ""
    table = f'<table class="sortable"{identifier}><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    note = ""
    if max_rows is not None and frame.height > max_rows:
        note = _note(f"{frame.height - max_rows} more rows. {more_hint}")
    return f'<div class="table-wrap{" tall" if tall else ""}">{table}</div>{note}'


GL_TRACE = "scattergl"  # the only WebGL trace type the report draws (it needs the full plotly.js bundle)


def _scatter_kind(points: int) -> str:
    return GL_TRACE if points > SCATTERGL_ABOVE else "scatter"


