"""Read-only SQL over the results database: statement checks, canned queries and output formats.

``uebench sql`` opens the database read-only and runs one reading statement (``SELECT``, ``WITH … SELECT``,
``FROM …``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``, ``VALUES`` or ``EXPLAIN`` of one of those), which may start
with ``--`` or ``/* */`` comments. Anything else — ``DROP``, ``INSERT``, ``COPY … TO`` (which would write a file),
``ATTACH``, ``INSTALL``/``LOAD``, ``SET``/``RESET``/``PRAGMA`` — is refused with one line before it reaches DuckDB.
The statement then runs on a read-only connection that reads only the database and the workspace's outputs
(:data:`results.store.READ_ONLY_SETTINGS`: ``read_csv('/etc/passwd')``, ``glob(…)``, ``FROM 'file.csv'`` or
``'https://…'`` fail there), and any error it raises is one line. Canned queries ship as
``results/queries/<name>.sql``; the first comment line of each file is its description.
"""

from __future__ import annotations

import difflib
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb
import polars as pl

from common import atomic_write_bytes
from results.store import Store, StoreError

FORMATS = ("table", "csv", "json", "parquet")
_READ_STATEMENTS = {duckdb.StatementType.SELECT}


class QueryError(StoreError):
    """A query ``uebench sql`` refuses or cannot run (one-line message)."""


@dataclass(frozen=True)
class CannedQuery:
    """A named query shipped with uebench: ``name`` (file stem), ``description`` (first comment), ``sql``."""

    name: str
    description: str
    sql: str


def canned_queries() -> dict[str, CannedQuery]:
    """Every canned query, by name (sorted)."""
    queries: dict[str, CannedQuery] = {}
    folder = resources.files("results").joinpath("queries")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        first = text.lstrip().splitlines()[0] if text.strip() else ""
        description = first[2:].strip() if first.startswith("--") else ""
        name = entry.name[: -len(".sql")]
        queries[name] = CannedQuery(name, description, text)
    return queries


def canned_query(name: str) -> CannedQuery:
    """The canned query ``name``; QueryError with the closest names when there is none."""
    queries = canned_queries()
    if name in queries:
        return queries[name]
    close = difflib.get_close_matches(name, list(queries), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see `uebench sql --list`"
    raise QueryError(f"unknown canned query {name!r}; {hint}")


def check_read_only(sql: str) -> None:
    """Raise QueryError unless ``sql`` is exactly one reading statement (see the module docstring)."""
    parser = duckdb.connect(":memory:")
    try:
        statements = parser.extract_statements(sql)
    except duckdb.Error as exc:
        message = " ".join(str(exc).split()).split(" LINE ", 1)[0]
        raise QueryError(f"cannot parse the query: {message}") from None
    finally:
        parser.close()
    if len(statements) != 1:
        raise QueryError(f"uebench sql runs one statement at a time, got {len(statements)}")
    statement = statements[0]
    tokens = _tokens(statement.query)
    if statement.type == duckdb.StatementType.EXPLAIN:
        check_read_only(_explained(statement.query, tokens))
        return
    if statement.type not in _READ_STATEMENTS:
        verb = tokens[0][1].upper() if tokens else "?"
        raise QueryError(f"the results database is opened read-only; uebench sql runs queries, not changes ({verb} …)")


def _tokens(sql: str) -> list[tuple[int, str]]:
    """The tokens of ``sql`` other than comments, as (start offset, text), by DuckDB's tokenizer."""
    found = duckdb.tokenize(sql)
    ends = [start for start, _ in found[1:]] + [len(sql)]
    return [
        (start, sql[start:end].strip())
        for (start, kind), end in zip(found, ends, strict=True)
        if kind != duckdb.token_type.comment
    ]


def _explained(sql: str, tokens: list[tuple[int, str]]) -> str:
    """The statement that the EXPLAIN statement ``sql`` explains: the text after ``EXPLAIN``, an optional
    ``ANALYZE`` and an optional parenthesised option list; empty when nothing follows."""
    index = 1
    if index < len(tokens) and tokens[index][1].upper() == "ANALYZE":
        index += 1
    if index < len(tokens) and tokens[index][1] == "(":
        depth = 0
        while index < len(tokens):
            depth += {"(": 1, ")": -1}.get(tokens[index][1], 0)
            index += 1
            if depth == 0:
                break
    return sql[tokens[index][0] :] if index < len(tokens) else ""


def run_query(db_path: Path, sql: str) -> pl.DataFrame:
    """Check that ``sql`` only reads, open ``db_path`` read-only (confined to the database and its outputs) and
    return the result as a polars DataFrame; QueryError (one line) when it is refused or fails."""
    check_read_only(sql)
    with Store.open(db_path, read_only=True) as store:
        try:
            return store.query(sql)
        except StoreError as exc:
            raise QueryError(str(exc)) from None


def _flatten_nested(frame: pl.DataFrame) -> pl.DataFrame:
    """Nested columns (lists, arrays, structs) as text, for formats that hold scalars only."""
    columns = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if isinstance(dtype, pl.Array):
            column = column.arr.to_list()
            dtype = pl.List(dtype.inner)
        if isinstance(dtype, pl.List):
            text = column.list.eval(pl.element().cast(pl.String)).list.join(", ")
            columns.append(pl.concat_str([pl.lit("["), text, pl.lit("]")]).alias(name))
        elif isinstance(dtype, pl.Struct):
            columns.append(column.struct.json_encode().alias(name))
        else:
            columns.append(column)
    return frame.select(columns)


def format_table(frame: pl.DataFrame) -> str:
    """All rows and columns as an aligned Markdown-style text table."""
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=65_000,
        fmt_str_lengths=200,
        fmt_table_cell_list_len=-1,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_formatting="ASCII_MARKDOWN",
        float_precision=6,
    ):
        return str(frame)


def render(frame: pl.DataFrame, fmt: str) -> bytes:
    """The result in ``fmt`` (one of :data:`FORMATS`) as bytes."""
    if fmt not in FORMATS:
        raise QueryError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "table":
        return (format_table(frame) + "\n").encode()
    buffer = io.BytesIO()
    if fmt == "csv":
        _flatten_nested(frame).write_csv(buffer)
    elif fmt == "json":
        frame.write_json(buffer)
        buffer.write(b"\n")
    else:
        frame.write_parquet(buffer)
    return buffer.getvalue()


def write_output(data: bytes, output: Path) -> Path:
    """Write ``data`` to ``output`` atomically (temporary file in the same folder, then rename)."""
    output = Path(output)
    if output.is_dir():
        raise QueryError(f"--output must be a file path, got the folder {output}")
    return atomic_write_bytes(output, data)
