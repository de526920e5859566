"""The Python API (results.connect) and the schema contract's internal consistency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from synthetic_results import synthetic_frames

import results
from results import schema
from results.sql import QueryError
from results.store import StoreError, database_path, ingest_frames


def test_import_results_is_light() -> None:
    code = "import sys, results; print(sorted(m for m in ('duckdb', 'polars', 'plotly') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_primary_keys_match_the_ddl() -> None:
    con = duckdb.connect(":memory:")
    for ddl in schema.TABLES.values():
        con.execute(ddl)
    rows = con.execute(
        "SELECT table_name, constraint_column_names FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    assert {table: tuple(columns) for table, columns in rows} == schema.PRIMARY_KEYS


def test_connect_table_query_and_canned(tmp_path: Path) -> None:
    frames = synthetic_frames(n_models=3, seed=11)
    ingest_frames(database_path(tmp_path), frames)
    with results.connect(tmp_path) as res:
        assert set(schema.TABLES) <= set(res.tables())
        models = res.table("models")
        assert isinstance(models, pl.DataFrame)
        assert models["model_id"].to_list() == sorted(frames["models"]["model_id"].to_list())
        count = res.query("SELECT count(*) AS n FROM cood_levels")["n"][0]
        assert count == frames["cood_levels"].height
        board = res.query("leaderboard_auroc")  # a canned query by name
        assert board.height == 3 and board["rank"].to_list() == [1, 2, 3]
        names = [q.name for q in res.sql_list()]
        assert "hsc_gain" in names and names == sorted(names)
        with pytest.raises(QueryError, match="read-only"):
            res.query("DELETE FROM models")
        with pytest.raises(StoreError, match="unknown table 'nope'"):
            res.table("nope")
    with results.connect(str(tmp_path)) as res:
        assert res.table("models").height == 3


def test_connect_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="workspace not found"):
        results.connect(tmp_path / "missing")
    with pytest.raises(StoreError, match="no results database at"):
        results.connect(tmp_path)
