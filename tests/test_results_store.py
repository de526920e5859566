"""results.store: schema creation and migration, idempotent ingestion, the samples view, error messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from synthetic_results import synthetic_frames, write_synthetic_outputs

from results import migrations, schema
from results.store import Store, StoreError, database_path, ingest_frames


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    return synthetic_frames(n_models=3, seed=7)


def _snapshot(store: Store) -> dict[str, pl.DataFrame]:
    return {name: store.table(name) for name in schema.TABLES}


def _sorted(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    return frame.sort(list(schema.PRIMARY_KEYS[table]))


def test_fresh_database_has_the_contract(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.duckdb") as store:
        assert store.schema_version == schema.SCHEMA_VERSION
        for table, columns in migrations.contract_columns().items():
            got = store.query(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [table],
            )["column_name"].to_list()
            assert got == [c.name for c in columns]
    # the DDL's NOT NULL and key columns are what the contract parser reports
    cols = {c.name: c for c in migrations.contract_columns()["selective_metrics"]}
    assert not cols["kappa"].nullable and cols["auroc"].nullable and cols["auroc"].type == "DOUBLE"


def test_ingest_round_trips_and_twice_is_identical(tmp_path: Path, frames: dict[str, pl.DataFrame]) -> None:
    db = tmp_path / "r.duckdb"
    counts = ingest_frames(db, frames)
    assert counts == {name: frame.height for name, frame in frames.items()}
    with Store.open(db, read_only=True) as store:
        first = _snapshot(store)
    ingest_frames(db, frames)
    with Store.open(db, read_only=True) as store:
        second = _snapshot(store)
    for table in schema.TABLES:
        assert_frame_equal(first[table], second[table])
    # contents equal the input rows (the oracle), table by table
    for table in ("selective_metrics", "cood_levels", "hsc_rules", "hsc_calibration"):
        expected = _sorted(frames[table], table)
        got = first[table].select(expected.columns)
        assert_frame_equal(got, expected, check_dtypes=False)


def test_reingest_replaces_by_key_and_keeps_other_rows(tmp_path: Path, frames: dict[str, pl.DataFrame]) -> None:
    db = tmp_path / "r.duckdb"
    ingest_frames(db, frames)
    sel = frames["selective_metrics"]
    changed = sel.head(2).with_columns(pl.lit(0.5).alias("auroc"))
    with Store.open(db) as store:
        assert store.ingest("selective_metrics", changed) == 2
        got = store.table("selective_metrics")
    assert got.height == sel.height
    key = list(schema.PRIMARY_KEYS["selective_metrics"])
    joined = got.join(sel.select([*key, pl.col("auroc").alias("before")]), on=key)
    is_changed = joined.join(changed.select(key).with_columns(pl.lit(True).alias("hit")), on=key, how="left")
    hit = is_changed["hit"].fill_null(False)
    assert (is_changed.filter(hit)["auroc"] == 0.5).all()
    assert_frame_equal(
        is_changed.filter(~hit).select("auroc"),
        is_changed.filter(~hit).select(pl.col("before").alias("auroc")),
    )


@pytest.mark.parametrize("table", sorted(schema.REPLACED_TOGETHER))
def test_reingest_replaces_whole_groups(tmp_path: Path, frames: dict[str, pl.DataFrame], table: str) -> None:
    """A rerun that yields fewer rows for a group (fewer curve points, levels, classes) leaves no stale rows of
    that group, and other groups keep theirs."""
    db = tmp_path / "r.duckdb"
    ingest_frames(db, frames)
    rows = frames[table]
    group = list(schema.REPLACED_TOGETHER[table])
    first = rows.select(group).unique(maintain_order=True).head(1)
    in_first = rows.join(first, on=group, how="semi")
    assert in_first.height >= 2, f"the synthetic {table} needs groups of 2+ rows"
    fewer = in_first.head(1)
    with Store.open(db) as store:
        store.ingest(table, fewer)
        got = store.table(table)
    expected = pl.concat([rows.join(first, on=group, how="anti"), fewer])
    assert got.height == rows.height - in_first.height + 1
    assert_frame_equal(_sorted(got, table), _sorted(expected.select(got.columns), table), check_dtypes=False)


def test_reingest_replaces_the_whole_row(tmp_path: Path) -> None:
    full = pl.DataFrame({"dataset": ["imagenet_val"], "kind": ["id"], "root": ["/data/val"], "n_classes": [1000]})
    with Store.open(tmp_path / "r.duckdb") as store:
        store.ingest("datasets", full)
        store.ingest("datasets", full.select("dataset", "kind"))  # like delete + insert: no stale root
        got = store.table("datasets").row(0, named=True)
    assert got == {
        "dataset": "imagenet_val",
        "kind": "id",
        "root": None,
        "n_samples": None,
        "n_classes": None,
        "manifest_sha256": None,
    }


def test_missing_nullable_columns_become_null(tmp_path: Path) -> None:
    rows = pl.DataFrame({"dataset": ["imagenet_val"], "kind": ["id"]})
    with Store.open(tmp_path / "r.duckdb") as store:
        store.ingest("datasets", rows)
        got = store.table("datasets")
    assert got.height == 1 and got["root"].to_list() == [None] and got["n_classes"].to_list() == [None]


@pytest.mark.parametrize(
    ("table", "rows", "message"),
    [
        (
            "datasets",
            pl.DataFrame({"dataset": ["a"], "kind": ["id"], "colour": ["red"]}),
            "no column(s) colour",
        ),
        ("datasets", pl.DataFrame({"dataset": ["a"]}), "lack the required column(s) kind"),
        ("datasets", pl.DataFrame({"dataset": ["a", "a"], "kind": ["id", "ood"]}), "repeat the natural key"),
        ("datasets", pl.DataFrame({"dataset": [None], "kind": ["id"]}), "NULL key column(s) dataset"),
        ("no_such_table", pl.DataFrame({"a": [1]}), "unknown table 'no_such_table'"),
        (
            "datasets",
            pl.DataFrame({"dataset": ["a"], "kind": ["id"], "n_classes": ["many"]}),
            "cannot ingest",
        ),
    ],
)
def test_bad_rows_give_one_line_errors(tmp_path: Path, table: str, rows: pl.DataFrame, message: str) -> None:
    with Store.open(tmp_path / "r.duckdb") as store:
        with pytest.raises(StoreError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
            store.ingest(table, rows)
        assert "\n" not in str(info.value)
        assert store.table("datasets").height == 0


def test_ingest_frames_is_all_or_nothing(tmp_path: Path, frames: dict[str, pl.DataFrame]) -> None:
    db = tmp_path / "r.duckdb"
    bad = {
        "models": frames["models"],
        "datasets": pl.DataFrame({"dataset": ["x"], "kind": ["id"], "oops": [1]}),
    }
    with pytest.raises(StoreError, match="oops"):
        ingest_frames(db, bad)
    with Store.open(db, read_only=True) as store:
        assert store.table("models").height == 0


def test_nested_ingests_join_one_transaction(tmp_path: Path, frames: dict[str, pl.DataFrame]) -> None:
    """Several ingest_frames inside store.transaction(): all committed together, or all rolled back when a later
    one fails (a BEGIN issued inside the open transaction would abort it and fail the very first ingest)."""
    db = tmp_path / "r.duckdb"
    models = frames["models"]
    one, rest = models.head(1), models.tail(models.height - 1)
    with Store.open(db) as store:
        with store.transaction():
            store.ingest_frames({"models": one})
            store.ingest_frames({"models": rest})
            assert store.table("models").height == models.height  # visible inside the transaction
        assert store.table("models").height == models.height
        with pytest.raises(StoreError, match="oops"), store.transaction():
            store.ingest_frames({"models": one.with_columns(pl.lit("changed").alias("name"))})
            store.ingest_frames({"datasets": pl.DataFrame({"dataset": ["x"], "kind": ["id"], "oops": [1]})})
        assert _sorted(store.table("models"), "models")["name"].to_list() == _sorted(models, "models")["name"].to_list()
        with store.transaction():  # the store is usable after the rollback
            store.ingest("datasets", pl.DataFrame({"dataset": ["x"], "kind": ["id"]}))
    with Store.open(db, read_only=True) as store:
        assert store.table("datasets")["dataset"].to_list() == ["x"]


def test_read_only_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no results database at"):
        Store.open(tmp_path / "missing.duckdb", read_only=True)
    db = tmp_path / "r.duckdb"
    Store.open(db).close()
    with Store.open(db, read_only=True) as store, pytest.raises(StoreError, match="read-only"):
        store.ingest("datasets", pl.DataFrame({"dataset": ["a"], "kind": ["id"]}))


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    Store.open(db).close()
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO schema_version VALUES (?, now()::TIMESTAMP)", [schema.SCHEMA_VERSION + 1])
    con.close()
    for read_only in (False, True):
        with pytest.raises(StoreError, match=f"schema version {schema.SCHEMA_VERSION + 1}, newer than") as info:
            Store.open(db, read_only=read_only)
        assert "\n" not in str(info.value)


def _version0_database(path: Path) -> None:
    """A database written before versioning: no schema_version table, an older models table (fewer columns,
    no primary key) and an older selective_metrics (fewer columns)."""
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE models (model_id VARCHAR NOT NULL, spec VARCHAR NOT NULL, source VARCHAR NOT NULL, "
        "name VARCHAR NOT NULL, pretrained BOOLEAN NOT NULL, params BIGINT)"
    )
    con.execute(
        "INSERT INTO models VALUES ('timm-resnet50.a1_in1k', 'timm:resnet50.a1_in1k', 'timm', 'resnet50', "
        "true, 25557032), ('timm-vit_tiny', 'timm:vit_tiny', 'timm', 'vit_tiny', false, 5717416)"
    )
    con.execute(
        "CREATE TABLE selective_metrics (model_id VARCHAR NOT NULL, kappa VARCHAR NOT NULL, "
        "temperature_scaled BOOLEAN NOT NULL, subset VARCHAR NOT NULL, n BIGINT NOT NULL, accuracy DOUBLE, "
        "auroc DOUBLE, PRIMARY KEY (model_id, kappa, temperature_scaled, subset))"
    )
    con.execute("INSERT INTO selective_metrics VALUES ('timm-resnet50.a1_in1k', 'msp', false, 'all', 50000, 0.8, 0.86)")
    con.close()


def test_migration_from_version_0_preserves_data(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    _version0_database(db)
    with pytest.raises(StoreError, match="schema version 0, older than"):
        Store.open(db, read_only=True)
    with Store.open(db) as store:
        assert store.schema_version == schema.SCHEMA_VERSION
        models = store.table("models")
        sel = store.table("selective_metrics")
        assert set(schema.TABLES) <= set(store.tables())
    assert models["model_id"].to_list() == ["timm-resnet50.a1_in1k", "timm-vit_tiny"]
    assert models["params"].to_list() == [25557032, 5717416]
    assert set(models.columns) == {c.name for c in migrations.contract_columns()["models"]}
    assert models["input_size"].to_list() == [None, None]
    assert sel.row(0, named=True)["auroc"] == 0.86 and sel.row(0, named=True)["aurc"] is None
    # the migrated database takes new rows with the new columns, and replaces by key even without a PK
    with Store.open(db) as store:
        store.ingest("selective_metrics", sel.with_columns(pl.lit(0.07).alias("aurc")))
        assert store.table("selective_metrics")["aurc"].to_list() == [0.07]
        for _ in range(2):
            store.ingest("models", models.head(1).with_columns(pl.lit(224).alias("input_size")))
        got = store.table("models")
    assert got["model_id"].to_list() == ["timm-resnet50.a1_in1k", "timm-vit_tiny"]
    assert got["input_size"].to_list() == [224, None]


def test_a_second_numbered_migration_runs_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frames: dict[str, pl.DataFrame]
) -> None:
    db = tmp_path / "r.duckdb"
    ingest_frames(db, {"models": frames["models"]})
    calls = []

    def v2(con: duckdb.DuckDBPyConnection) -> None:
        calls.append(2)
        con.execute("UPDATE models SET source = upper(source)")

    nxt = schema.SCHEMA_VERSION + 1  # the next numbered migration after the real ones
    monkeypatch.setattr(schema, "SCHEMA_VERSION", nxt)
    monkeypatch.setitem(migrations.MIGRATIONS, nxt, v2)
    for _ in range(2):
        with Store.open(db) as store:
            assert store.schema_version == nxt
            assert store.table("models")["source"].unique().to_list() == ["TIMM"]
            assert store.table("models").height == frames["models"].height
    assert calls == [2]
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT version FROM schema_version ORDER BY version")["version"].to_list() == list(
            range(1, nxt + 1)
        )


def _version1_database(path: Path) -> None:
    """A version-1 database (schema_version holds 1) with the version-1 HSC layout: the risk kind in ``risk``,
    the numeric risk of a curve point in ``value``."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
    con.execute("INSERT INTO schema_version VALUES (1, TIMESTAMP '2024-01-01 00:00:00')")
    con.execute(
        "CREATE TABLE hsc_rules (model_id VARCHAR NOT NULL, rule VARCHAR NOT NULL, "
        "temperature_scaled BOOLEAN NOT NULL, risk VARCHAR NOT NULL, haurc DOUBLE, gain DOUBLE, grid INTEGER, "
        "hierarchy_id VARCHAR, PRIMARY KEY (model_id, rule, temperature_scaled, risk))"
    )
    con.execute(
        "CREATE TABLE hsc_curves (model_id VARCHAR NOT NULL, rule VARCHAR NOT NULL, "
        "temperature_scaled BOOLEAN NOT NULL, risk VARCHAR NOT NULL, point INTEGER NOT NULL, theta DOUBLE, "
        "coverage DOUBLE, value DOUBLE, PRIMARY KEY (model_id, rule, temperature_scaled, risk, point))"
    )
    con.executemany("INSERT INTO hsc_rules VALUES (?, ?, ?, ?, ?, ?, ?, ?)", V1_HSC_RULES)
    con.executemany("INSERT INTO hsc_curves VALUES (?, ?, ?, ?, ?, ?, ?, ?)", V1_HSC_CURVES)
    con.close()


