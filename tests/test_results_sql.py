"""results.sql and ``uebench sql``: read-only enforcement, canned queries, output formats, one-line errors."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from synthetic_results import synthetic_frames, write_synthetic_outputs

from pipelines.cli import main
from results import schema
from results.sql import QueryError, canned_queries, canned_query, check_read_only, render, run_query
from results.store import Store, database_path, ingest_frames


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ws")
    frames = synthetic_frames(n_models=3, seed=3)
    write_synthetic_outputs(root, frames["models"]["model_id"].to_list(), n_samples=400, num_classes=6)
    ingest_frames(database_path(root), frames)
    return root


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
    verb = statement.split()[0]
    if verb in {"DROP", "INSERT", "DELETE", "UPDATE", "CREATE", "COPY"}:
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
    ],
)
def test_reading_statements_pass_the_check(statement: str) -> None:
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
