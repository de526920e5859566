"""Benchmark the results store: ingesting many models' metric rows and querying leaderboards over them.

Targets (issue 7): ingesting 500 synthetic models' metric rows (selective_metrics 6 rows/model, cood_levels
11 levels × 3 κ, hsc_rules 16 rows/model) < 5 s; a leaderboard query over them < 100 ms.

Baselines: per-row ``executemany`` INSERTs (the naive way to fill DuckDB; measured on a small N because it is
~1000× slower) and the same leaderboard computed in memory with polars.

Usage: python benchmarks/bench_results.py [--quick]   (prints a Markdown table)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl
from timing import median_time, print_table  # benchmarks/timing.py (the script folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic results fixture

from synthetic_results import synthetic_frames  # tests/synthetic_results.py (a test fixture, not installed)

from results.schema import TABLES
from results.sql import canned_query, run_query
from results.store import Store, ingest_frames

METRIC_TABLES = ("models", "selective_metrics", "cood_levels", "hsc_rules")


def _executemany(frames: dict[str, pl.DataFrame], folder: Path) -> None:
    con = duckdb.connect(str(folder / f"naive-{time.perf_counter_ns()}.duckdb"))
    for table, frame in frames.items():
        con.execute(TABLES[table])
        placeholders = ", ".join("?" * len(frame.columns))
        con.executemany(f"INSERT INTO {table} ({', '.join(frame.columns)}) VALUES ({placeholders})", frame.rows())
    con.close()


def _fresh_ingest(frames: dict[str, pl.DataFrame], folder: Path) -> float:
    db = folder / f"{time.perf_counter_ns()}.duckdb"
    start = time.perf_counter()
    ingest_frames(db, frames)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer models and repeats (smoke test)")
    args = parser.parse_args()
    n_models = 100 if args.quick else 500
    n_baseline = 5 if args.quick else 10
    repeats = 3 if args.quick else 5

    everything = synthetic_frames(n_models=n_models, seed=0)
    metrics = {t: everything[t] for t in METRIC_TABLES}
    small = {t: f for t, f in synthetic_frames(n_models=n_baseline, seed=0).items() if t in METRIC_TABLES}
    metric_rows = sum(f.height for f in metrics.values())
    all_rows = sum(f.height for f in everything.values())
    rows: list[tuple[str, str, float, float | None, str]] = []

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ours_small = statistics.median(_fresh_ingest(small, folder) for _ in range(repeats))
        base_small = median_time(lambda: _executemany(small, folder), 1)
        small_rows = sum(f.height for f in small.values())
        rows.append(
            (
                "ingest metric rows, new database",
                f"{n_baseline} models ({small_rows} rows)",
                ours_small,
                base_small,
                "—",
            )
        )
        ours = statistics.median(_fresh_ingest(metrics, folder) for _ in range(repeats))
        rows.append(
            (
                "ingest metric rows, new database",
                f"{n_models} models ({metric_rows} rows)",
                ours,
                None,
                "< 5 s" if n_models == 500 else "—",
            )
        )
        db = folder / "all.duckdb"
        ours_all = _fresh_ingest(everything, folder)
        rows.append(
            (
                "ingest all tables incl. curves, new database",
                f"{n_models} models ({all_rows} rows)",
                ours_all,
                None,
                "—",
            )
        )
        ingest_frames(db, everything)
        again = median_time(lambda: ingest_frames(db, everything), repeats)
        rows.append(("re-ingest all tables (replace by key)", f"{n_models} models ({all_rows} rows)", again, None, "—"))

        sql = canned_query("leaderboard_auroc").sql
        sel = everything["selective_metrics"]

        def polars_board() -> pl.DataFrame:
            return sel.filter(
                (pl.col("kappa") == "msp") & ~pl.col("temperature_scaled") & (pl.col("subset") == "all")
            ).sort("auroc", descending=True)

        with Store.open(db, read_only=True) as store:
            assert store.query(sql).height == n_models
            query = median_time(lambda: store.query(sql), 20)
            cood_sql = canned_query("cood_mean_auroc").sql
            cood = median_time(lambda: store.query(cood_sql), 20)
        board = median_time(polars_board, 20)
        rows.append(("leaderboard_auroc query (open connection)", f"{n_models} models", query, board, "< 0.1 s"))
        rows.append(("cood_mean_auroc query (open connection)", f"{n_models * 33} level rows", cood, None, "—"))
        cli_like = median_time(lambda: run_query(db, sql), repeats)
        rows.append(("leaderboard_auroc incl. read-only open (uebench sql)", f"{n_models} models", cli_like, None, "—"))

    print_table(rows)
    print()
    print(
        "ratio = baseline / ours (> 1: ours faster). Baselines: ingest = create the tables and per-row "
        "executemany INSERT into a new DuckDB file; leaderboard = polars filter + sort of the in-memory frame."
    )


if __name__ == "__main__":
    main()
