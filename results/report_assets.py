"""The static parts of the HTML report (results.report): its style sheet and script, written once per report into
``assets/`` beside ``plotly.min.js``, and its default size (light: the CLI reads it without loading polars).

The script draws each figure from the JSON spec that follows its ``<div>`` (``<script type="application/json"
class="plot-spec" data-target=ID>``) with ``Plotly.newPlot`` when the figure comes within 200 px of the viewport
(IntersectionObserver; everything at once in a browser without it), so a page with many figures shows its first
screen without drawing the rest. A click on a point that carries a page address in ``customdata`` opens that page;
WebGL traces fall back to SVG where the browser has no WebGL (checked only when a figure has one). Tables with
``class="sortable"`` sort on a click on their header (numbers by the cell's ``data-v``), and an ``<input
data-filter=TABLE_ID>`` hides the rows of that table that do not contain its text.

For tests and measurements: ``window.uebenchFirstView`` holds ``performance.now()`` once the figures of the first
screen are drawn; ``window.uebenchRenderAll()`` draws every figure and resolves to their number;
``window.uebenchRendered`` is set when every figure is drawn; ``<body data-figures>`` and ``<body data-rendered>``
count the figures and those drawn. Plain JavaScript, no other library, nothing fetched.
"""

from __future__ import annotations

DEFAULT_TOP_K = 20  # rows in each top-k table of the overview (uebench report --top-k)

CSS = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0; color: #1d1d1f;
       background: #fafafa; }
