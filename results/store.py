"""The results database: one DuckDB file per workspace, written by the driver only.

Single-writer rule (ecosystem.md §5): DuckDB lets one process open a file read-write, or many processes open
it read-only. Ray workers therefore never open the database; they write Parquet outputs, and the driver
process ingests every analysis table through :meth:`Store.ingest` / :func:`ingest_frames`. Readers
(``uebench sql``, ``uebench report``, :func:`results.connect`) open it read-only.

Ingestion is idempotent per natural key (:data:`results.schema.PRIMARY_KEYS`): a row whose key is already in
the table replaces it whole (``INSERT OR REPLACE`` listing every column, absent ones as NULL), inside one
transaction, so re-ingesting the same outputs leaves identical table contents. Tables whose rows form groups
(:data:`results.schema.REPLACED_TOGETHER`: a curve's points, a model's levels) replace whole groups, so a rerun
with fewer points or levels leaves none of the old rows behind.

Every connection also gets the shared views of the canned queries (:data:`SHARED_VIEWS`: ``model_population``,
``regime_members``, …; docs/comparisons.md) and a ``samples`` view (a temporary view, rebuilt at each open, so it
follows the workspace wherever it is copied) over ``<workspace>/outputs/model=*/dataset=*/*.parquet`` with hive columns
``model`` and ``dataset``; with no outputs it is an empty view with the per-sample columns. The view lists the
files it covers: a file whose Parquet footer cannot be read (a truncated or half-copied shard) is left out with
a :class:`DamagedOutputWarning` naming it, so one damaged output never makes a query or the report fail.

A read-only connection reads only the database and those outputs (:data:`READ_ONLY_SETTINGS`): DuckDB's file
access is limited to the files the ``samples`` view lists (``allowed_paths``; Python variables of the calling
process are not scanned either), extensions are neither installed nor loaded on demand, and the configuration is
locked so no statement can undo it. SQL from users (``uebench sql``, :func:`results.connect`) runs only on such
connections.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import TracebackType

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from common import DB_FILENAME
from results import migrations, schema

SAMPLES_VIEW = "samples"

_EMPTY_SAMPLES = (
    "SELECT CAST(NULL AS VARCHAR) AS sample_id, CAST(NULL AS INTEGER) AS label, "
    "CAST(NULL AS FLOAT[]) AS logits, "
    "CAST(NULL AS INTEGER) AS pred, CAST(NULL AS DOUBLE) AS msp, CAST(NULL AS VARCHAR) AS model, "
    "CAST(NULL AS VARCHAR) AS dataset WHERE false"
)


# the settings of every read-only connection, applied in this order after ``allowed_paths`` (the outputs the
# samples view reads) and before the view is created: file access other than the database and the allowed paths
# off (read_csv, glob, COPY, ATTACH, FROM 'file' or 'https://…'; it also stops scans of the caller's Python
# variables), no extension installed or loaded on demand (a URL would otherwise download httpfs), then the
# configuration locked (SET / RESET / PRAGMA cannot change any of it back)
READ_ONLY_SETTINGS: tuple[tuple[str, bool], ...] = (
    ("enable_external_access", False),
    ("autoinstall_known_extensions", False),
    ("autoload_known_extensions", False),
    ("lock_configuration", True),
)


class DamagedOutputWarning(UserWarning):
    """A Parquet output under ``<workspace>/outputs`` is unreadable and was left out of the ``samples`` view.

    The message is one line naming the file and why it was skipped.
    """


# path -> ((size, mtime_ns), None when its footer reads, else the reason); avoids re-reading unchanged footers
_FOOTER_CHECKS: dict[Path, tuple[tuple[int, int], str | None]] = {}


def _footer_problem(path: Path) -> str | None:
    """None when ``path``'s Parquet footer reads (schema and row groups), else a one-line reason.

    Cached per (size, mtime): reopening a store over unchanged outputs only stats each file.
    """
    try:
        stat = path.stat()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    state = (stat.st_size, stat.st_mtime_ns)
    cached = _FOOTER_CHECKS.get(path)
    if cached is not None and cached[0] == state:
        return cached[1]
    try:
        pq.read_metadata(path)
        problem = None
    except (OSError, pa.ArrowException) as exc:
        problem = f"{stat.st_size} bytes, not a readable Parquet file: {' '.join(str(exc).split())}"
    _FOOTER_CHECKS[path] = (state, problem)
    return problem


def readable_outputs(outputs: Path) -> list[Path]:
    """The Parquet files ``outputs/model=*/dataset=*/*.parquet`` whose footer reads, sorted.

    Each damaged file (truncated, empty, not Parquet) is left out with one :class:`DamagedOutputWarning`
    naming it (Python's default warning filter shows a repeated one once per process); never raises for a
    damaged file.
    """
    readable = []
    for path in sorted(Path(outputs).glob("model=*/dataset=*/*.parquet")):
        if not path.is_file():
            continue
        problem = _footer_problem(path)
        if problem is None:
            readable.append(path)
        else:
            warnings.warn(f"skipping damaged output {path} ({problem})", DamagedOutputWarning, stacklevel=2)
    return readable


# Views over the tables that several canned queries read (results/queries/views/<name>.sql), created as temporary
# views at every open like ``samples``, in this order (a later one may read an earlier one).
SHARED_VIEWS = ("model_population", "regime_members", "detector_pairs", "selective_ranked")


@functools.cache
def shared_views() -> dict[str, str]:
    """Name -> SELECT text of each view of :data:`SHARED_VIEWS`, read from the package."""
    folder = resources.files("results").joinpath("queries", "views")
    return {name: folder.joinpath(f"{name}.sql").read_text(encoding="utf-8") for name in SHARED_VIEWS}


class StoreError(Exception):
    """The results database cannot be used as asked (missing, locked, newer schema, bad rows).

    The message is one line, fit for the CLI's ``error:`` output.
    """


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line, without DuckDB's ``LINE n: …`` query excerpt."""
    text = " ".join(str(exc).split())
    return text.split(" LINE ", 1)[0]


def database_version(con: duckdb.DuckDBPyConnection) -> int:
    """Schema version of ``con``'s database: the largest applied migration, 0 without a version table."""
    present = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
        [migrations.VERSION_TABLE],
    ).fetchall()[0][0]
    if not present:
        return 0
    value = con.execute(f"SELECT max(version) FROM {migrations.VERSION_TABLE}").fetchall()[0][0]
    return int(value or 0)


class Store:
    """An open results database. Use :meth:`Store.open` (a context manager) rather than the constructor."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only
        self._open_transactions = 0  # blocks of _Transaction open on this store (the outermost owns BEGIN)

    # -- opening ---------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, db_path: Path, read_only: bool = False, samples: bool = True) -> Store:
        """Open (and when writable, create or migrate) the database at ``db_path``.

        samples: build the ``samples`` view (checks every output's footer); False for callers that only touch
        tables (workspace housekeeping), so they neither read the outputs nor warn about damaged ones.

        read_only: open for reading only, confined to the database and its outputs (:data:`READ_ONLY_SETTINGS`;
        the ``samples`` view covers the outputs present now: reopen to see new ones. A read-only Store opened
        while another is open on the same file in this process shares its DuckDB instance, settings and allowed
        outputs).

        Raises StoreError for a missing file in read-only mode, a file locked by another writer, a file that
        is not a DuckDB database, or a database written by a newer schema version.
        """
        path = Path(db_path)
        if read_only and not path.is_file():
            raise StoreError(f"no results database at {path}; run `uebench demo` or `uebench run` first")
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the results database {path}: {_one_line(exc)}") from None
        store = cls(con, path, read_only)
        try:
            store._prepare(samples)
        except BaseException:
            con.close()
            raise
        return store

    def _prepare(self, samples: bool = True) -> None:
        version = database_version(self._con)
        current = schema.SCHEMA_VERSION
        if version > current:
            raise StoreError(
                f"the results database {self.path} has schema version {version}, newer than this uebench "
                f"(schema version {current}); upgrade uebench to read it"
            )
        if self.read_only:
            if version < current:
                raise StoreError(
                    f"the results database {self.path} has schema version {version}, older than this uebench "
                    f"(schema version {current}); open it once writable (any ingesting command, or "
                    "results.store.Store.open(path)) to migrate it"
                )
        else:
            self._migrate(version, current)
        files = readable_outputs(self.workspace / "outputs") if samples else []
        if self.read_only:
            files = self._confine(files)
        if samples:
            self._create_samples_view(files)
        for name, body in shared_views().items():
            self._con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {body}")

    def _setting(self, name: str) -> object:
        return self._con.execute("SELECT current_setting(?)", [name]).fetchall()[0][0]

    def _confine(self, files: list[Path]) -> list[Path]:
        """Apply :data:`READ_ONLY_SETTINGS`, allowing DuckDB to read ``files`` (the outputs) besides the database;
        returns the files the connection may read.

        DuckDB shares one database instance, settings included, between the connections a process opens to the
        same file. When another read-only Store on this file is open, the instance is already confined and
        locked: this one checks that and gets the outputs allowed then (those written since are left out until
        every Store on the file is closed and it is opened again).
        """
        if self._setting("lock_configuration"):
            wrong = [name for name, value in READ_ONLY_SETTINGS if self._setting(name) != value]
            if wrong:
                raise StoreError(
                    f"cannot open {self.path} read-only: this process holds it with locked settings "
                    f"({', '.join(wrong)}) other than uebench's read-only ones"
                )
            allowed = {os.path.abspath(path) for path in self._setting("allowed_paths") or []}
            return [path for path in files if os.path.abspath(path) in allowed]
        if files:
            self._con.execute("SET allowed_paths = ?", [[os.fspath(path) for path in files]])
        for name, value in READ_ONLY_SETTINGS:
            self._con.execute(f"SET {name} = {str(value).lower()}")
        return files

    def _migrate(self, version: int, current: int) -> None:
        for number in range(version + 1, current + 1):
            with self.transaction():
                migrations.MIGRATIONS[number](self._con)
                self._con.execute(
                    f"INSERT INTO {migrations.VERSION_TABLE} VALUES (?, ?)",
                    [number, dt.datetime.now(dt.UTC).replace(tzinfo=None)],
                )
        with self.transaction():
            try:
                migrations.reconcile(self._con)
            except ValueError as exc:
                raise StoreError(f"cannot update the schema of {self.path}: {exc}") from None

    @property
    def workspace(self) -> Path:
        """The workspace folder: the database file's parent."""
        return self.path.parent

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        return database_version(self._con)

    def _create_samples_view(self, files: list[Path]) -> None:
        """Create the temporary ``samples`` view over ``files``, the workspace's readable Parquet outputs
        (:func:`readable_outputs`; damaged ones were skipped with a :class:`DamagedOutputWarning`). Empty view
        with the per-sample columns when there is none."""
        if files:
            listed = ", ".join("'" + os.fspath(path).replace("'", "''") + "'" for path in files)
            body = (
                f"SELECT * FROM read_parquet([{listed}], hive_partitioning = true, union_by_name = true, "
                "hive_types = {'model': VARCHAR, 'dataset': VARCHAR})"
            )
        else:
            body = _EMPTY_SAMPLES
        self._con.execute(f"CREATE OR REPLACE TEMP VIEW {SAMPLES_VIEW} AS {body}")

    # -- context manager -------------------------------------------------------------------------------------
    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._con.close()

    # -- reading ---------------------------------------------------------------------------------------------
    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The underlying DuckDB connection (read-only and confined, :data:`READ_ONLY_SETTINGS`, when the store is)."""
        return self._con

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        """Run one SQL statement (``?`` placeholders bound from ``params``); its result as a polars DataFrame,
        an empty frame for statements without rows.

        Errors while parsing, binding, executing or converting the result raise StoreError (one line)."""
        try:
            relation = self._con.sql(sql, params=params)
            return pl.DataFrame() if relation is None else relation.pl()  # a SELECT executes here, in .pl()
        except duckdb.Error as exc:
            raise StoreError(_one_line(exc)) from None
        except (pl.exceptions.PolarsError, pa.ArrowException) as exc:  # a DuckDB type polars cannot hold
            raise StoreError(f"cannot convert the result: {_one_line(exc)}") from None

    def tables(self) -> list[str]:
        """Names of the base tables in the database, sorted."""
        return sorted(migrations.existing_columns(self._con))

    def table(self, name: str) -> pl.DataFrame:
        """The whole table (or view) ``name``, ordered by its natural key when it has one."""
        known = set(self.tables()) | {SAMPLES_VIEW}
        if name not in known:
            raise StoreError(f"unknown table {name!r}; tables: {', '.join(sorted(known))}")
        keys = schema.PRIMARY_KEYS.get(name)
        order = f" ORDER BY {', '.join(_quote(k) for k in keys)}" if keys else ""
        return self.query(f"SELECT * FROM {_quote(name)}{order}")

    # -- writing ---------------------------------------------------------------------------------------------
    def transaction(self) -> _Transaction:
        """``with store.transaction():`` BEGIN … COMMIT around the block, ROLLBACK when it raises; every
        :meth:`ingest` / :meth:`ingest_frames` inside it joins it (all of the block's rows, or none)."""
        return _Transaction(self)

    def ingest(self, table: str, rows: pl.DataFrame) -> int:
        """Insert ``rows`` into ``table``, replacing rows with the same natural key; returns the row count.

        rows: a polars DataFrame whose columns are a subset of the table's (matched by name, cast to the
        table's types); absent nullable columns become NULL. Unknown columns, absent NOT NULL columns and keys
        repeated inside ``rows`` raise StoreError.
        """
        with self.transaction():
            return self._ingest(table, rows)

    def ingest_frames(self, frames: Mapping[str, pl.DataFrame]) -> dict[str, int]:
        """Ingest several tables in one transaction (all or nothing); table -> rows ingested."""
        with self.transaction():
            return {table: self._ingest(table, rows) for table, rows in frames.items()}

    def _primary_key(self, table: str) -> tuple[str, ...]:
        """The PRIMARY KEY columns of ``table`` in this database (empty when it has none)."""
        rows = self._con.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [table],
        ).fetchall()
        return tuple(rows[0][0]) if rows else ()

    def _ingest(self, table: str, rows: pl.DataFrame) -> int:
        if self.read_only:
            raise StoreError(f"the results database {self.path} is open read-only; only the driver ingests")
        if not isinstance(rows, pl.DataFrame):
            raise StoreError(f"rows for table {table!r} must be a polars DataFrame, got {type(rows).__name__}")
        present = migrations.existing_columns(self._con)
        if table not in schema.TABLES or table not in present:
            raise StoreError(f"unknown table {table!r}; tables: {', '.join(sorted(schema.TABLES))}")
        columns = present[table]
        unknown = [c for c in rows.columns if c not in columns]
        if unknown:
            raise StoreError(f"table {table!r} has no column(s) {', '.join(unknown)}; columns: {', '.join(columns)}")
        required = [c.name for c in migrations.contract_columns()[table] if not c.nullable]
        missing = [c for c in required if c not in rows.columns]
        if missing:
            raise StoreError(f"rows for table {table!r} lack the required column(s) {', '.join(missing)}")
        if rows.height == 0:
            return 0
        keys = list(schema.PRIMARY_KEYS[table])
        null_keys = [k for k in keys if rows.get_column(k).null_count()]
        if null_keys:
            raise StoreError(f"rows for table {table!r} have NULL key column(s) {', '.join(null_keys)}")
        repeated = rows.height - rows.select(keys).n_unique()
        if repeated:
            raise StoreError(
                f"rows for table {table!r} repeat the natural key ({', '.join(keys)}) in {repeated} row(s)"
            )
        staged = "_uebench_staged"
        registered = False
        try:
            self._con.register(staged, rows)
            registered = True
            names = ", ".join(_quote(c) for c in columns)
            values = ", ".join(
                f"CAST(s.{_quote(c)} AS {dtype})" if c in rows.columns else f"CAST(NULL AS {dtype})"
                for c, dtype in columns.items()
            )
            group = schema.REPLACED_TOGETHER.get(table)
            if group:  # the stored rows of every group present in ``rows`` go first (schema.REPLACED_TOGETHER)
                match = " AND ".join(
                    f"{_quote(table)}.{_quote(k)} = CAST(s.{_quote(k)} AS {columns[k]})" for k in group
                )
                self._con.execute(f"DELETE FROM {_quote(table)} USING {staged} s WHERE {match}")
            if self._primary_key(table) == tuple(keys):
                verb = "INSERT OR REPLACE"  # every column is listed, so a matching row is replaced whole
            else:  # a table migrated from a layout without this key: replace by hand
                verb = "INSERT"
                match = " AND ".join(f"{_quote(table)}.{_quote(k)} = CAST(s.{_quote(k)} AS {columns[k]})" for k in keys)
                self._con.execute(f"DELETE FROM {_quote(table)} USING {staged} s WHERE {match}")
            self._con.execute(f"{verb} INTO {_quote(table)} ({names}) SELECT {values} FROM {staged} s")
        except duckdb.Error as exc:
            raise StoreError(f"cannot ingest rows into {table!r}: {_one_line(exc)}") from None
        finally:
            if registered:
                try:
                    self._con.unregister(staged)
                except duckdb.TransactionException:
                    pass  # the failed transaction is rolled back by the caller, which drops the view too
        return rows.height


class _Transaction:
    """BEGIN … COMMIT around a block; ROLLBACK when it raises. Nested use joins the outer transaction: the store
    counts its open blocks, because a BEGIN inside a DuckDB transaction fails and aborts that transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._owner = False

    def __enter__(self) -> None:
        if self._store._open_transactions == 0:
            self._store._con.begin()
            self._owner = True
        self._store._open_transactions += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._store._open_transactions -= 1
        if not self._owner:
            return
        if exc_type is None:
            self._store._con.commit()
        else:
            self._store._con.rollback()


def database_path(workspace: Path) -> Path:
    """The database file of a workspace: ``<workspace>/uebench.duckdb``."""
    return Path(workspace) / DB_FILENAME


def ingest_frames(db_path: Path, frames: Mapping[str, pl.DataFrame]) -> dict[str, int]:
    """Open ``db_path`` writable, ingest every table of ``frames`` in one transaction and close.

    Returns table -> rows ingested.
    """
    with Store.open(db_path) as store:
        return store.ingest_frames(frames)
