"""results.sql and ``uebench sql``: read-only enforcement, canned queries, output formats, one-line errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from synthetic_results import synthetic_frames, write_synthetic_outputs

import results
from pipelines.cli import main
from results import schema
from results.sql import QueryError, canned_queries, canned_query, check_read_only, render, run_query
from results.store import Store, StoreError, database_path, ingest_frames

N_SAMPLES = 400  # per model in the fixture's outputs


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ws")
    frames = synthetic_frames(n_models=3, seed=3)
    write_synthetic_outputs(root, frames["models"]["model_id"].to_list(), n_samples=N_SAMPLES, num_classes=6)
    ingest_frames(database_path(root), frames)
    return root


def _output_files(root: Path) -> list[Path]:
    return sorted((root / "outputs").glob("model=*/dataset=*/*.parquet"))


def _fingerprint(root: Path) -> tuple[str, dict[str, pl.DataFrame]]:
    db = database_path(root)
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    with Store.open(db, read_only=True) as store:
        return digest, {name: store.table(name) for name in schema.TABLES}


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE models",
        "INSERT INTO models (model_id, spec, source, name, pretrained) VALUES ('x', 'x', 'timm', 'x', true)",
        "DELETE FROM selective_metrics",
        "UPDATE models SET params = 0",
        "CREATE TABLE t AS SELECT 1",
        "COPY models TO 'stolen.csv'",
        "ATTACH 'other.duckdb' AS other",
        "EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'",
        "EXPORT DATABASE 'exported'",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "PRAGMA enable_profiling",
        "-- looks like a comment\nDROP TABLE models",
    ],
)
def test_writes_are_refused_and_database_unchanged(
    workspace: Path, capsys: pytest.CaptureFixture[str], statement: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a COPY that slipped through would write here
    before_digest, before = _fingerprint(workspace)
    code, out, err = _run(capsys, "sql", "-w", str(workspace), statement)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    verb = statement.splitlines()[-1].split()[0]
    if verb in {"DROP", "INSERT", "DELETE", "UPDATE", "CREATE", "COPY", "EXPORT", "SET", "RESET", "PRAGMA"}:
        assert "read-only" in err and f"({verb} …)" in err
    after_digest, after = _fingerprint(workspace)
    assert after_digest == before_digest
    for name in schema.TABLES:
        assert_frame_equal(after[name], before[name])
    assert list(tmp_path.iterdir()) == []


def test_duckdb_itself_rejects_writes_on_a_read_only_store(workspace: Path) -> None:
    # defence in depth: even a statement that bypassed check_read_only meets DuckDB's read-only mode
    with Store.open(database_path(workspace), read_only=True) as store:
        with pytest.raises(duckdb.Error, match="read-only"):
            store.connection.execute("DROP TABLE models")


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1",
        "WITH a AS (SELECT 2) SELECT * FROM a",
        "FROM models",
        "DESCRIBE models",
        "SHOW TABLES",
        "EXPLAIN SELECT 1",
        "VALUES (1, 2)",
        "-- a comment\nSELECT 1",
        "-- one\n-- two\n/* three */ SELECT 1 -- four",
        "-- plan\nEXPLAIN /* analysed */ ANALYZE (FORMAT json) SELECT 1",
    ],
)
def test_reading_statements_pass_the_check(statement: str) -> None:
    check_read_only(statement)


@pytest.mark.parametrize(
    ("statement", "verb"),
    [
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD httpfs", "LOAD"),
        ("-- x\nEXPLAIN /* y */ ANALYZE (FORMAT json) COPY (SELECT 1) TO 'x.csv'", "COPY"),
        ("EXPLAIN -- x\n DELETE FROM models", "DELETE"),
        ("/* x */ SET autoload_known_extensions = true", "SET"),
    ],
)
def test_extensions_settings_and_commented_changes_fail_the_check(statement: str, verb: str) -> None:
    # checked without a connection: these never reach DuckDB, so no extension download is ever attempted
    with pytest.raises(QueryError, match=rf"runs queries, not changes \({verb} …\)"):
        check_read_only(statement)


@pytest.mark.parametrize(
    ("statement", "message"),
    [("SELECT 1; SELECT 2", "one statement at a time, got 2"), ("SELEC 1", "cannot parse"), ("", "got 0")],
)
def test_malformed_statements(statement: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        check_read_only(statement)


def test_every_canned_query_runs_and_returns_rows(workspace: Path) -> None:
    queries = canned_queries()
    required = {
        "leaderboard_auroc",
        "leaderboard_aurc",
        "cood_by_level",
        "cood_mean_auroc",
        "hsc_gain",
        "hsc_calibration",
        "models",
        "runs",
        "failures",
    }
    assert required <= set(queries)
    for name, query in queries.items():
        assert query.description, name
        frame = run_query(database_path(workspace), query.sql)
        assert frame.height > 0, name


def test_canned_leaderboards_match_an_independent_ranking(workspace: Path) -> None:
    frames = synthetic_frames(n_models=3, seed=3)
    sel = frames["selective_metrics"].filter(
        (pl.col("kappa") == "msp") & ~pl.col("temperature_scaled") & (pl.col("subset") == "all")
    )
    expected = sel.sort("auroc", descending=True)["model_id"].to_list()
    got = run_query(database_path(workspace), canned_query("leaderboard_auroc").sql)
    assert got["model_id"].to_list() == expected and got["rank"].to_list() == [1, 2, 3]
    mean = frames["cood_levels"].group_by("model_id", "kappa").agg(pl.col("ood_auroc").mean()).sort("model_id", "kappa")
    got = run_query(database_path(workspace), canned_query("cood_mean_auroc").sql).sort("model_id", "kappa")
    assert got["mean_ood_auroc"].to_list() == pytest.approx(mean["ood_auroc"].to_list())
    assert (got["levels"] == 11).all()
    degradation = got["auroc_easiest"] - got["auroc_hardest"]
    assert degradation.to_list() == pytest.approx(got["degradation"].to_list())


def test_unknown_canned_query_suggests_close_names(capsys: pytest.CaptureFixture[str], workspace: Path) -> None:
    with pytest.raises(QueryError, match="did you mean leaderboard_auroc"):
        canned_query("leaderbord_auroc")
    code, _, err = _run(capsys, "sql", "-w", str(workspace), "--query", "hsc_gains")
    assert code == 2
    assert err == (
        "error: unknown canned query 'hsc_gains'; did you mean hsc_gain, hsc_gain_by_regime, hsc_calibration?\n"
    )


def test_list_prints_names_and_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "sql", "--list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == len(canned_queries())
    first = next(line for line in lines if line.startswith("leaderboard_auroc "))
    assert "Selective prediction leaderboard by AUROC" in first


def test_formats_round_trip(workspace: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sql = "SELECT model_id, params, mean, pretrained FROM models ORDER BY model_id"
    expected = run_query(database_path(workspace), sql)
    code, out, _ = _run(capsys, "sql", "-w", str(workspace), sql, "--format", "csv")
    assert code == 0
    csv = pl.read_csv(io.StringIO(out))
    assert csv["model_id"].to_list() == expected["model_id"].to_list()
    assert csv["params"].to_list() == expected["params"].to_list()
    assert csv["mean"][0] == "[0.485, 0.456, 0.406]"
    code, out, _ = _run(capsys, "sql", "-w", str(workspace), sql, "--format", "json")
    records = json.loads(out)
    assert [r["model_id"] for r in records] == expected["model_id"].to_list()
    assert records[0]["mean"] == [0.485, 0.456, 0.406]
    target = tmp_path / "out" / "models.parquet"
    code, out, err = _run(capsys, "sql", "-w", str(workspace), sql, "--format", "parquet", "-o", str(target))
    assert code == 0 and out == "" and "3 rows" in err
    assert_frame_equal(pl.read_parquet(target), expected)
    table = render(expected, "table").decode().splitlines()
    assert len(table) == expected.height + 2 and len({len(line) for line in table}) == 1
    assert table[0].split("|")[1].strip() == "model_id"


def test_sql_file_and_bad_inputs(workspace: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    query_file = tmp_path / "q.sql"
    query_file.write_text("-- count models\nSELECT count(*) AS n FROM models\n")
    code, out, _ = _run(capsys, "sql", "-w", str(workspace), "-f", str(query_file), "--format", "csv")
    assert code == 0 and out.splitlines() == ["n", "3"]
    cases = [
        (("sql", "-w", str(tmp_path / "nowhere"), "SELECT 1"), "workspace not found"),
        (("sql", "-w", str(tmp_path), "SELECT 1"), "no results database at"),
        (("sql", "-w", str(workspace)), "give exactly one of QUERY"),
        (("sql", "-w", str(workspace), "SELECT 1", "-q", "models"), "got QUERY, --query"),
        (("sql", "-w", str(workspace), "-f", str(tmp_path / "none.sql")), "SQL file not found"),
        (("sql", "-w", str(workspace), "SELECT 1", "--format", "xml"), "--format must be one of"),
        (("sql", "-w", str(workspace), "SELECT 1", "--format", "parquet"), "give --output"),
        (("sql", "-w", str(workspace), "SELECT * FROM nope"), "Table with name nope does not exist"),
    ]
    for args, message in cases:
        code, out, err = _run(capsys, *args)
        assert code == 2, args
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_newer_schema_is_a_one_line_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = database_path(tmp_path)
    Store.open(db).close()
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO schema_version VALUES (99, now()::TIMESTAMP)")
    con.close()
    code, _, err = _run(capsys, "sql", "-w", str(tmp_path), "SELECT 1")
    assert code == 2 and "schema version 99, newer than this uebench" in err and err.count("\n") == 1


LEAK = "uebench_secret_marker"  # a file's content (and column name): must never reach the output


@pytest.fixture
def outside_files(tmp_path: Path) -> dict[str, Path]:
    """Files outside the workspace that a query must not read: a CSV, a JSON, a Parquet and an unnamed file."""
    folder = tmp_path / "private"
    folder.mkdir()
    (folder / "secret.csv").write_text(f"{LEAK},value\n{LEAK}_row,42\n")
    (folder / "secret.json").write_text(json.dumps([{LEAK: f"{LEAK}_row"}]))
    pl.DataFrame({LEAK: [f"{LEAK}_row"]}).write_parquet(folder / "secret.parquet")
    (folder / f"{LEAK}.txt").write_text("listed only by a glob")
    return {
        "dir": folder,
        "csv": folder / "secret.csv",
        "json": folder / "secret.json",
        "parquet": folder / "secret.parquet",
    }


FILE_ESCAPES = [
    "SELECT * FROM read_csv('{csv}')",
    "SELECT * FROM '{csv}'",  # replacement scan
    "SELECT * FROM glob('{dir}/**')",
    "SELECT content FROM read_text('{csv}')",
    "SELECT content FROM read_blob('{csv}')",
    "SELECT * FROM read_json('{json}')",
    "SELECT * FROM read_parquet('{parquet}')",
    "SELECT * FROM '{parquet}'",
    "SELECT * FROM parquet_metadata('{parquet}')",
    "SELECT * FROM sniff_csv('{csv}')",
    "SELECT * FROM query('SELECT * FROM read_csv(''{csv}'')')",
    "WITH t AS (SELECT * FROM read_csv('{csv}')) SELECT * FROM t",
    "SELECT * FROM read_csv('{outputs}/{up}')",  # from an allowed folder up and out
]


def _escape(template: str, files: dict[str, Path], root: Path) -> str:
    outputs = _output_files(root)[0].parent
    return template.format(**files, outputs=outputs, up=os.path.relpath(files["csv"], outputs))


@pytest.mark.parametrize("template", FILE_ESCAPES)
def test_local_file_escapes_are_refused(
    workspace: Path, outside_files: dict[str, Path], capsys: pytest.CaptureFixture[str], template: str
) -> None:
    sql = _escape(template, outside_files, workspace)
    # the escape is real: an unconfined DuckDB (no extension installs) returns the private content or name
    plain = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    try:
        assert LEAK in str(plain.sql(sql).fetchall())
    finally:
        plain.close()
    code, out, err = _run(capsys, "sql", "-w", str(workspace), sql)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert LEAK not in err
    with results.connect(workspace) as res, pytest.raises(StoreError) as caught:
        res.query(sql)
    assert LEAK not in str(caught.value)


@pytest.mark.parametrize("sql", ["SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM glob('/root/**')"])
def test_the_reported_escapes_are_refused(workspace: Path, capsys: pytest.CaptureFixture[str], sql: str) -> None:
    code, out, err = _run(capsys, "sql", "-w", str(workspace), sql)
    assert code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1
    assert "file system operations are disabled by configuration" in err
    assert "root:" not in err  # /etc/passwd's first line starts "root:x:0:0"


def test_the_connection_for_user_sql_is_confined(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # URLs and extensions are checked through the settings, never by trying one (no test reaches the network)
    sql = (
        "SELECT current_setting('enable_external_access') AS external_access, "
        "current_setting('autoinstall_known_extensions') AS autoinstall, "
        "current_setting('autoload_known_extensions') AS autoload, "
        "current_setting('lock_configuration') AS locked, current_setting('allowed_paths') AS allowed"
    )
    expected = {
        "external_access": False,
        "autoinstall": False,
        "autoload": False,
        "locked": True,
    }
    outputs = {os.path.abspath(path) for path in _output_files(workspace)}
    assert len(outputs) == 3
    code, out, _ = _run(capsys, "sql", "-w", str(workspace), sql, "--format", "json")
    assert code == 0
    (row,) = json.loads(out)
    assert {key: row[key] for key in expected} == expected
    allowed = {os.path.abspath(path) for path in row["allowed"]}
    database = os.path.abspath(database_path(workspace))
    # the outputs, plus the database file and its write-ahead-log companions that DuckDB allows itself
    assert outputs <= allowed and database in allowed
    assert all(path.startswith(database) for path in allowed - outputs), sorted(allowed - outputs)
    with results.connect(workspace) as res:
        (api_row,) = res.query(sql).to_dicts()
    assert api_row == row
    # locked: DuckDB itself refuses to change the settings back, even past the statement check
    with Store.open(database_path(workspace), read_only=True) as store:
        for statement in ("SET enable_external_access = true", "SET autoload_known_extensions = true"):
            with pytest.raises(duckdb.Error, match="locked"):
                store.connection.execute(statement)
        # nor does it scan the caller's Python variables (an unconfined connection reads this frame's)
        private_frame = pl.DataFrame({LEAK: [1]})
        assert duckdb.connect(":memory:").sql("SELECT * FROM private_frame").columns == private_frame.columns
        with pytest.raises(duckdb.CatalogException, match="private_frame does not exist"):
            store.connection.sql("SELECT * FROM private_frame")


def test_samples_view_reads_the_workspace_outputs_under_confinement(workspace: Path) -> None:
    frame = run_query(
        database_path(workspace),
        "SELECT count(*) AS n, count(DISTINCT model) AS models, min(dataset) AS ds FROM samples",
    )
    assert frame.to_dicts() == [{"n": 3 * N_SAMPLES, "models": 3, "ds": "imagenet_val"}]
    first = _output_files(workspace)[0]  # an output itself is readable: it is what the view reads
    direct = run_query(database_path(workspace), f"SELECT count(*) AS n FROM read_parquet('{first}')")
    assert direct["n"].to_list() == [N_SAMPLES]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 'a'::INTEGER AS x", "Could not convert string 'a' to INT32"),  # fails while executing
        ("SELECT 1 / 'a' AS x", "Could not convert string 'a'"),
        ("SELECT no_such_column FROM models", "no_such_column"),
        ("SELECT error('boom') AS x", "boom"),
        ("SELECT union_value(k := 1) AS u", "cannot convert the result"),  # a type polars cannot hold
    ],
)
def test_execution_errors_are_one_line(
    workspace: Path, capsys: pytest.CaptureFixture[str], sql: str, message: str
) -> None:
    code, out, err = _run(capsys, "sql", "-w", str(workspace), sql)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    with results.connect(workspace) as res, pytest.raises(StoreError, match=re.escape(message)):
        res.query(sql)


def test_queries_starting_with_comments_run_from_the_command_line(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for sql in (
        "-- how many models?\nSELECT count(*) AS n FROM models",
        "-- one\n-- two\n/* three */ SELECT count(*) AS n FROM models -- four",
    ):
        code, out, err = _run(capsys, "sql", "-w", str(workspace), sql, "--format", "csv")
        assert (code, out.splitlines(), err) == (0, ["n", "3"], "")
    code, out, _ = _run(capsys, "sql", "-w", str(workspace), "--format", "csv", "-- plan\nEXPLAIN SELECT 1")
    assert code == 0 and "physical_plan" in out
    code, out, _ = _run(capsys, "sql", "-w", str(workspace), "-- a\nSELECT 7 AS x", "--format", "json")
    assert code == 0 and json.loads(out) == [{"x": 7}]
    # an unknown option is still an error, not a query
    for option, name in (("--fromat", "--fromat"), ("--fromat=csv", "--fromat"), ("-z", "-z")):
        code, out, err = _run(capsys, "sql", "-w", str(workspace), option)
        assert code == 2 and out == "" and err == f"error: No such option: {name} (see `uebench sql --help`)\n"
    code, out, err = _run(capsys, "sql", "-w", str(workspace), "SELECT 1", "SELECT 2")
    assert code == 2 and out == "" and err.startswith("error: uebench sql takes one query argument; also got")


def test_read_only_stores_open_together_share_one_confinement(tmp_path: Path) -> None:
    # DuckDB shares one instance (and its locked settings) between a process's connections to a file
    frames = synthetic_frames(n_models=3, seed=3)
    ids = frames["models"]["model_id"].to_list()
    write_synthetic_outputs(tmp_path, ids[:2], n_samples=50, num_classes=6)
    ingest_frames(database_path(tmp_path), frames)
    count = "SELECT count(DISTINCT model) AS models, count(*) AS n FROM samples"
    with Store.open(database_path(tmp_path), read_only=True) as first:
        (late,) = write_synthetic_outputs(tmp_path, ids[2:], n_samples=50, num_classes=6, seed=1)  # written later
        with Store.open(database_path(tmp_path), read_only=True) as second:
            assert second.query(count).to_dicts() == [{"models": 2, "n": 100}]  # the outputs allowed at first
            with pytest.raises(StoreError, match="disabled by configuration"):
                second.query(f"SELECT * FROM read_parquet('{late}')")
        assert first.query(count).to_dicts() == [{"models": 2, "n": 100}]
    with Store.open(database_path(tmp_path), read_only=True) as fresh:
        assert fresh.query(count).to_dicts() == [{"models": 3, "n": 150}]
