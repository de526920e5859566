"""Numbered schema migrations of the results database.

A database records the migrations applied to it in the ``schema_version`` table (one row per migration:
``version``, ``applied_at``); its version is the largest recorded number, 0 when the table is absent (a new
file, or a database written before versioning). :data:`MIGRATIONS` maps version ``n`` to the function that
upgrades a database from ``n - 1`` to ``n``; :func:`results.store.Store.open` runs the missing ones in
order, each in its own transaction.

Opening a database writable runs the missing numbered migrations, then :func:`reconcile`, which applies the
purely additive part of :data:`results.schema.TABLES` (new tables, new nullable columns) — so additive schema
changes need no numbered migration.

Adding migration n (a rename, a type change, a new key — anything not additive; ``_v2`` is an example):
1. edit ``results/schema.py`` to the new DDL and set ``SCHEMA_VERSION = n``;
2. write ``def _vn(con): ...`` below turning a version-(n − 1) database into a version-n one (``ALTER TABLE``,
   ``CREATE TABLE … AS``, ``UPDATE``); a table it touches may not exist yet in an old database (reconcile
   creates it afterwards in the current layout), so guard on :func:`existing_columns`;
3. add ``n: _vn`` to :data:`MIGRATIONS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from results.schema import TABLES

Migration = Callable[[duckdb.DuckDBPyConnection], None]

VERSION_TABLE = "schema_version"


@dataclass(frozen=True)
class Column:
    """One column of the schema contract: its name, DuckDB type (e.g. ``DOUBLE[]``) and nullability."""

    name: str
    type: str
    nullable: bool


@functools.cache
def contract_columns() -> dict[str, tuple[Column, ...]]:
    """Table name -> its columns in DDL order, read back from an in-memory DuckDB built from ``TABLES``."""
    con = duckdb.connect(":memory:")
    try:
        for ddl in TABLES.values():
            con.execute(ddl)
        rows = con.execute(
            "SELECT table_name, column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        con.close()
    columns: dict[str, list[Column]] = {name: [] for name in TABLES}
    for table, name, dtype, nullable in rows:
        columns[table].append(Column(name, dtype, bool(nullable)))
    return {table: tuple(cols) for table, cols in columns.items()}


def existing_columns(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """Table name -> {column name: DuckDB type} for every base table of the ``main`` schema of ``con``."""
    rows = con.execute(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
        "JOIN information_schema.tables t ON t.table_name = c.table_name AND t.table_schema = c.table_schema "
        "WHERE c.table_schema = 'main' AND t.table_type = 'BASE TABLE' "
        "ORDER BY c.table_name, c.ordinal_position"
    ).fetchall()
    tables: dict[str, dict[str, str]] = {}
    for table, name, dtype in rows:
        tables.setdefault(table, {})[name] = dtype
    return tables


def reconcile(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Create missing contract tables and add missing nullable columns; returns the statements it ran.

    A missing NOT NULL column cannot be filled for existing rows, so it raises ValueError asking for a
    numbered migration instead.
    """
    present = existing_columns(con)
    statements: list[str] = []
    for table, ddl in TABLES.items():
        if table not in present:
            statements.append(ddl)
            continue
        for column in contract_columns()[table]:
            if column.name in present[table]:
                continue
            if not column.nullable:
                raise ValueError(
                    f"table {table!r} lacks the NOT NULL column {column.name!r}; existing rows cannot be "
                    "filled automatically: add a numbered migration in results/migrations.py"
                )
            statements.append(f'ALTER TABLE {table} ADD COLUMN "{column.name}" {column.type}')
    for statement in statements:
        con.execute(statement)
    return statements


def _v1(con: duckdb.DuckDBPyConnection) -> None:
    """Version 0 -> 1: start versioning. Databases written before versioning have no version table; their
    tables are brought to the contract by :func:`reconcile`, which runs after the numbered migrations."""
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
    )


# The version-2 layout of the tables _v2 rebuilds, frozen here so that later schema versions do not change what
# this migration produces ({table} is the name to create).
_V2_HSC_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "hsc_rules": (
        """
        CREATE TABLE {table} (
            model_id VARCHAR NOT NULL,
            rule VARCHAR NOT NULL,
            temperature_scaled BOOLEAN NOT NULL,
            risk_type VARCHAR NOT NULL,
            haurc DOUBLE,
            gain DOUBLE,
            grid INTEGER,
            hierarchy_id VARCHAR,
            PRIMARY KEY (model_id, rule, temperature_scaled, risk_type)
        )""",
        {"risk": "risk_type"},
    ),
    "hsc_curves": (
        """
        CREATE TABLE {table} (
            model_id VARCHAR NOT NULL,
            rule VARCHAR NOT NULL,
            temperature_scaled BOOLEAN NOT NULL,
            risk_type VARCHAR NOT NULL,
            point INTEGER NOT NULL,
            theta DOUBLE,
            coverage DOUBLE,
            risk DOUBLE,
            PRIMARY KEY (model_id, rule, temperature_scaled, risk_type, point)
        )""",
        {"risk": "risk_type", "value": "risk"},
    ),
}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _v2(con: duckdb.DuckDBPyConnection) -> None:
    """Version 1 -> 2: follow architecture.md §5 for the HSC tables. In ``hsc_rules`` and ``hsc_curves`` the
    risk kind ('01' | 'severity') moves from ``risk`` to ``risk_type`` (part of both primary keys), and in
    ``hsc_curves`` the numeric risk of a point moves from ``value`` to ``risk``.

    DuckDB cannot rename key columns in place, so each table in the old layout is rebuilt: create the new
    table, copy every row (renamed columns by their new names; any column outside the layout is kept as an
    extra nullable column), drop the old one and rename the new one. Tables absent from the database are left
    to :func:`reconcile`; tables already in the new layout (a ``risk_type`` column) are left as they are.
    """
    present = existing_columns(con)
    for table, (ddl, renames) in _V2_HSC_TABLES.items():
        old_columns = present.get(table)
        if old_columns is None or "risk_type" in old_columns or "risk" not in old_columns:
            continue
        staging = f"_uebench_v2_{table}"
        con.execute(f"DROP TABLE IF EXISTS {staging}")
        con.execute(ddl.format(table=staging))
        new_columns = existing_columns(con)[staging]
        for name, dtype in old_columns.items():
            if renames.get(name, name) not in new_columns:  # not in the v2 layout: keep it, nullable
                con.execute(f"ALTER TABLE {staging} ADD COLUMN {_quote(name)} {dtype}")
        targets = ", ".join(_quote(renames.get(name, name)) for name in old_columns)
        sources = ", ".join(_quote(name) for name in old_columns)
        con.execute(f"INSERT INTO {staging} ({targets}) SELECT {sources} FROM {table}")
        con.execute(f"DROP TABLE {table}")
        con.execute(f"ALTER TABLE {staging} RENAME TO {table}")


MIGRATIONS: dict[int, Migration] = {1: _v1, 2: _v2}
