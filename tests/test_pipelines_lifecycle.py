"""pipelines.engine.lifecycle: the workspace lock (live, killed and housekeeping holders), interrupted runs,
stale temporary files, exit codes; damaged Parquet outputs in ``uebench sql`` / ``report``; the run flags."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from synthetic_results import synthetic_frames, write_synthetic_outputs

from pipelines.cli import main
from pipelines.engine.lifecycle import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    WorkspaceLock,
    exit_code_for,
    mark_interrupted_runs,
    open_workspace,
    remove_stale_temp,
)
from pipelines.errors import UserError
from results.store import DamagedOutputWarning, Store, database_path, ingest_frames, readable_outputs

REPO = Path(__file__).resolve().parents[1]
RUN_ID = "20260102T225107Z-ab12cd"

# acquires the lock of argv[1] for run argv[2], says so, then waits to be killed
_HOLDER = (
    "import sys, time; from pathlib import Path; from pipelines.engine.lifecycle import WorkspaceLock; "
    "lock = WorkspaceLock.acquire(Path(sys.argv[1]), sys.argv[2], 'uebench run'); "
    "print('locked', flush=True); time.sleep(120)"
)


@pytest.fixture
def holder_process(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A separate Python process holding ``tmp_path / 'ws'``'s lock for run RUN_ID; killed at teardown."""
    workspace = tmp_path / "ws"
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(workspace), RUN_ID], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def _runs_db(workspace: Path, statuses: dict[str, str]) -> Path:
    """A results database whose ``runs`` table holds ``run_id -> status`` rows."""
    started = dt.datetime(2026, 1, 2, 22, 51)
    rows = pl.DataFrame(
        {
            "run_id": list(statuses),
            "started_at": [started] * len(statuses),
            "finished_at": [None if s == "running" else started for s in statuses.values()],
            "status": list(statuses.values()),
        }
    )
    db_path = database_path(workspace)
    ingest_frames(db_path, {"runs": rows})
    return db_path


def _runs(db_path: Path) -> dict[str, dict]:
    with Store.open(db_path, read_only=True) as store:
        return {row["run_id"]: row for row in store.table("runs").iter_rows(named=True)}


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _age(path: Path, seconds: float = 3600) -> Path:
    old = time.time() - seconds
    os.utime(path, (old, old))
    return path


# -- the lock --------------------------------------------------------------------------------------------------
def test_a_live_holder_refuses_a_second_run_in_one_line_and_reads_still_work(
    holder_process: subprocess.Popen, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = tmp_path / "ws"
    db_path = _runs_db(workspace, {RUN_ID: "running"})
    with pytest.raises(UserError) as caught:
        WorkspaceLock.acquire(workspace, "20260102T230000Z-ffffff", "uebench run")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"workspace {workspace.absolute()} is in use by run {RUN_ID} (`uebench run`, ")
    assert f"pid {holder_process.pid} on host " in message and " UTC); " in message
    assert message.endswith("wait for it to finish or use another --workspace")
    record = WorkspaceLock.holder(workspace)
    assert record is not None and record["pid"] == holder_process.pid and record["run_id"] == RUN_ID
    # a read-side command works during the run and leaves the live run's row alone
    assert open_workspace(workspace, "uebench sql") == 0
    code, out, _ = _run(capsys, "sql", "-w", str(workspace), "--format", "csv", "SELECT status FROM runs")
    assert code == 0 and out.splitlines() == ["status", "running"]
    assert _runs(db_path)[RUN_ID]["status"] == "running"


