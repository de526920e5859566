"""The driver: inference over (models × datasets), then the analyses, then ingestion into DuckDB.

Only this process opens the results database (DuckDB allows one writer); Ray workers write Parquet. Every
table is ingested idempotently per natural key, so rerunning the same run over the same outputs leaves the
database unchanged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipelines.data.datasets import ImageDataset, ood_manifest_path
from pipelines.engine.inference import InferenceOptions, TaskResult, cluster_gpus, init_ray, run_inference
from pipelines.engine.provenance import code_version, device_description, library_versions
from pipelines.errors import UserError
from pipelines.zoo import ModelSpec

DB_NAME = "uebench.duckdb"

# An analysis gets the run context and returns {table name: rows} to ingest.
Analysis = Callable[["RunContext"], dict[str, pl.DataFrame]]


class ModelAnalysisFailed(UserWarning):
    """An analysis failed for one model (the message names it); its other models' rows are still ingested and
    the run is marked ``partial``."""


@dataclass
class RunContext:
    """What the analyses see: the workspace, the models that produced outputs, the datasets, the options."""

    workspace: Path
    run_id: str
    models: list[ModelSpec]
    datasets: list[ImageDataset]
    options: dict[str, Any] = field(default_factory=dict)
    console: Console = field(default_factory=Console)
    on_model_done: Callable[[str], None] | None = None  # progress: an analysis finished this model

    def id_datasets(self) -> list[ImageDataset]:
        return [d for d in self.datasets if d.kind == "id"]

    def ood_datasets(self) -> list[ImageDataset]:
        return [d for d in self.datasets if d.kind == "ood"]


def ensure_workspace(workspace: Path) -> Path:
    """Create the workspace (or check it is writable); one-line UserError otherwise."""
    workspace = Path(workspace).expanduser()
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        probe = workspace / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"workspace {workspace} is not writable ({reason}); choose another with --workspace") from None
    return workspace.resolve()


def new_run_id() -> str:
    """Sortable, unique run id: UTC timestamp + random suffix."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _manifest_sha256(workspace: Path, dataset: ImageDataset) -> str | None:
    """SHA-256 of an OOD dataset's estimation/test split manifest (None for ID sets or without a manifest)."""
    path = ood_manifest_path(workspace, dataset.name)
    if dataset.kind != "ood" or not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _frames_from_inference(
    workspace: Path, run_id: str, models: list[ModelSpec], datasets: list[ImageDataset], results: list[TaskResult]
) -> dict[str, pl.DataFrame]:
    info = {r.model_id: r.model_info for r in results if r.model_info}
    model_rows = []
    for ms in models:
        row = ms.row()
        row.update(
            params=info.get(ms.model_id, {}).get("params") or ms.params,
            weights_sha256=info.get(ms.model_id, {}).get("weights_sha256"),
            pretrained_cfg=json.dumps(ms.pretrained_cfg, default=str, sort_keys=True),
            run_id=run_id,
        )
        model_rows.append(row)
    task_rows = [
        {
            "run_id": run_id, "model_id": r.model_id, "dataset": r.dataset, "shard": r.shard, "status": r.status,
            "error": r.error, "n_samples": r.n_samples, "n_bad_files": len(r.bad_files), "seconds": r.seconds,
            "attempts": r.attempts, "output_path": r.output_path,
        }
        for r in results
    ]
    bad = {(r.dataset, sid): err for r in results for sid, err in r.bad_files}
    dataset_rows = [
        {
            "dataset": d.name, "kind": d.kind, "root": str(d.root), "n_samples": len(d),
            "n_classes": len(set(d.labels)), "manifest_sha256": _manifest_sha256(workspace, d),
        }
        for d in datasets
    ]
    frames = {
        "models": pl.DataFrame(model_rows, infer_schema_length=None),
        "run_tasks": pl.DataFrame(task_rows, infer_schema_length=None),
        "datasets": pl.DataFrame(dataset_rows, infer_schema_length=None),
    }
    if bad:
        frames["bad_files"] = pl.DataFrame(
            [{"dataset": d, "sample_id": s, "error": e} for (d, s), e in sorted(bad.items())]
        )
    return frames


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"), console=console, transient=False,
    )


