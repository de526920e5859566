"""results.report: the report folder, its figures against SQL over the stored tables (the overview, the comparisons
page, the model pages), the CLI, and headless Chromium on a 1,000-model synthetic database with both published tables
(cold load time, width, axis titles, legends, figure data)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from scipy import stats
from synthetic_results import (
    OOD_DATASET,
    PUBLISHED_HSC_COLUMNS,
    add_detectors,
    synthetic_frames,
    write_published_cood_csv,
    write_published_hsc_csv,
    write_synthetic_outputs,
)

from pipelines.cli import main
from results.comparisons import COMPARISONS
from results.reference import detect_format, read_hsc_csv, read_reference_csv, reference_models
from results.report import COMPARISONS_PAGE, MARKER, ReportError, build_report, page_name
from results.sql import canned_query
from results.store import Store, StoreError, database_path, ingest_frames

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
OVERVIEW_SECTIONS = ["population", "groups", "top", "cood", "detectors", "hsc", "comparisons", "index", "provenance"]
MODEL_SECTIONS = ["selective", "curves", "cood", "hsc", "provenance"]
BIG = 1000
PUBLISHED_HSC = 1116  # models in the HSC paper's full table
EXCERPT = Path(os.environ.get("UEBENCH_SHARED", "/work/shared")) / "data" / "hsc_models_comparison_excerpt.csv"


def _sections(document: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', document, flags=re.S))


def _specs(document: str) -> dict[str, dict]:
    """Figure id -> its plotly.js spec, as inlined in the page."""
    found = re.findall(r'<script type="application/json" class="plot-spec" data-target="([^"]+)">(.*?)</script>',
                       document, flags=re.S)  # fmt: skip
    return {anchor: json.loads(text) for anchor, text in found}


def _query(db: Path, sql: str, params: list | None = None) -> pl.DataFrame:
    with Store.open(db, read_only=True, samples=False) as store:
        return store.query(sql, params)


def _sql_main(db: Path) -> pl.DataFrame:
    return _query(
        db,
        "SELECT model_id, accuracy, auroc, aurc, ece15 FROM selective_metrics "
        "WHERE kappa = 'msp' AND NOT temperature_scaled AND subset = 'all' ORDER BY model_id",
    )


def _points(spec: dict, x: str = "x", y: str = "y") -> dict[str, tuple[float, float]]:
    """Model id (a trace's ``text``) -> (x, y) over the marker traces that name models."""
    out = {}
    for trace in spec["data"]:
        if "text" in trace and trace.get("customdata"):
            out.update(zip(trace["text"], zip(trace[x], trace[y], strict=True), strict=True))
    return out


def _check_curve_traces(spec: dict, db: Path, model_id: str) -> int:
    """Every risk-coverage trace equals its selective_curves rows exactly; returns the number of traces."""
    curves = _query(db, "SELECT * FROM selective_curves WHERE model_id = ? ORDER BY kappa, temperature_scaled, "
                        "subset, point", [model_id])  # fmt: skip
    groups = {key: part for key, part in curves.group_by("kappa", "temperature_scaled", "subset")}
    labels = {(False, "all"): "all samples, no TS", (False, "ts_eval"): "TS evaluation split, no TS",
              (True, "ts_eval"): "TS evaluation split, with TS"}  # fmt: skip
    assert len(spec["data"]) == len(groups)
    for (kappa, scaled, subset), part in groups.items():
        trace = next(t for t in spec["data"] if t["name"] == f"{kappa}: {labels[(scaled, subset)]}")
        assert trace["x"] == part["coverage"].to_list() and trace["y"] == part["risk"].to_list()
        assert trace["customdata"] == part["threshold"].to_list()
    return len(groups)


def _check_reliability_traces(spec: dict, db: Path, model_id: str) -> None:
    bins = _query(db, "SELECT * FROM reliability_bins WHERE model_id = ? ORDER BY kappa, temperature_scaled, "
                      "subset, bin", [model_id])  # fmt: skip
    ece = _query(db, "SELECT temperature_scaled, subset, ece15, n FROM selective_metrics WHERE model_id = ? AND "
                     "kappa = 'msp'", [model_id])  # fmt: skip
    bars = [t for t in spec["data"] if t["type"] == "bar"]
    assert len(bars) == ece.height
    for scaled, subset, stored, n in ece.iter_rows():
        part = bins.filter((pl.col("temperature_scaled") == scaled) & (pl.col("subset") == subset))
        bar = next(t for t in bars if f"(ECE {stored:.4f})" in t["name"] and (("with TS" in t["name"]) == scaled)
                   and (("all samples" in t["name"]) == (subset == "all")))  # fmt: skip
        assert bar["y"] == part["accuracy"].to_list()
        assert bar["x"] == ((part["lo"] + part["hi"]) / 2).to_list()
        assert [c[1] for c in bar["customdata"]] == part["count"].to_list()
        # the ECE in the legend is the stored one, and the drawn bins give it back
        filled = [(c[1], c[0], a) for c, a in zip(bar["customdata"], bar["y"], strict=True) if c[1]]
        assert sum(count * abs(conf - acc) for count, conf, acc in filled) / n == pytest.approx(stored, rel=1e-9)


def _view(row: dict, facet: tuple[str, ...]) -> str:
    """The name of the view of a comparison row, as the figure's ``meta`` (``x_metric = accuracy, metric = aurc``)."""
    shown = [f"{c} = {str(row[c]).lower() if isinstance(row[c], bool) else row[c]}" for c in facet]
    return ", ".join(shown) or "all rows"


def _origin(trace: dict) -> str:
    return "published" if "published" in trace["name"] else "ours"


def _check_comparison_points(spec: dict, db: Path, name: str) -> int:
    """The marker traces of a scatter-like comparison figure hold exactly the rows of its canned query that have
    both values, each under its view, origin and model; returns the number of points."""
    figure = COMPARISONS[name].figure
    rows = _query(db, canned_query(COMPARISONS[name].query).sql).filter(
        pl.col(figure.x).is_not_null() & pl.col(figure.y).is_not_null()
    )
    expected = sorted(
        (_view(r, figure.facet), r["origin"], str(r[figure.hover[0]]), float(r[figure.x]), float(r[figure.y]))
        for r in rows.iter_rows(named=True)
    )
    drawn = sorted(
        (t["meta"], _origin(t), text, float(x), float(y))
        for t in spec["data"] if t["name"] != "no change (y = x)"
        for text, x, y in zip(t["text"], t["x"], t["y"], strict=True)
    )  # fmt: skip
    assert drawn == expected
    return len(drawn)


def _check_comparison_boxes(spec: dict, db: Path, name: str) -> None:
    """The boxes of regime_groups / hsc_gain_by_regime are the stored quantiles of the canned query's rows."""
    figure = COMPARISONS[name].figure
    suffix = figure.y.removeprefix("median")
    rows = _query(db, canned_query(COMPARISONS[name].query).sql).filter(pl.col(figure.y).is_not_null())
    columns = ("q25", "median", "q75", "min", "max", "mean")
    expected = sorted(
        (_view(r, figure.facet), r["origin"], str(r[figure.x]), *(r[f"{c}{suffix}"] for c in columns))
        for r in rows.iter_rows(named=True)
    )
    keys = ("q1", "median", "q3", "lowerfence", "upperfence", "mean")
    drawn = sorted(
        (t["meta"], _origin(t), *values)
        for t in spec["data"]
        for values in zip(t["x"], *(t[k] for k in keys), strict=True)
    )
    assert drawn == expected and drawn


# -- a small workspace: layout, tables, CLI -----------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    frames = synthetic_frames(n_models=3, seed=5)
    write_synthetic_outputs(root, frames["models"]["model_id"].to_list(), n_samples=300, num_classes=8)
    write_synthetic_outputs(root, frames["models"]["model_id"].to_list(), n_samples=100, num_classes=8, seed=9,
                            dataset=OOD_DATASET)  # fmt: skip
    ingest_frames(database_path(root), frames)
    return root


@pytest.fixture(scope="module")
def small_report(small: Path) -> Path:
    return build_report(small)


def test_the_cartesian_bundle_is_the_unmodified_npm_file_and_webgl_pages_get_the_full_one() -> None:
    import hashlib

    from results.report import _CARTESIAN_SOURCE, CARTESIAN_JS, CARTESIAN_VERSION, FULL_JS, plotly_bundle
    from results.report_parts import SCATTERGL_ABOVE, Plot, Section, _scatter_kind

    data = _CARTESIAN_SOURCE.read_bytes()
    # SHA-256 of package/plotly-cartesian.min.js in plotly.js-cartesian-dist-min-4.1.1.tgz (results/assets/README.md)
    assert hashlib.sha256(data).hexdigest() == "79542150855a52c567260e3137095dbe2b744e6d702a5cabe67da246942fba7a"
    assert f"plotly.js (cartesian - minified) v{CARTESIAN_VERSION}\n".encode() in data[:200]
    assert (_CARTESIAN_SOURCE.parent / "plotly.js-LICENSE").read_text().startswith("MIT License")

    def page(points: int) -> list[Section]:
        spec = Plot("p", [{"type": _scatter_kind(points), "x": [0.5] * points, "y": [0.5] * points}], {})
        return [Section("a", "A", "<p>table</p>"), Section("b", "B", spec.html())]

    assert plotly_bundle(page(SCATTERGL_ABOVE)) == CARTESIAN_JS
    assert plotly_bundle(page(SCATTERGL_ABOVE + 1)) == FULL_JS
    assert plotly_bundle([Section("t", "T", "<p>scattergl in a sentence is not a trace</p>")]) == CARTESIAN_JS


def test_report_folder_layout(small: Path, small_report: Path) -> None:
    folder = small / "reports" / "report"
    assert small_report == folder / "index.html"
    ids = _query(database_path(small), "SELECT model_id FROM models ORDER BY model_id")["model_id"].to_list()
    assert sorted(p.name for p in (folder / "models").iterdir()) == sorted(page_name(m) for m in ids)
    assets = ["plotly-cartesian.min.js", "plotly.min.js", "report.css", "report.js"]
    assert sorted(p.name for p in (folder / "assets").iterdir()) == assets
    assert (folder / "assets" / "plotly.min.js").stat().st_size > 1_000_000  # the library, once
    overview = small_report.read_text()
    assert list(_sections(overview)) == OVERVIEW_SECTIONS
    # no WebGL trace at this size: every page loads the small bundle
    assert 'src="assets/plotly-cartesian.min.js"' in overview and "Plotly.newPlot" not in overview
    comparisons = (folder / COMPARISONS_PAGE).read_text()
    assert list(_sections(comparisons)) == list(COMPARISONS)
    for name, body in _sections(comparisons).items():
        assert f'href="{COMPARISONS_PAGE}#{name}"' in _sections(overview)["comparisons"]
        assert (f'data-target="cmp-{name}"' in body) != ('class="empty"' in body), name
    drawn = set(_specs(comparisons))
    assert {"cmp-metric_vs_accuracy", "cmp-regime_groups", "cmp-ts_effect", "cmp-model_percentile",
            "cmp-cood_degradation_by_family", "cmp-hsc_gain_by_regime"} <= drawn  # fmt: skip
    for model_id in ids:
        page = (folder / "models" / page_name(model_id)).read_text()
        assert list(_sections(page)) == MODEL_SECTIONS
        assert 'src="../assets/plotly-cartesian.min.js"' in page and f'href="models/{page_name(model_id)}"' in overview
        assert 'class="empty"' not in page, model_id
        assert set(_specs(page)) == {"risk-coverage", "reliability", "cood-levels", "hrc-01", "hrc-severity"}
    for document in [overview, comparisons, *(p.read_text() for p in (folder / "models").iterdir())]:
        assert not re.search(r'(src|href)="(https?:)?//', document), "the report must not fetch anything"
        assert len(document) < 500_000  # figures and tables, not the library


def test_figures_are_the_stored_values(small: Path, small_report: Path) -> None:
    db = database_path(small)
    specs = _specs(small_report.read_text())
    main_rows = _sql_main(db)
    points = _points(specs["scatter-accuracy-auroc"])
    assert points == {m: (a, u) for m, a, u, _, _ in main_rows.iter_rows()}
    assert _points(specs["scatter-aurc-ece"]) == {m: (r, e) for m, _, _, r, e in main_rows.iter_rows()}
    cood = _query(db, "SELECT c.model_id, s.accuracy, avg(c.ood_auroc) AS mean FROM cood_levels c JOIN "
                      "selective_metrics s USING (model_id) WHERE c.kappa = 'msp' AND s.kappa = 'msp' AND NOT "
                      "s.temperature_scaled AND s.subset = 'all' GROUP BY ALL")  # fmt: skip
    drawn = _points(specs["scatter-accuracy-cood"])
    assert drawn.keys() == set(cood["model_id"])
    for model_id, accuracy, mean in cood.iter_rows():
        assert drawn[model_id][0] == accuracy and drawn[model_id][1] == pytest.approx(mean, rel=1e-12)
    for model_id in main_rows["model_id"]:
        page = _specs((small / "reports" / "report" / "models" / page_name(model_id)).read_text())
        assert _check_curve_traces(page["risk-coverage"], db, model_id) == 6
        _check_reliability_traces(page["reliability"], db, model_id)
        hsc = _query(db, "SELECT rule, coverage, risk, theta FROM hsc_curves WHERE model_id = ? AND risk_type = '01' "
                         "AND NOT temperature_scaled ORDER BY rule, point", [model_id])  # fmt: skip
        assert [t["name"] for t in page["hrc-01"]["data"]] == sorted(hsc["rule"].unique())
        for trace in page["hrc-01"]["data"]:
            part = hsc.filter(pl.col("rule") == trace["name"])
            assert trace["x"] == part["coverage"].to_list() and trace["y"] == part["risk"].to_list()
            assert trace["customdata"] == part["theta"].to_list()


def test_comparison_figures_are_the_query_rows_and_statistics(small: Path, small_report: Path) -> None:
    db = database_path(small)
    specs = _specs((small_report.parent / COMPARISONS_PAGE).read_text())
    assert _check_comparison_points(specs["cmp-metric_vs_accuracy"], db, "metric_vs_accuracy") > 0
    assert _check_comparison_points(specs["cmp-ts_effect"], db, "ts_effect") > 0
    _check_comparison_boxes(specs["cmp-regime_groups"], db, "regime_groups")
    _check_comparison_boxes(specs["cmp-hsc_gain_by_regime"], db, "hsc_gain_by_regime")
    # one view at a time: the menu has a button per view that shows exactly that view's traces, the first shown first
    spec = specs["cmp-metric_vs_accuracy"]
    views = list(dict.fromkeys(t["meta"] for t in spec["data"]))
    buttons = spec["layout"]["updatemenus"][0]["buttons"]
    assert [b["label"] for b in buttons] == views and len(views) == 7
    for button in buttons:
        assert button["args"][0]["visible"] == [t["meta"] == button["label"] for t in spec["data"]]
        metric = button["label"].split("metric = ")[-1]
        assert button["args"][1]["yaxis.title.text"] == metric
    assert [t.get("visible", True) for t in spec["data"]] == buttons[0]["args"][0]["visible"]
    # the annotation of each view: Spearman's rho of its rows per origin, by scipy
    rows = _query(db, canned_query("metric_vs_accuracy").sql)
    for button in buttons:
        text = button["args"][1]["annotations"][0]["text"]
        for origin in ("ours", "published"):
            part = rows.filter(
                (pl.col("origin") == origin)
                & (pl.format("x_metric = {}, metric = {}", "x_metric", "metric") == button["label"])
            )
            if part.height >= 3:
                rho = stats.spearmanr(part["x_value"], part["value"]).statistic
                assert f"{origin} (n = {part.height}): ρ {rho:.3f}" in text, (button["label"], text)
    # model_percentile: the bars of each origin are the percentiles of its best CLIP model (here: no CLIP model, so
    # the best by mean C-OOD AUROC)
    percentiles = _query(db, canned_query("model_percentile").sql)
    bars = specs["cmp-model_percentile"]["data"]
    assert {_origin(t) for t in bars} == {"ours", "published"}
    for bar in bars:
        own = percentiles.filter(pl.col("origin") == _origin(bar))
        best = own.filter(pl.col("metric") == "cood_mean_auroc").sort("value", descending=True)["model"][0]
        assert bar["name"].startswith(f"{best} (") and "highest mean C-OOD AUROC" in bar["name"]
        chosen = own.filter(pl.col("model") == best)
        assert bar["x"] == chosen["metric"].to_list() and bar["y"] == chosen["percentile"].to_list()


def test_published_hsc_table_in_the_report(small: Path, small_report: Path) -> None:
    db = database_path(small)
    joined = _query(db, canned_query("hsc_vs_reference").sql)
    assert joined.height == 3 * 16  # the three synthetic models with a published row: 4 rules x TS x 2 risks
    spec = _specs(small_report.read_text())["hsc-vs-published"]
    drawn = sorted(
        (text.split(" ~ ")[0], x, y) for t in spec["data"] if t["name"] != "equal"
        for text, x, y in zip(t["text"], t["x"], t["y"], strict=True)
    )  # fmt: skip
    assert drawn == sorted(joined.select("model_id", "reference_haurc", "haurc").iter_rows())
    model_id = joined["model_id"][0]
    page = _sections((small_report.parent / "models" / page_name(model_id)).read_text())["hsc"]
    assert "reference_haurc" in page and joined["reference_model"][0] in page
    for value in joined.filter(pl.col("model_id") == model_id)["reference_haurc"]:
        assert f'data-v="{value!r}"' in page


def test_published_hsc_fixture_is_the_published_format(tmp_path: Path) -> None:
    path = write_published_hsc_csv(tmp_path / "hsc.csv", 12)
    header = path.read_text().splitlines()[0].split(",")
    assert header == list(PUBLISHED_HSC_COLUMNS) and detect_format(path) == "hsc"
    if EXCERPT.is_file():  # the published excerpt (docs: /work/shared/data/README.md)
        assert EXCERPT.read_text().splitlines()[0].strip().split(",") == header
    rows = read_hsc_csv(path)  # the import path of uebench import-reference
    assert rows["model_name"].n_unique() == 12 and rows.height == 12 * (len(header) - 1)

    def value(name: str, column: str) -> float | None:
        return rows.filter((pl.col("model_name") == name) & (pl.col("column_name") == column))["value"][0]

    for name in rows["model_name"].unique():
        selective, climbing = value(name, "hAURC_selective_01"), value(name, "hAURC_climbing_01")
        gain = value(name, "Gain_climbing_01")
        if "clip" in name:
            assert gain is None  # NaN as published
        else:
            assert gain == pytest.approx(100 * (selective - climbing) / selective, rel=1e-12)
    assert 0.55 <= value("resnet50.a1_in1k", "Accuracy") <= 0.9  # percent in the file, a fraction stored


def test_degradation_band_is_the_quantiles_of_the_stored_levels(small: Path, small_report: Path) -> None:
    db = database_path(small)
    spec = _specs(small_report.read_text())["cood-degradation"]
    levels = _query(db, "SELECT kappa, level, ood_auroc FROM cood_levels")
    for trace in spec["data"]:
        match = re.fullmatch(r"(\w+), (ours|published): (median|25–75 % of models|25 %)", trace["name"])
        assert match, trace["name"]
        kappa, source, what = match.groups()
        table = levels if source == "ours" else _query(db, "SELECT kappa, level, ood_auroc FROM reference_cood_levels")
        q = {"median": 50, "25–75 % of models": 75, "25 %": 25}[what]
        for level, value in zip(trace["x"], trace["y"], strict=True):
            values = table.filter((pl.col("kappa") == kappa) & (pl.col("level") == level))["ood_auroc"].to_numpy()
            assert value == pytest.approx(np.percentile(values, q), rel=1e-12)


def test_report_on_an_empty_database_says_so(tmp_path: Path) -> None:
    ingest_frames(database_path(tmp_path), {})
    index = build_report(tmp_path, tmp_path / "empty")
    sections = _sections(index.read_text())
    assert list(sections) == [s for s in OVERVIEW_SECTIONS if s != "detectors"]  # no κ to compare
    for anchor in ("population", "groups", "cood", "hsc", "index"):
        assert 'class="empty"' in sections[anchor], anchor
    assert "no HSC results and no published HSC table in this database" in sections["hsc"]
    comparisons = _sections((tmp_path / "empty" / COMPARISONS_PAGE).read_text())
    assert list(comparisons) == list(COMPARISONS)
    assert all(f"no rows for {name} in this database" in body for name, body in comparisons.items())
    assert not list((tmp_path / "empty" / "models").iterdir())


def test_report_of_an_older_database_without_the_stored_curves(tmp_path: Path) -> None:
    frames = synthetic_frames(n_models=2, seed=2)
    ingest_frames(database_path(tmp_path), frames)
    with duckdb.connect(str(database_path(tmp_path))) as con:
        con.execute("DROP TABLE selective_curves")
        con.execute("DROP TABLE reliability_bins")
    index = build_report(database_path(tmp_path))
    model = frames["models"]["model_id"][0]
    page = (index.parent / "models" / page_name(model)).read_text()
    assert "no stored curves or calibration bins for this model" in _sections(page)["curves"]
    assert set(_specs(page)) == {"cood-levels", "hrc-01", "hrc-severity"}


def test_report_replaces_its_own_folder_and_nothing_else(small: Path, tmp_path: Path) -> None:
    target = tmp_path / "r"
    build_report(small, target)
    (target / "models" / "stale.html").write_text("old")
    build_report(small, target)
    assert not (target / "models" / "stale.html").exists() and (target / MARKER).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(ReportError, match="not a uebench report folder"):
        build_report(small, other)
    assert (other / "notes.txt").read_text() == "keep"
    with pytest.raises(ReportError, match="is a file"):
        build_report(small, other / "notes.txt")
    with pytest.raises(ReportError, match="top_k"):
        build_report(small, target, top_k=0)


def test_report_command_and_errors(small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "sub" / "r"
    assert main(["report", "-w", str(small), "-o", str(target), "--top-k", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(target / "index.html")
    top = _sections((target / "index.html").read_text())["top"]
    assert top.count("<table") == 4 and all(t.count("<tr>") == 3 for t in top.split("<table")[1:])  # head + 2
    assert main(["report", "-w", str(small), "-o", str(target), "--max-models", "1"]) == 0  # the old name
    top = _sections((target / "index.html").read_text())["top"]
    assert all(t.count("<tr>") == 2 for t in top.split("<table")[1:])
    capsys.readouterr()
    (tmp_path / "file").write_text("x")
    assert main(["report", "-w", str(small), "-o", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the report is a folder") and len(err.strip().splitlines()) == 1
    assert main(["report", "-w", str(small), "--top-k", "0"]) == 2
    assert "--top-k must be >= 1" in capsys.readouterr().err
    assert main(["report", "-w", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: workspace not found")
    with pytest.raises(StoreError, match="no results database"):
        build_report(tmp_path)


# -- detectors against MSP ---------------------------------------------------------------------------------------
DETECTOR_KAPPAS = ("det_ash", "det_knn", "det_mahalanobis", "det_vim")  # with msp, neg_entropy, max_logit: 7 κ


@pytest.fixture(scope="module")
def detector_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-model synthetic database with four detector κ (seven κ in all) and its report with --top-k 2."""
    root = tmp_path_factory.mktemp("detectors")
    ingest_frames(database_path(root), add_detectors(synthetic_frames(n_models=6, seed=7), DETECTOR_KAPPAS, seed=7))
    return build_report(root, top_k=2)


def _html_table(body: str, heading: str) -> list[dict[str, object]]:
    """The rows of the first table after ``heading`` in ``body``: numbers from data-v, texts without tags."""
    table = re.search(r"<table.*?</table>", body.split(heading, 1)[1], flags=re.S).group(0)
    head = re.findall(r"<th>(.*?)</th>", table)
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1], flags=re.S):
        cells = [float(v.group(1)) if (v := re.search(r'data-v="([^"]+)"', attributes)) else re.sub(r"<[^>]+>", "", t)
                 for attributes, t in re.findall(r"<td([^>]*)>(.*?)</td>", row)]  # fmt: skip
        rows.append(dict(zip(head, cells, strict=True)))
    return rows


def _paired_gains(db: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """κ -> model -> [(level, κ − msp OOD AUROC)] over the levels both have, by a loop over the stored rows."""
    levels = {(m, k, lv): v for m, k, lv, v in _query(db, "SELECT model_id, kappa, level, ood_auroc FROM cood_levels")
              .iter_rows()}  # fmt: skip
    gains: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for (model, kappa, level), value in sorted(levels.items()):
        base = levels.get((model, "msp", level))
        if kappa != "msp" and value is not None and base is not None:
            gains.setdefault(kappa, {}).setdefault(model, []).append((level, value - base))
    return gains


def test_detectors_section_is_the_paired_gains_and_their_summary(detector_report: Path) -> None:
    db = database_path(detector_report.parent.parent.parent)
    document = detector_report.read_text()
    sections = _sections(document)
    assert list(sections) == OVERVIEW_SECTIONS
    gains = _paired_gains(db)
    kappas = sorted(gains)
    assert kappas == sorted([*DETECTOR_KAPPAS, "max_logit", "neg_entropy"])
    # the figure: per κ the median and quartiles over models of the paired gain at each level
    spec = _specs(document)["detector-gain"]
    names = {t["name"]: t for t in spec["data"]}
    assert set(names) == {"no gain (= msp)"} | {f"{k}: {w}" for k in kappas
                                                 for w in ("median", "25 %", "25–75 % of models")}  # fmt: skip
    for kappa in kappas:
        per_level: dict[int, list[float]] = {}
        for pairs in gains[kappa].values():
            for level, gain in pairs:
                per_level.setdefault(level, []).append(gain)
        for what, q in (("median", 50), ("25 %", 25), ("25–75 % of models", 75)):
            trace = names[f"{kappa}: {what}"]
            assert trace["x"] == sorted(per_level)
            assert trace["y"] == pytest.approx([np.percentile(per_level[lv], q) for lv in trace["x"]], abs=1e-12)
            # seven κ: the detectors drawn at first, the logit κ in the legend only (one group per κ)
            assert trace["visible"] == (True if kappa.startswith("det_") else "legendonly") and trace["legendgroup"]
    degradation = _specs(document)["cood-degradation"]["data"]
    shown = {t["name"].split(",")[0] for t in degradation if t["visible"] is True}
    hidden = {t["name"].split(",")[0] for t in degradation if t["visible"] == "legendonly"}
    assert shown == {"msp", *DETECTOR_KAPPAS} and hidden == {"max_logit", "neg_entropy"}
    # the table: one row per κ, the medians and fractions of the per-model values
    rows = {r["kappa"]: r for r in _html_table(sections["detectors"], "(uebench compare detectors)")}
    assert sorted(rows) == kappas
    assert [r["median_mean_ood_auroc"] for r in rows.values()] == sorted(
        (r["median_mean_ood_auroc"] for r in rows.values()), reverse=True)
    for kappa, row in rows.items():
        models = gains[kappa]
        hardest = [max(pairs)[1] for pairs in models.values()]
        assert row["models"] == len(models)
        assert row["median_hardest_gain"] == pytest.approx(np.median(hardest), abs=1e-12)
        means = [np.mean([gain for _, gain in pairs]) for pairs in models.values()]
        assert row["median_mean_gain"] == pytest.approx(np.median(means), abs=1e-12)
        assert row["beats_msp_hardest"] == pytest.approx(np.mean(np.array(hardest) > 0))
    # the leaderboard per detector κ: the two best models of each by AUROC (no TS, every sample), with a κ column
    board = _html_table(sections["top"], "Selective prediction per detector κ")
    selective = _query(db, "SELECT kappa, model_id, auroc FROM selective_metrics WHERE kappa LIKE 'det%' AND NOT "
                           "temperature_scaled AND subset = 'all'")  # fmt: skip
    expected = [(k, m) for k in DETECTOR_KAPPAS for m in selective.filter(pl.col("kappa") == k)
                .sort("auroc", descending=True)["model_id"][:2]]  # fmt: skip
    assert [(r["kappa"], r["model_id"]) for r in board] == expected
    assert "16 more rows. All rows (and every other κ): uebench sql --query leaderboard_by_kappa" in sections["top"]
    # the comparisons page: each κ against msp at every model's hardest level, one point per (κ, model)
    comparisons = _specs((detector_report.parent / COMPARISONS_PAGE).read_text())
    assert _check_comparison_points(comparisons["cmp-detectors"], db, "detectors") == sum(map(len, gains.values()))
    annotation = comparisons["cmp-detectors"]["layout"]["annotations"][0]["text"]
    assert all(f"ours, {kappa} (" in annotation for kappa in kappas)


def test_detectors_report_in_headless_chromium(detector_report: Path) -> None:
    sync_playwright = _playwright()
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            figures = {f["id"]: f for f in _check_page(page, detector_report.resolve().as_uri())}
            drawn = {t["name"] for t in figures["detector-gain"]["data"]}
            assert {f"{k}: median" for k in (*DETECTOR_KAPPAS, "max_logit", "neg_entropy")} <= drawn
            legend = page.evaluate("""() => Array.from(document.querySelectorAll('#detector-gain g.legend g.traces'))
                                          .map(g => g.textContent)""")  # fmt: skip
            assert "det_knn: median" in legend and "neg_entropy: median" in legend  # legend-only κ are listed
            visible = dict(page.evaluate("() => document.getElementById('detector-gain').data.map(t => [t.name, "
                                         "t.visible === undefined ? true : t.visible])"))  # fmt: skip
            assert visible["det_vim: median"] is True and visible["max_logit: median"] == "legendonly"
            compared = {f["id"]: f for f in _check_page(page, (detector_report.parent / COMPARISONS_PAGE).resolve()
                                                        .as_uri())}  # fmt: skip
            assert {"cmp-detectors", "cmp-detector_levels"} <= set(compared)
            assert {t["name"] for t in compared["cmp-detector_levels"]["data"]} >= {f"{k} (ours)"
                                                                                  for k in DETECTOR_KAPPAS}
        finally:
            browser.close()
    assert not errors, errors


# -- 1,000 models and the published table in headless Chromium -------------------------------------------------
@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A 1,000-model synthetic database with three detector κ, plus both published tables, imported from their CSV
    formats: the C-OOD table (707 names) and the HSC table (1,116 names), with reference_models of every published
    name as uebench import-reference writes them; and its report. Returns (workspace, seconds the report took)."""
    root = tmp_path_factory.mktemp("big")
    frames = add_detectors(synthetic_frames(n_models=BIG, seed=1), seed=1)
    frames["reference_cood_levels"] = read_reference_csv(write_published_cood_csv(root / "published.csv", 707))
    frames["reference_hsc_metrics"] = read_hsc_csv(write_published_hsc_csv(root / "hsc.csv", PUBLISHED_HSC))
    names = [*frames["reference_cood_levels"]["model_name"].unique(maintain_order=True),
             *frames["reference_hsc_metrics"]["model_name"].unique(maintain_order=True)]  # fmt: skip
    frames["reference_models"] = reference_models(names)
    ingest_frames(database_path(root), frames)
    started = time.perf_counter()
    build_report(root)
    return root, time.perf_counter() - started


@pytest.mark.slow
def test_big_report_builds_in_reasonable_time(big: tuple[Path, float]) -> None:
    root, seconds = big
    folder = root / "reports" / "report"
    assert len(list((folder / "models").iterdir())) == BIG
    assert seconds < 120, f"the 1,000-model report took {seconds:.1f} s"
    index = (folder / "index.html").read_text()
    assert len(index) < 3_000_000
    assert len((folder / COMPARISONS_PAGE).read_text()) < 5_000_000
    published = _query(database_path(root), "SELECT (SELECT count(DISTINCT model_name) FROM reference_cood_levels) "
                                             "AS cood, (SELECT count(DISTINCT model_name) FROM reference_hsc_metrics) "
                                             "AS hsc")  # fmt: skip
    assert published.row(0) == (707, PUBLISHED_HSC)


def _playwright():
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip("chromium not installed: make browser (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright not installed: pip install playwright (no browser download needed)")
    return sync_playwright


_FIGURES_JS = """() => Array.from(document.querySelectorAll('.plotly-target')).map(div => {
  const layout = div._fullLayout || {};
  const axes = Object.keys(layout).filter(k => /^[xy]axis\\d*$/.test(k));
  return {
    id: div.id,
    axes: axes.map(k => [k, (layout[k].title && layout[k].title.text) || '']),
    showlegend: layout.showlegend === true,
    legend: div.querySelectorAll('g.legend g.traces').length,
    data: (div.data || []).map(t => ({name: t.name, type: t.type, x: t.x, y: t.y, text: t.text, meta: t.meta,
                                      customdata: t.customdata, q1: t.q1, median: t.median, q3: t.q3,
                                      lowerfence: t.lowerfence, upperfence: t.upperfence, mean: t.mean})),
  };
})"""


def _open(page, url: str) -> float:
    """Load ``url`` and wait until the figures of its first screen are drawn; the milliseconds from navigation start
    to the later of that and the load event."""
    page.goto(url, wait_until="load")
    page.wait_for_function("window.uebenchFirstView !== undefined", timeout=30_000)
    return page.evaluate(
        "() => Math.max(performance.getEntriesByType('navigation')[0].loadEventEnd, window.uebenchFirstView)"
    )


def _cold_load(browser, url: str) -> float:
    """:func:`_open` of ``url`` in a fresh browser context: nothing of the page cached (its first visit)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        return _open(context.new_page(), url)
    finally:
        context.close()


def _check_page(page, url: str) -> list[dict]:
    """Load ``url``, draw every figure, and check the width, the axis titles and the legends; the figures."""
    page.goto(url, wait_until="load")
    total = page.evaluate("window.uebenchRenderAll()")
    page.wait_for_function("window.uebenchRendered !== undefined", timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400, url
    figures = page.evaluate(_FIGURES_JS)
    assert figures and int(page.evaluate("document.body.dataset.rendered")) == len(figures) == total
    for figure in figures:
        assert figure["axes"] and all(title.strip() for _, title in figure["axes"]), figure["id"]
        assert figure["showlegend"] and figure["legend"] >= 1, figure["id"]
    return figures


@pytest.mark.slow
def test_big_report_in_headless_chromium(big: tuple[Path, float]) -> None:
    sync_playwright = _playwright()
    root, _ = big
    db = database_path(root)
    folder = root / "reports" / "report"
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            url = (folder / "index.html").resolve().as_uri()
            # The first visit (a fresh browser context, nothing cached; the better of two when the first is slow, as
            # a busy CI machine can make one) and a later one (plotly.js cached): both < 3 s (issue 14).
            load_ms = _cold_load(browser, url)
            if load_ms >= 3000:
                load_ms = min(load_ms, _cold_load(browser, url))
            assert load_ms < 3000, f"the overview took {load_ms:.0f} ms to load and draw its first screen"
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            try:
                warm = context.new_page()
                _open(warm, url)
                warm_ms = _open(warm, url)
            finally:
                context.close()
            assert warm_ms < 3000, f"the overview took {warm_ms:.0f} ms on a later visit"
            compare_url = (folder / COMPARISONS_PAGE).resolve().as_uri()
            compare_ms = _cold_load(browser, compare_url)
            print(f"first visit: overview {load_ms:.0f} ms (later visit {warm_ms:.0f} ms), "
                  f"comparisons {compare_ms:.0f} ms to the first screen")
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            figures = {f["id"]: f for f in _check_page(page, url)}
            # the scatter in the browser holds the SQL values of every model
            rows = _sql_main(db)
            drawn = _points({"data": figures["scatter-accuracy-auroc"]["data"]})
            assert len(drawn) == BIG and drawn == {m: (a, u) for m, a, u, _, _ in rows.iter_rows()}
            assert {t["type"] for t in figures["scatter-accuracy-auroc"]["data"]} <= {"scattergl", "scatter"}
            # the population band and the published one in the browser are the quantiles of the stored levels
            band = figures["cood-degradation"]["data"]
            names = {t["name"] for t in band}
            assert {"msp, ours: median", "msp, published: median", "neg_entropy, published: median"} <= names
            levels = _query(db, "SELECT level, ood_auroc FROM cood_levels WHERE kappa = 'msp'")
            median = next(t for t in band if t["name"] == "msp, ours: median")
            for level, value in zip(median["x"], median["y"], strict=True):
                values = levels.filter(pl.col("level") == level)["ood_auroc"].to_numpy()
                assert value == pytest.approx(np.median(values), rel=1e-12)
            # the detectors against MSP: a line and band per κ, and the detector leaderboard bounded by --top-k
            gain = {t["name"] for t in figures["detector-gain"]["data"]}
            assert {f"{k}: median" for k in ("det_knn", "det_mahalanobis", "det_vim", "neg_entropy")} <= gain
            top = _sections((folder / "index.html").read_text())["top"]
            assert len(_html_table(top, "Selective prediction per detector κ")) == 3 * 20
            # the published HSC population beside ours in the gain view, and our hAURC against the published one
            gains = _query(db, "SELECT model_name, rule, temperature_scaled, value FROM reference_hsc_metrics "
                               "WHERE metric = 'Gain' AND risk_type = '01' AND value IS NOT NULL")  # fmt: skip
            drawn = sorted(
                (t["name"].startswith("with TS"), text, x, y) for t in figures["hsc-gain"]["data"]
                if "published" in t["name"] for text, x, y in zip(t["text"], t["x"], t["y"], strict=True)
            )  # fmt: skip
            assert drawn == sorted((scaled, m, rule, v) for m, rule, scaled, v in gains.iter_rows())
            assert len(drawn) > 2 * PUBLISHED_HSC  # 3 rules x TS over the non-CLIP rows
            joined = _query(db, canned_query("hsc_vs_reference").sql)
            drawn = sorted(
                (text.split(" ~ ")[0], x, y) for t in figures["hsc-vs-published"]["data"] if t["name"] != "equal"
                for text, x, y in zip(t["text"], t["x"], t["y"], strict=True)
            )  # fmt: skip
            assert drawn == sorted(joined.select("model_id", "reference_haurc", "haurc").iter_rows()) and drawn
            # the comparisons page: every comparison drawn, from its query's rows, ours and published
            compared = {f["id"]: f for f in _check_page(page, compare_url)}
            assert set(compared) == {f"cmp-{name}" for name in COMPARISONS}
            points = _check_comparison_points(compared["cmp-metric_vs_accuracy"], db, "metric_vs_accuracy")
            assert points > 7 * BIG
            assert _check_comparison_points(compared["cmp-regime_pairs"], db, "regime_pairs") > 0
            assert {_origin(t) for t in compared["cmp-regime_pairs"]["data"]} == {"ours", "published"}
            _check_comparison_boxes(compared["cmp-hsc_gain_by_regime"], db, "hsc_gain_by_regime")
            # drill-down pages: width, axes, legends, and the stored points
            for model_id in (rows["model_id"][0], rows["model_id"][BIG // 2], rows["model_id"][-1]):
                page_url = (folder / "models" / page_name(model_id)).resolve().as_uri()
                model_figures = {f["id"]: f for f in _check_page(page, page_url)}
                assert set(model_figures) == {"risk-coverage", "reliability", "cood-levels", "hrc-01", "hrc-severity"}
                _check_curve_traces(model_figures["risk-coverage"], db, model_id)
                _check_reliability_traces(model_figures["reliability"], db, model_id)
        finally:
            browser.close()
    assert not errors, errors
    outside = [u for u in requests if not u.startswith(("file://", "data:"))]
    assert not outside, f"requests outside file://: {outside[:5]}"
    # the overview loads the cartesian bundle; the comparisons page, with a WebGL scatter at this size, the full one
    assert any(u.endswith("/assets/plotly-cartesian.min.js") for u in requests)
    assert any(u.endswith("/assets/plotly.min.js") for u in requests)
