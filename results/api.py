"""The Python API over a workspace's results: ``results.connect(workspace)`` returns polars DataFrames."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import polars as pl

from results.sql import CannedQuery, canned_queries, canned_query, check_read_only
from results.store import Store, StoreError, database_path


class Results:
    """A read-only view of one workspace's results database. Close it (or use ``with``) when done."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def workspace(self) -> Path:
        """The workspace folder."""
        return self._store.workspace

    def tables(self) -> list[str]:
        """Names of the tables in the database."""
        return self._store.tables()

    def table(self, name: str) -> pl.DataFrame:
        """The whole table ``name`` (or the ``samples`` view), ordered by its natural key."""
        return self._store.table(name)

    def query(self, sql: str) -> pl.DataFrame:
        """The result of one reading SQL statement (or of the canned query of that name) as a DataFrame;
        StoreError (one line) when it is refused or fails."""
        if sql.strip() in canned_queries():
            sql = canned_query(sql.strip()).sql
        check_read_only(sql)
        return self._store.query(sql)

    def sql_list(self) -> list[CannedQuery]:
        """The canned queries (name, description, sql), sorted by name."""
        return list(canned_queries().values())

    def close(self) -> None:
        """Close the database connection."""
        self._store.close()

    def __enter__(self) -> Results:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def connect(workspace: Path | str) -> Results:
    """Open ``<workspace>/uebench.duckdb`` read-only, confined to the database and its outputs like ``uebench sql``
    (:data:`results.store.READ_ONLY_SETTINGS`). StoreError when the workspace or database is missing."""
    workspace = Path(workspace)
    if not workspace.is_dir():
        raise StoreError(f"workspace not found: {workspace}")
    return Results(Store.open(database_path(workspace), read_only=True))