# (model_id, rule, temperature_scaled, risk kind, haurc, gain, grid, hierarchy_id)
V1_HSC_RULES = [
    ("m-a", "selective", False, "01", 0.2, 0.0, None, "wn"),
    ("m-a", "climbing", False, "01", 0.15, 25.0, None, "wn"),
    ("m-a", "climbing", False, "severity", 0.1, 12.5, 4, "wn"),
    ("m-b", "climbing", True, "01", 0.3, -5.0, None, None),
]
# (model_id, rule, temperature_scaled, risk kind, point, theta, coverage, numeric risk)
V1_HSC_CURVES = [
    ("m-a", "climbing", False, "01", 0, 0.0, 1.0, 0.25),
    ("m-a", "climbing", False, "01", 1, 1.0, 0.4, 0.05),
    ("m-a", "climbing", False, "severity", 0, 0.0, 1.0, 0.125),
    ("m-b", "climbing", True, "01", 0, 0.5, 0.75, None),
]


def test_migration_from_version_1_renames_the_hsc_risk_columns(tmp_path: Path) -> None:
    db = tmp_path / "v1.duckdb"
    _version1_database(db)
    with pytest.raises(StoreError, match="schema version 1, older than"):
        Store.open(db, read_only=True)
    with Store.open(db) as store:
        assert store.schema_version == schema.SCHEMA_VERSION
        rules = store.query(
            "SELECT model_id, rule, temperature_scaled, risk_type, haurc, gain, grid, hierarchy_id FROM hsc_rules"
        )
        curves = store.query(
            "SELECT model_id, rule, temperature_scaled, risk_type, point, theta, coverage, risk FROM hsc_curves"
        )
        columns = migrations.existing_columns(store.connection)
    assert sorted(rules.rows(), key=str) == sorted(V1_HSC_RULES, key=str)
    assert sorted(curves.rows(), key=str) == sorted(V1_HSC_CURVES, key=str)
    for table in ("hsc_rules", "hsc_curves"):
        expected = {c.name: c.type for c in migrations.contract_columns()[table]}
        assert columns[table] == expected
    assert columns["hsc_curves"]["risk"] == "DOUBLE" and "value" not in columns["hsc_curves"]
    # the migrated tables are keyed by risk_type: re-ingesting a curve replaces it, never duplicates its points
    with Store.open(db) as store:
        assert store._primary_key("hsc_curves") == schema.PRIMARY_KEYS["hsc_curves"]
        store.ingest(
            "hsc_curves",
            pl.DataFrame(
                {
                    "model_id": ["m-a"],
                    "rule": ["climbing"],
                    "temperature_scaled": [False],
                    "risk_type": ["01"],
                    "point": [1],
                    "risk": [0.06],
                }
            ),
        )
        got = store.query("SELECT point, risk FROM hsc_curves WHERE model_id = 'm-a' AND risk_type = '01'")
        assert store.schema_version == schema.SCHEMA_VERSION
    assert sorted(got.rows()) == [(1, 0.06)]  # one curve's points are replaced together (REPLACED_TOGETHER)