header { background: #1f3b57; color: #fff; padding: .8em 1.5em; }
header h1 { margin: 0; font-size: 1.5em; overflow-wrap: anywhere; }
header p { margin: .3em 0 0; font-size: 13px; color: #d6e2ee; overflow-wrap: anywhere; }
header a { color: #fff; }
nav { background: #eef2f6; padding: .4em 1.5em; font-size: 13px; border-bottom: 1px solid #d5dde6; }
nav a { margin-right: 1.1em; color: #1f3b57; white-space: nowrap; }
main { max-width: 1340px; margin: 0 auto; padding: 0 1.5em 3em; }
section { margin-top: 1.6em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; font-size: 1.25em; }
h3 { font-size: 1.02em; margin: 1.2em 0 .4em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 600px), 1fr)); gap: 1em; }
.grid.single { grid-template-columns: minmax(0, 1fr); }
ul.comparisons { font-size: 14px; padding-left: 1.2em; }
ul.comparisons li { margin: .25em 0; }
ul.comparisons .finding { color: #555; font-size: 13px; }
figure.plot { margin: 0; background: #fff; border: 1px solid #e2e2e2; border-radius: 4px; padding: .3em;
              min-width: 0; }
figure.plot figcaption { font-size: 12px; color: #555; padding: .2em .5em .4em; }
.plotly-target { width: 100%; min-height: 420px; }
.table-wrap { overflow: auto; max-width: 100%; background: #fff; }
.table-wrap.tall { max-height: 560px; }
table { border-collapse: collapse; font-size: 12px; margin: .3em 0 .8em; }
th, td { border: 1px solid #d9d9d9; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-order="asc"]::after { content: " \\25B2"; }
table.sortable th[data-order="desc"]::after { content: " \\25BC"; }
td.text { text-align: left; overflow-wrap: anywhere; }
p.empty { color: #8a4b00; background: #fff6e5; padding: .5em; border-left: 4px solid #e6a23c; }
p.note { color: #555; font-size: 12px; }
input.filter { font-size: 13px; padding: .3em .5em; width: min(100%, 420px); margin: .3em 0; }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; font-size: 13px; }
dl.fields dt { font-weight: 600; }
dl.fields dd { margin: 0; overflow-wrap: anywhere; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px; background: #fff; padding: .5em; }
"""

JS = """
(function () {
  'use strict';
  var webgl = null;
  function hasWebGL() {
    if (webgl === null) {
      try {
        var canvas = document.createElement('canvas');
        webgl = !!(window.WebGLRenderingContext && (canvas.getContext('webgl') ||
                                                    canvas.getContext('experimental-webgl')));
      } catch (e) { webgl = false; }
    }
    return webgl;
  }
  var nodes = Array.prototype.slice.call(document.querySelectorAll('script.plot-spec'));
  var byTarget = {};
  var jobs = {};
  var drawn = 0;
  nodes.forEach(function (node) { byTarget[node.getAttribute('data-target')] = node; });
  document.body.setAttribute('data-figures', String(nodes.length));
  document.body.setAttribute('data-rendered', '0');

  function finished() {
    drawn += 1;
    document.body.setAttribute('data-rendered', String(drawn));
    if (drawn === nodes.length) { window.uebenchRendered = performance.now(); }
  }
  function draw(id) {
    if (jobs[id]) { return jobs[id]; }
    var spec = JSON.parse(byTarget[id].textContent);
    var gl = spec.data.some(function (trace) { return trace.type === 'scattergl'; });
    if (gl && !hasWebGL()) {
      spec.data.forEach(function (trace) { if (trace.type === 'scattergl') { trace.type = 'scatter'; } });
    }
    var config = {responsive: true, displaylogo: false};
    jobs[id] = Plotly.newPlot(document.getElementById(id), spec.data, spec.layout, config).then(function (plot) {
      plot.on('plotly_click', function (event) {
        var point = event.points && event.points[0];
        if (point && typeof point.customdata === 'string' && /\\.html$/.test(point.customdata)) {
          window.location.href = point.customdata;
        }
      });
      finished();
      return plot;
    });
    return jobs[id];
  }
  function firstView(started) {
    Promise.all(started).then(function () { window.uebenchFirstView = performance.now(); });
  }
  // Every figure, drawn now (the others are drawn when they come near the viewport).
  window.uebenchRenderAll = function () {
    return Promise.all(nodes.map(function (node) { return draw(node.getAttribute('data-target')); }))
      .then(function () { return nodes.length; });
  };
  if (nodes.length === 0) {
    window.uebenchFirstView = window.uebenchRendered = performance.now();
  } else if (!('IntersectionObserver' in window)) {
    firstView([window.uebenchRenderAll()]);
  } else {
    var first = true;
    var observer = new IntersectionObserver(function (entries) {
      var started = [];
      entries.forEach(function (entry) {
        if (entry.isIntersecting) {
          observer.unobserve(entry.target);
          started.push(draw(entry.target.id));
        }
      });
      if (first) { first = false; firstView(started); }
    }, {rootMargin: '0px 0px 200px 0px'});
    nodes.forEach(function (node) { observer.observe(document.getElementById(node.getAttribute('data-target'))); });
  }

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ''; }
    var v = cell.getAttribute('data-v');
    return v === null ? cell.textContent : v;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, index) {
      th.addEventListener('click', function () {
        var order = th.getAttribute('data-order') === 'asc' ? 'desc' : 'asc';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('data-order'); });
        th.setAttribute('data-order', order);
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var sign = order === 'asc' ? 1 : -1;
        rows.sort(function (a, b) {
          var x = cellValue(a, index), y = cellValue(b, index);
          var nx = parseFloat(x), ny = parseFloat(y);
          var numeric = x !== '' && y !== '' && !isNaN(nx) && !isNaN(ny);
          if (x === '' && y !== '') { return 1; }
          if (y === '' && x !== '') { return -1; }
          return sign * (numeric ? nx - ny : x.localeCompare(y));
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  document.querySelectorAll('input[data-filter]').forEach(function (input) {
    var table = document.getElementById(input.getAttribute('data-filter'));
    input.addEventListener('input', function () {
      var needle = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        row.style.display = !needle || row.textContent.toLowerCase().indexOf(needle) >= 0 ? '' : 'none';
      });
    });
  });
})();
"""