def execute(
    models: list[ModelSpec],
    datasets: list[ImageDataset],
    workspace: Path,
    analyses: list[tuple[str, Analysis]],
    *,
    options: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    inference: InferenceOptions | None = None,
    shard_size: int = 10_000,
    gpus_per_task: float | None = None,
    cpus_per_task: int = 1,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    console: Console | None = None,
) -> RunContext:
    """Run inference for every (model, dataset), then each analysis, ingesting everything; returns the context.

    A model that fails is recorded in ``run_tasks`` (status ``failed``) and left out of the analyses; the run's
    status is ``ok``, ``partial`` (some tasks failed) or ``failed`` (all failed). ``gpus_per_task`` None: one
    GPU per model task when the Ray cluster has GPUs (and ``inference.device`` is not "cpu"), else none.
    """
    from results.store import Store

    console = console or Console(width=None if sys.stdout.isatty() else 160)  # logs and pipes: no truncation
    workspace = ensure_workspace(workspace)
    run_id = new_run_id()
    started = _now()
    inference = inference or InferenceOptions(threads=cpus_per_task)
    with console.status("starting Ray"):
        init_ray(ray_address, num_cpus)
    if gpus_per_task is None:
        gpus_per_task = 1.0 if inference.device != "cpu" and cluster_gpus() > 0 else 0.0
    run_row = {
        "run_id": run_id, "started_at": started, "finished_at": None, "status": "running", "error": None,
        "code_version": code_version(), "torch_version": library_versions()["torch"],
        "timm_version": library_versions()["timm"],
        "device": device_description("cuda" if gpus_per_task > 0 else "cpu"),
        "precision": inference.precision(),
        "config": json.dumps({**(config or {}), "libraries": library_versions()}, default=str, sort_keys=True),
    }
    t0 = time.perf_counter()
    db_path = workspace / DB_NAME
    with Store.open(db_path) as store:
        store.ingest("runs", pl.DataFrame([run_row], infer_schema_length=None))
    with _progress(console) as progress:
        bar = progress.add_task("inference", total=None, note="")
        tasks_done: dict[str, int] = dict.fromkeys((m.model_id for m in models), 0)
        t_inf = time.perf_counter()

        def on_result(result: TaskResult, done: int, total: int, images: int) -> None:
            if result.status == "failed":
                console.print(f"[red]failed[/red] {result.model_id} on {result.dataset}: {result.error}")
            tasks_done[result.model_id] += 1
            elapsed = time.perf_counter() - t_inf
            rate = images / elapsed if elapsed > 0 else 0.0
            eta = elapsed / done * (total - done) if done else 0.0
            finished = sum(count == total // len(models) for count in tasks_done.values())
            note = f"models {finished}/{len(models)} · {rate:.1f} img/s · ETA {eta:.0f} s"
            progress.update(bar, total=total, completed=done, note=note)

        report = run_inference(
            models, datasets, workspace, options=inference, shard_size=shard_size, cpus_per_task=cpus_per_task,
            gpus_per_task=gpus_per_task, on_result=on_result,
        )
    results = report.results
    images = sum(r.n_samples for r in results)
    console.print(
        f"inference: {len(results)} tasks, {images} images through models, {report.decoded} images decoded, "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    failed_models = {r.model_id for r in results if r.status == "failed"}
    context = RunContext(
        workspace=workspace, run_id=run_id, models=[m for m in models if m.model_id not in failed_models],
        datasets=datasets, options=options or {}, console=console,
    )
    frames = _frames_from_inference(workspace, run_id, models, datasets, results)
    with Store.open(db_path) as store:
        for table, frame in frames.items():
            store.ingest(table, frame)
    errors = []
    for name, analysis in analyses:
        t1 = time.perf_counter()
        with _progress(console) as progress, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bar = progress.add_task(f"analysis {name}", total=len(context.models), note="")
            context.on_model_done = lambda model_id, bar=bar, progress=progress: progress.update(
                bar, advance=1, note=model_id
            )
            try:
                produced = analysis(context)
            except Exception as exc:  # one analysis failing must not lose the others or leave the run 'running'
                message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                errors.append(f"{name}: {message}")
                console.print(f"[red]analysis {name} failed:[/red] {message}")
                continue
            finally:
                context.on_model_done = None
        for message in sorted({str(w.message) for w in caught if not issubclass(w.category, ModelAnalysisFailed)}):
            console.print(f"[yellow]note[/yellow] ({name}): {message}")
        for warning in caught:
            if issubclass(warning.category, ModelAnalysisFailed):
                errors.append(f"{name}: {warning.message}")
                console.print(f"[red]analysis {name} failed for[/red] {warning.message}")
        try:
            with Store.open(db_path) as store:
                store.ingest_frames(produced)  # one transaction: all of an analysis's tables or none
        except Exception as exc:
            errors.append(f"{name}: ingest failed: {type(exc).__name__}: {exc}")
            console.print(f"[red]analysis {name}: ingest failed:[/red] {exc}")
            continue
        console.print(f"analysis {name}: {time.perf_counter() - t1:.1f} s")
    status = "ok"
    if failed_models or errors:
        status = "failed" if len(failed_models) == len(models) else "partial"
    failures = [f"{r.model_id}/{r.dataset}: {r.error}" for r in results if r.status == "failed"] + errors
    run_row.update(finished_at=_now(), status=status, error="; ".join(failures) or None)
    with Store.open(db_path) as store:
        store.ingest("runs", pl.DataFrame([run_row], infer_schema_length=None))
    return context