def test_samples_view_over_parquet_outputs(tmp_path: Path) -> None:
    db = database_path(tmp_path)
    with Store.open(db) as store:
        empty = store.table("samples")
        assert empty.height == 0 and {"sample_id", "label", "pred", "msp", "model", "dataset"} <= set(empty.columns)
    paths = write_synthetic_outputs(tmp_path, ["m-a", "m-b"], n_samples=300, num_classes=5, seed=1)
    with Store.open(db, read_only=True) as store:
        counts = store.query("SELECT model, dataset, count(*) AS n FROM samples GROUP BY ALL ORDER BY model")
        acc = store.query("SELECT avg(CAST(pred = label AS DOUBLE)) AS a FROM samples WHERE model = 'm-b'")["a"][0]
    assert counts["model"].to_list() == ["m-a", "m-b"]
    assert counts["n"].to_list() == [300, 300]
    table = pq.read_table(paths[1])
    expected = (table.column("pred").to_numpy() == table.column("label").to_numpy()).mean()
    assert acc == pytest.approx(expected)


def test_second_writer_process_gets_a_one_line_error(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    code = (
        "import sys\nfrom results.store import Store, StoreError\n"
        "try:\n    Store.open(sys.argv[1])\nexcept StoreError as e:\n    print(e); sys.exit(3)\n"
    )
    with Store.open(db):
        proc = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("cannot open the results database") and proc.stdout.count("\n") == 1