def test_a_killed_holders_lock_is_taken_over(holder_process: subprocess.Popen, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    holder_process.send_signal(signal.SIGKILL)
    holder_process.wait(timeout=30)
    assert WorkspaceLock.holder(workspace) is None  # its record is still in the file, but its pid is gone
    with WorkspaceLock.acquire(workspace, "20260102T230000Z-000001", "uebench run") as lock:
        assert lock.held
        record = WorkspaceLock.holder(workspace)
        assert record is not None and record["pid"] == os.getpid() and record["run_id"] == "20260102T230000Z-000001"
        assert set(record) >= {"pid", "host", "run_id", "command", "started_at"}
    assert not lock.held and WorkspaceLock.holder(workspace) is None
    assert WorkspaceLock.path(workspace).read_text() == ""  # released cleanly: empty, not deleted


def test_a_run_waits_out_housekeeping_instead_of_failing(tmp_path: Path) -> None:
    housekeeping = WorkspaceLock._take(tmp_path, None, "uebench sql", housekeeping=True)
    assert housekeeping is not None
    timer = threading.Timer(0.3, housekeeping.release)
    timer.start()
    try:
        with WorkspaceLock.acquire(tmp_path, "20260102T230000Z-000002", "uebench run") as lock:
            assert lock.record["run_id"] == "20260102T230000Z-000002"
            assert open_workspace(tmp_path, "uebench report") == 0  # the run holds it: no housekeeping
    finally:
        timer.join()


# -- interrupted runs and stale temporary files ----------------------------------------------------------------
def test_mark_interrupted_runs(tmp_path: Path) -> None:
    assert mark_interrupted_runs(database_path(tmp_path), by="uebench sql") == 0
    assert not database_path(tmp_path).exists()  # no database: nothing created
    db_path = _runs_db(tmp_path, {"r-running": "running", "r-ok": "ok", "r-partial": "partial"})
    before = _runs(db_path)
    assert mark_interrupted_runs(db_path, by="uebench sql") == 1
    after = _runs(db_path)
    marked = after["r-running"]
    assert marked["status"] == "interrupted" and marked["finished_at"] is not None
    assert marked["error"] == "the driver stopped before the run finished; found by `uebench sql`"
    assert marked["started_at"] == before["r-running"]["started_at"]
    assert after["r-ok"] == before["r-ok"] and after["r-partial"] == before["r-partial"]
    assert mark_interrupted_runs(db_path, by="uebench sql") == 0
    assert exit_code_for("interrupted") == EXIT_INTERRUPTED == 130


def test_remove_stale_temp(tmp_path: Path) -> None:
    folder = tmp_path / "outputs" / "model=m" / "dataset=d"
    folder.mkdir(parents=True)
    keep = [folder / "part-00000.parquet", tmp_path / "reports" / "report.html", tmp_path / "notes.tmp"]
    stale = [
        folder / ".part-00001.parquet.0123456789abcdef0123456789abcdef.tmp",
        tmp_path / "reports" / ".report.html.fedcba9876543210fedcba9876543210.tmp",
        tmp_path / "datasets" / "ood" / ".manifest.csv.k2j3h4g5.tmp",
        tmp_path / "cache" / "ood" / "sig" / ".shard-00000.npy.abcdef.tmp.npy",
        tmp_path / ".write-test-0123456789abcdef",
    ]
    for path in keep + stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        _age(path)
    attempts = tmp_path / ".attempts-k3j4h5"
    (attempts / "sub").mkdir(parents=True)
    (attempts / "sub" / "model-a").write_text("1")
    _age(attempts)
    young = folder / ".part-00002.parquet.00112233445566778899aabbccddeeff.tmp"
    young.write_bytes(b"being written now")
    assert remove_stale_temp(tmp_path) == len(stale) + 1
    assert all(p.exists() for p in keep) and young.exists()
    assert not any(p.exists() for p in stale) and not attempts.exists()
    assert remove_stale_temp(tmp_path, min_age_s=0) == 1 and not young.exists()


def test_sql_on_a_free_workspace_marks_a_dead_run_and_removes_its_temp_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _runs_db(tmp_path, {"r-dead": "running", "r-ok": "ok"})
    leftover = tmp_path / "outputs" / "model=m" / "dataset=d" / ".part-00000.parquet.0a1b2c3d.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    _age(leftover)
    code, out, err = _run(
        capsys, "sql", "-w", str(tmp_path), "--format", "csv", "SELECT run_id, status FROM runs ORDER BY run_id"
    )
    assert code == 0 and out.splitlines() == ["run_id,status", "r-dead,interrupted", "r-ok,ok"]
    assert err.startswith("note: marked 1 run interrupted") and err.count("\n") == 1
    assert not leftover.exists() and WorkspaceLock.holder(tmp_path) is None


def test_exit_codes() -> None:
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED) == (0, 1, 2, 3, 130)
    assert [exit_code_for(s) for s in ("ok", "failed", "partial", "interrupted")] == [0, 1, 3, 130]
    with pytest.raises(ValueError, match="running"):
        exit_code_for("running")


