"""`uebench run` as a process: exit codes, the summary, the log file, Ctrl-C, a second run on a busy workspace,
and a driver killed with SIGKILL (oracles: the process's exit code and output, the ``runs`` table, the files
left in the workspace, and a rerun that completes what the interrupted run left)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from folders import imagenet_folder

from pipelines.data.datasets import imagenet1k_wnids
from results.store import Store, database_path

WNIDS = imagenet1k_wnids()[:4]
MODELS = ("timm:test_vit@random", "timm:test_convnext@random", "timm:test_efficientnet@random")


def _images(root: Path, per_class: int) -> Path:
    return imagenet_folder(root, WNIDS, per_class)


def _args(root: Path, workspace: Path, models=MODELS) -> list[str]:
    args = [sys.executable, "-m", "pipelines.cli", "run", "--id", str(root), "-w", str(workspace), "--shards", "4"]
    for spec in models:
        args += ["--model", spec]
    return [*args, "--analysis", "selective"]


def _runs(workspace: Path) -> list[dict]:
    with Store.open(database_path(workspace), read_only=True, samples=False) as store:
        return list(store.query("SELECT * FROM runs ORDER BY started_at").iter_rows(named=True))


def _temp_files(workspace: Path) -> list[Path]:
    return [p for p in (workspace / "outputs").rglob("*") if p.is_file() and not p.name.startswith("part-")]


@contextmanager
def _running(root: Path, workspace: Path, log: Path, timeout: float = 120) -> Iterator[subprocess.Popen]:
    """A ``uebench run`` process, yielded once its log shows the inference pipeline started (Ray up, outputs
    planned); killed on the way out if it is still alive."""
    proc = subprocess.Popen(_args(root, workspace), stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not any("inference " in p.read_text() for p in (workspace / "logs").glob("*.log")):
            assert proc.poll() is None, "the run ended before its inference started"
            assert time.monotonic() < deadline, "the run never started its inference"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_a_run_with_a_failing_model_is_partial_prints_its_summary_and_logs(tmp_path):
    root = _images(tmp_path / "val", per_class=3)
    # pretrained weights cannot be fetched offline: that model fails alone, the other's results are stored
    result = subprocess.run(
        _args(root, tmp_path / "ws", ("timm:test_vit@random", "timm:test_vit.r160_in1k")),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert "selective prediction on imagenet-val" in result.stdout  # the summary table
    assert "timm-test_vit-random" in result.stdout and "Traceback" not in result.stderr
    (run,) = _runs(tmp_path / "ws")
    assert run["status"] == "partial" and "timm-test_vit.r160_in1k" in run["error"]
    log = (tmp_path / "ws" / "logs" / f"{run['run_id']}.log").read_text()
    assert "failed timm-test_vit.r160_in1k" in log and f"run {run['run_id']}: partial" in log


def test_ctrl_c_exits_130_records_the_run_and_the_rerun_completes(tmp_path):
    root = _images(tmp_path / "val", per_class=40)
    workspace = tmp_path / "ws"
    with _running(root, workspace, tmp_path / "first.txt") as proc:
        busy = subprocess.run(_args(root, workspace), capture_output=True, text=True, timeout=120)
        assert busy.returncode == 2 and busy.stderr.count("\n") == 1, busy.stderr
        assert busy.stderr.startswith("error: workspace") and "in use" in busy.stderr
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    output = (tmp_path / "first.txt").read_text()
    assert code == 130, output[-3000:]
    assert "Traceback" not in output and "error: interrupted" in output
    (run,) = _runs(workspace)
    assert run["status"] == "interrupted" and run["finished_at"] is not None
    assert not _temp_files(workspace)  # writers aborted: only committed shards remain
    assert _lock_is_free(workspace)
    again = subprocess.run(_args(root, workspace), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    with Store.open(database_path(workspace), read_only=True, samples=False) as store:
        counts = store.query("SELECT model_id, sum(n_samples) AS n FROM run_tasks WHERE run_id = "
                             f"'{_runs(workspace)[-1]['run_id']}' GROUP BY model_id")
    assert sorted(counts["n"].to_list()) == [len(WNIDS) * 40] * len(MODELS)  # every image, once per model


def _lock_is_free(workspace: Path) -> bool:
    from pipelines.engine.lifecycle import WorkspaceLock

    return WorkspaceLock.holder(workspace) is None


def test_a_killed_driver_is_marked_interrupted_and_the_next_run_removes_its_temp_files(tmp_path):
    root = _images(tmp_path / "val", per_class=40)
    workspace = tmp_path / "ws"
    with _running(root, workspace, tmp_path / "first.txt") as proc:
        # A shard's temporary file lives only while the driver writes it (milliseconds at this size), so the
        # driver is frozen for each look: what it shows is still there when the SIGKILL lands. Workers never
        # write to the workspace, so a stopped driver freezes the folder.
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            os.kill(proc.pid, signal.SIGSTOP)
            if _temp_files(workspace):  # a shard being written
                break
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert _temp_files(workspace), "the driver finished or stalled before it was seen writing a shard"
    (run,) = _runs(workspace)
    assert run["status"] == "running"  # what a killed driver leaves behind
    sql = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "sql", "-w", str(workspace), "SELECT status FROM runs"],
        capture_output=True, text=True, timeout=120,
    )
    assert sql.returncode == 0, sql.stderr
    assert "interrupted" in sql.stdout + sql.stderr
    assert _runs(workspace)[0]["status"] == "interrupted"
    again = subprocess.run(_args(root, workspace), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert not _temp_files(workspace)


def test_sigterm_is_an_interruption_too(tmp_path):
    """A cluster scheduler (Slurm, Kubernetes) stops a job with SIGTERM: the same as Ctrl-C."""
    root = _images(tmp_path / "val", per_class=40)
    workspace = tmp_path / "ws"
    with _running(root, workspace, tmp_path / "first.txt") as proc:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 130, (tmp_path / "first.txt").read_text()[-3000:]
    assert _runs(workspace)[0]["status"] == "interrupted"
