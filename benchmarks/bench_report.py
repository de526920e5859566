"""Benchmark the HTML report's first visit at 1,000 models: the overview with the plotly.js bundle it ships (the
cartesian build, 1.5 MB) against the same page with the full plotly.js of the ``plotly`` package (4.8 MB).

Target (issue 14): the overview of a 1,000-model report shows its first screen in < 3 s on a first visit.

What is measured: in headless Chromium (``/usr/bin/chromium``, driven by playwright), each visit opens the page in a
fresh browser context (nothing cached) and takes the milliseconds from navigation start to the later of the load
event and the moment the figures of the first screen are drawn (``window.uebenchFirstView``, set by the report's
script), as tests/test_results_report.py does. The two pages alternate visit by visit, so a drift in the machine's
speed hits both; medians and the per-pair ratio are printed. The database is tests/synthetic_results.py's
1,000-model one with both published tables (the same as the report test's).

Usage: python benchmarks/bench_report.py [--visits N] [--workdir DIR]   (prints a Markdown table)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic results fixture

from synthetic_results import synthetic_frames, write_published_cood_csv, write_published_hsc_csv

from results.reference import read_hsc_csv, read_reference_csv, reference_models
from results.report import CARTESIAN_JS, FULL_JS, build_report
from results.store import database_path, ingest_frames

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
N_MODELS, PUBLISHED_COOD, PUBLISHED_HSC = 1000, 707, 1116


def build(workspace: Path) -> tuple[Path, float]:
    """The synthetic 1,000-model database and its report in ``workspace``; (index.html, build seconds)."""
    frames = synthetic_frames(n_models=N_MODELS, seed=1)
    cood_csv = write_published_cood_csv(workspace / "cood.csv", PUBLISHED_COOD)
    frames["reference_cood_levels"] = read_reference_csv(cood_csv)
    frames["reference_hsc_metrics"] = read_hsc_csv(write_published_hsc_csv(workspace / "hsc.csv", PUBLISHED_HSC))
    names = [*frames["reference_cood_levels"]["model_name"].unique(maintain_order=True),
             *frames["reference_hsc_metrics"]["model_name"].unique(maintain_order=True)]  # fmt: skip
    frames["reference_models"] = reference_models(names)
    ingest_frames(database_path(workspace), frames)
    started = time.perf_counter()
    index = build_report(workspace)
    return index, time.perf_counter() - started


def with_full_bundle(index: Path) -> Path:
    """A copy of the overview beside it that loads the full plotly.js instead of the cartesian bundle."""
    html = index.read_text(encoding="utf-8")
    if f'src="assets/{CARTESIAN_JS}"' not in html:
        raise SystemExit(f"{index} does not load {CARTESIAN_JS}: nothing to compare")
    full = index.with_name("index-full-plotly.html")
    full.write_text(html.replace(f'src="assets/{CARTESIAN_JS}"', f'src="assets/{FULL_JS}"'), encoding="utf-8")
    return full


def first_visit_ms(browser, url: str) -> tuple[float, float]:
    """(DOMContentLoaded, first screen drawn) in ms from navigation start, in a fresh browser context."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(url, wait_until="load")
        page.wait_for_function("window.uebenchFirstView !== undefined", timeout=60_000)
        return tuple(page.evaluate(
            "() => { const n = performance.getEntriesByType('navigation')[0];"
            " return [n.domContentLoadedEventEnd, Math.max(n.loadEventEnd, window.uebenchFirstView)]; }"
        ))  # fmt: skip
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=9, help="first visits of each page (default 9)")
    parser.add_argument("--workdir", type=Path, help="where to build the report (default: a temporary folder)")
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("playwright is not installed: pip install playwright") from None
    if shutil.which(CHROMIUM) is None:
        raise SystemExit(f"{CHROMIUM} not found: make browser (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as scratch:
        workspace = args.workdir or Path(scratch)
        workspace.mkdir(parents=True, exist_ok=True)
        print(f"building the {N_MODELS}-model report in {workspace} ...", file=sys.stderr, flush=True)
        index, seconds = build(workspace)
        pages = {CARTESIAN_JS: index, FULL_JS: with_full_bundle(index)}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in pages}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                for page in pages.values():  # one warm-up visit each: the OS file cache, Chromium's start
                    first_visit_ms(browser, page.resolve().as_uri())
                for visit in range(args.visits):
                    for name, page in pages.items():
                        times[name].append(first_visit_ms(browser, page.resolve().as_uri()))
                    print(f"visit {visit + 1}/{args.visits}", file=sys.stderr, flush=True)
            finally:
                browser.close()
        overview_mb = index.stat().st_size / 1e6
        bundle_mb = {name: (index.parent / "assets" / name).stat().st_size / 1e6 for name in pages}
    print(f"report of {N_MODELS} models built in {seconds:.1f} s (overview {overview_mb:.1f} MB); {args.visits} first "
          "visits of each page, alternating, after one warm-up visit each")
    print()
    print("| overview loads | size | DOMContentLoaded median (ms) | first screen median [min–max] (ms) | < 3 s |")
    print("|---|---|---|---|---|")
    for name in pages:
        dcl = statistics.median(t[0] for t in times[name])
        first = [t[1] for t in times[name]]
        print(f"| {name} | {bundle_mb[name]:.1f} MB | {dcl:.0f} | {statistics.median(first):.0f} "
              f"[{min(first):.0f}–{max(first):.0f}] | {'yes' if statistics.median(first) < 3000 else 'no'} |")
    ratios = [a[1] / b[1] for a, b in zip(times[CARTESIAN_JS], times[FULL_JS], strict=True)]
    print(f"\nfirst screen, cartesian / full, pair by pair: median {statistics.median(ratios):.2f} "
          f"[{min(ratios):.2f}–{max(ratios):.2f}]")


if __name__ == "__main__":
    main()
