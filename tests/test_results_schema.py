"""results.schema: the polars side derived from the DDL (column_types, polars_schema, table_frame, with_values)."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import polars as pl
import pytest

from cood.evaluate import LEVEL_SCHEMA
from results import schema


def _described(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in con.execute(f"DESCRIBE {table}").fetchall()]


@pytest.mark.parametrize("table", sorted(schema.TABLES))
def test_polars_schema_is_what_duckdb_makes_of_the_ddl(table: str) -> None:
    """Independent check: the parsed columns and types are DuckDB's own reading of the CREATE statement, and a
    frame in the derived polars schema lands in DuckDB with those types (JSON travels as VARCHAR text)."""
    con = duckdb.connect()
    con.execute(schema.TABLES[table])
    declared = _described(con, table)
    assert list(schema.column_types(table).items()) == declared
    assert list(schema.polars_schema(table)) == [name for name, _ in declared]
    empty = pl.DataFrame(schema=schema.polars_schema(table))
    con.register("empty_frame", empty)
    con.execute("CREATE TABLE from_polars AS SELECT * FROM empty_frame")
    assert _described(con, "from_polars") == [(n, "VARCHAR" if t == "JSON" else t) for n, t in declared]
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM empty_frame")  # the frame is insertable as is


def test_cood_level_schema_of_the_library_matches_the_ddl() -> None:
    """cood.evaluate keeps its own LEVEL_SCHEMA (cood may not import results); it must be the DDL's."""
    assert dict(schema.polars_schema("cood_levels")) == dict(LEVEL_SCHEMA)


def test_unknown_table_and_unmapped_type_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        schema.polars_schema("nope")
    monkeypatch.setitem(schema.TABLES, "odd", "CREATE TABLE odd (\n  x HUGEINT,\n  PRIMARY KEY (x)\n)")
    try:
        assert schema.column_types("odd") == {"x": "HUGEINT"}
        with pytest.raises(ValueError, match=r"odd\.x: no polars dtype for the DuckDB type 'HUGEINT'"):
            schema.polars_schema("odd")
    finally:
        schema.column_types.cache_clear()


def test_table_frame_from_columns_fills_nulls_and_repeats_scalars() -> None:
    frame = schema.table_frame(
        "cood_level_classes", {"wnid": np.array(["n00000001", "n00000002"]), "model_id": "m", "level": [0, 1]}
    )
    assert frame.columns == ["model_id", "kappa", "level", "wnid"]
    assert frame.schema == schema.polars_schema("cood_level_classes")
    assert frame.rows() == [("m", None, 0, "n00000001"), ("m", None, 1, "n00000002")]


def test_table_frame_from_rows_and_frames() -> None:
    started = dt.datetime(2026, 12, 3, 8, 0)
    rows = [
        {"run_id": "a", "started_at": started, "status": "ok"},
        {"run_id": "b", "started_at": started, "status": "failed", "error": "boom"},
    ]
    frame = schema.table_frame("runs", rows)
    assert frame.schema == schema.polars_schema("runs")
    assert frame["error"].to_list() == [None, "boom"] and frame["config"].null_count() == 2
    again = schema.table_frame("runs", frame.select("status", "run_id"))
    assert again.columns == frame.columns and again["status"].to_list() == ["ok", "failed"]
    none = schema.table_frame("runs", [])
    assert none.height == 0 and none.schema == schema.polars_schema("runs")


def test_table_frame_rejects_columns_the_table_lacks() -> None:
    with pytest.raises(ValueError, match="table 'hsc_curves' has no column\\(s\\) run_id"):
        schema.table_frame("hsc_curves", {"model_id": ["m"], "run_id": ["r"]})


def test_with_values_sets_provenance_where_the_table_has_the_column() -> None:
    tables = {
        "hsc_rules": schema.table_frame("hsc_rules", {"model_id": ["m", "m"], "rule": ["selective", "climbing"]}),
        "hsc_curves": schema.table_frame("hsc_curves", {"model_id": ["m"], "point": [0]}),
    }
    out = schema.with_values(tables, run_id="run-1", code_sha="abc")
    assert out["hsc_rules"]["run_id"].to_list() == ["run-1", "run-1"]
    assert out["hsc_rules"].schema == schema.polars_schema("hsc_rules")
    assert out["hsc_curves"].equals(tables["hsc_curves"])  # no run_id column: unchanged
    assert tables["hsc_rules"]["run_id"].null_count() == 2  # the input is not modified