# -- damaged outputs -------------------------------------------------------------------------------------------
def _damaged_workspace(root: Path) -> tuple[Path, Path]:
    """A workspace with results, one good output (300 rows) and one truncated output; (good, bad)."""
    frames = synthetic_frames(n_models=2, seed=4)
    good, bad = write_synthetic_outputs(root, frames["models"]["model_id"].to_list(), n_samples=300, num_classes=6)
    ingest_frames(database_path(root), frames)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    return good, bad


def test_samples_view_skips_a_damaged_output_with_a_warning(tmp_path: Path) -> None:
    good, bad = _damaged_workspace(tmp_path)
    with pytest.warns(DamagedOutputWarning, match=re.escape(str(bad))):
        assert readable_outputs(tmp_path / "outputs") == [good]
    with pytest.warns(DamagedOutputWarning), Store.open(database_path(tmp_path), read_only=True) as store:
        assert store.query("SELECT count(*) AS n FROM samples")["n"][0] == 300
    bad.write_bytes(b"")  # a changed file is checked again, and an empty one is damaged too
    with pytest.warns(DamagedOutputWarning, match="0 bytes"):
        assert readable_outputs(tmp_path / "outputs") == [good]


def test_sql_counts_the_good_output_beside_a_damaged_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, bad = _damaged_workspace(tmp_path)
    code, out, err = _run(capsys, "sql", "-w", str(tmp_path), "--format", "csv", "SELECT count(*) AS n FROM samples")
    assert code == 0 and out.splitlines() == ["n", "300"]
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: skipping damaged output {bad} ")


def test_report_is_written_beside_a_damaged_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _damaged_workspace(tmp_path)
    target = tmp_path / "r"
    code, out, err = _run(capsys, "report", "-w", str(tmp_path), "-o", str(target), "--max-models", "2")
    assert code == 0 and out.strip() == str(target / "index.html") and (target / "index.html").stat().st_size > 0
    # the report reads stored tables only, never the per-sample outputs: a damaged one neither fails nor warns
    assert not [line for line in err.splitlines() if line.startswith("warning: ")]
    assert "Traceback" not in err


# -- run flags -------------------------------------------------------------------------------------------------
def test_run_flags_land_in_the_raw_config(tmp_path: Path) -> None:
    from pipelines.cli.run import config_from_flags
    from pipelines.engine.run_config import parse_config

    for name in ("val", "ood"):
        (tmp_path / name).mkdir()
    raw = config_from_flags(
        {}, ["timm:resnet18"], tmp_path / "val", tmp_path / "ood", None, None,
        per_class=6, n_estimation=3, window=5, levels=4,
    )
    assert raw["datasets"]["imagenet21k"] == {
        "kind": "ood", "root": str(tmp_path / "ood"), "per_class": 6, "n_estimation": 3
    }
    assert "per_class" not in raw["datasets"]["imagenet-val"]
    assert raw["cood"] == {"window": 5, "levels": 4} and "inference" not in raw
    config = parse_config(raw, tmp_path)
    ood = next(d for d in config.datasets if d.kind == "ood")
    assert (ood.per_class, ood.n_estimation, config.analysis.cood_window, config.analysis.cood_levels) == (6, 3, 5, 4)
    # over a config file: flags override its values and keep the rest; the parsed config is not modified
    base = {
        "datasets": {"in21k": {"kind": "ood", "root": "x", "per_class": 200, "n_estimation": 150}},
        "cood": {"window": 1000, "levels": 11},
        "inference": {"batch_size": 64},
    }
    merged = config_from_flags(base, None, None, None, None, None, n_estimation=20, window=10, shards=8)
    assert merged["datasets"]["in21k"] == {"kind": "ood", "root": "x", "per_class": 200, "n_estimation": 20}
    assert merged["cood"] == {"window": 10, "levels": 11}
    assert merged["inference"] == {"batch_size": 64, "shards": 8}
    assert base["datasets"]["in21k"]["n_estimation"] == 150 and base["cood"]["window"] == 1000
    assert "shards" not in base["inference"]
    with pytest.raises(UserError, match="--per-class needs an OOD dataset"):
        config_from_flags({}, ["m"], tmp_path / "val", None, None, None, per_class=6)
