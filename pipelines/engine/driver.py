"""The driver: inference over (models × datasets), then the analyses, then ingestion into DuckDB.

Only this process writes the workspace: the Parquet outputs (streamed to it by the Ray Data pipeline,
pipelines.engine.stream), the database (DuckDB allows one writer) and the run log. It holds the workspace lock
for the whole run (pipelines.engine.lifecycle). Every table is ingested idempotently per natural key, so
rerunning the same run over the same outputs leaves the database unchanged. Progress goes to the console and to
``<workspace>/logs/<run_id>.log``: a line per stage at least every 30 s, whatever the terminal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console

from pipelines.analysis_options import AnalysisOptions
from pipelines.data.datasets import ImageDataset, ood_manifest_path
from pipelines.engine.detectors import DetectorSettings
from pipelines.engine.inference import InferenceOptions, InferenceReport, TaskResult, cluster_gpus, init_ray
from pipelines.engine.lifecycle import WorkspaceLock, interrupted_note, mark_interrupted_runs, remove_stale_temp
from pipelines.engine.provenance import code_version, device_description, library_versions
from pipelines.engine.stream import EngineSettings, Plan, check_feature_storage, run_inference
from pipelines.errors import UserError
from pipelines.zoo import ModelSpec
from pipelines.zoo.metadata import metadata_columns
from results.model_metadata import Overrides
from results.store import database_path

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
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    console: Console = field(default_factory=Console)
    on_model_done: Callable[[str], None] | None = None  # progress: an analysis finished this model
    on_model_tables: Callable[[dict[str, pl.DataFrame]], None] | None = None  # a finished model's rows, to ingest
    status: str = "running"  # ok | partial | failed | interrupted once the run is over
    inference: InferenceReport | None = None

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
    workspace: Path,
    run_id: str,
    models: list[ModelSpec],
    datasets: list[ImageDataset],
    report: InferenceReport,
    overrides: Overrides | None = None,
) -> dict[str, pl.DataFrame]:
    """The ``models``, ``run_tasks``, ``datasets`` (and ``bad_files``) rows of a run's inference; each model row
    carries its training regime (rules, then ``overrides``) and GMACs (pipelines.zoo.metadata)."""
    results = report.results
    reasons = {(m, d, s): why for m, d, s, why in report.recomputed if s >= 0}
    info = {r.model_id: r.model_info for r in results if r.model_info}
    model_rows = []
    for ms in models:
        row = ms.row()
        row.update(
            params=info.get(ms.model_id, {}).get("params") or ms.params,
            weights_sha256=info.get(ms.model_id, {}).get("weights_sha256"),
            pretrained_cfg=json.dumps(ms.pretrained_cfg, default=str, sort_keys=True),
            run_id=run_id,
            **metadata_columns(ms, overrides),
        )
        model_rows.append(row)
    task_rows = [
        {
            "run_id": run_id, "model_id": r.model_id, "dataset": r.dataset, "shard": r.shard, "status": r.status,
            "error": r.error, "n_samples": r.n_samples, "n_bad_files": len(r.bad_files), "seconds": r.seconds,
            "attempts": r.attempts, "output_path": r.output_path,
            "reason": reasons.get((r.model_id, r.dataset, r.shard)),
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


class RunLog:
    """Progress of a run on the console and in ``<workspace>/logs/<run_id>.log``.

    :meth:`progress` prints a stage's line when it starts, ends, or 10 s after its last line; a heartbeat thread
    repeats the current stage every 30 s when nothing arrives (model actors still loading, a slow block), so a
    log file always shows the run is alive.
    """

    EVERY_S = 10.0
    HEARTBEAT_S = 30.0

    def __init__(self, path: Path, console: Console) -> None:
        self.console = console
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", buffering=1)
        self._lock = threading.Lock()
        self._stage: tuple[str, int, int, float] | None = None
        self._last_line = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True)
        self._thread.start()

    def line(self, message: str, style: str | None = None) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
        with self._lock:
            self._file.write(f"{stamp} {message}\n")
            self.console.print(f"[{style}]{message}[/{style}]" if style else message, highlight=False)
            self._last_line = time.monotonic()

    def progress(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        previous = self._stage
        started = previous[3] if previous and previous[0] == stage else now
        self._stage = (stage, done, total, started)
        if previous is None or previous[0] != stage or done >= total or now - self._last_line >= self.EVERY_S:
            self.line(self._describe(stage, done, total, started, now))

    @staticmethod
    def _describe(stage: str, done: int, total: int, started: float, now: float) -> str:
        elapsed = now - started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f" · ETA {(total - done) / rate:.0f} s" if rate > 0 and done < total else ""
        return f"{stage}: {done}/{total} · {rate:.1f}/s · {elapsed:.0f} s{eta}"

    def _heartbeat(self) -> None:
        while not self._stop.wait(1.0):
            stage = self._stage
            if stage and stage[1] < stage[2] and time.monotonic() - self._last_line >= self.HEARTBEAT_S:
                self.line(self._describe(*stage, time.monotonic()) + " (working)")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._file.close()


def analyse_and_ingest(name: str, analysis: Analysis, context: RunContext, db_path: Path, log: RunLog) -> list[str]:
    """Run one analysis over ``context.models`` and ingest its rows into ``db_path``; the run's error lines.

    All of the analysis's rows go in one transaction (all or none), each model's ingested as that model finishes
    (``RunContext.on_model_tables``), so the driver holds one model's rows at a time, not every model's. A failing
    model fails alone (its error is returned); a failing analysis or ingest is returned too, never raised.
    """
    from results.store import Store

    t1 = time.perf_counter()
    done = [0]
    errors: list[str] = []
    failure: tuple[str, str] | None = None  # (error, log line)
    log.progress(f"analysis {name}", 0, len(context.models))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def model_done(model_id: str) -> None:
            done[0] += 1
            log.progress(f"analysis {name} (last: {model_id})", done[0], len(context.models))

        ingest_errors: list[str] = []
        context.on_model_done = model_done
        try:
            with Store.open(db_path, samples=False) as store, store.transaction():

                def ingest(tables: dict[str, pl.DataFrame]) -> None:
                    try:
                        store.ingest_frames(tables)
                    except Exception as exc:
                        ingest_errors.append(f"{type(exc).__name__}: {exc}")
                        raise

                context.on_model_tables = ingest
                ingest(analysis(context))  # rows an analysis returns besides (none from map_models)
        except Exception as exc:  # one analysis failing must not lose the others or leave the run 'running'
            if ingest_errors:
                failure = (f"ingest failed: {ingest_errors[0]}", f"analysis {name}: ingest failed: {exc}")
            else:
                message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                failure = (message, f"analysis {name} failed: {message}")
        finally:
            context.on_model_done = context.on_model_tables = None
    for message in sorted({str(w.message) for w in caught if not issubclass(w.category, ModelAnalysisFailed)}):
        log.line(f"note ({name}): {message}", style="yellow")
    for warning in caught:
        if issubclass(warning.category, ModelAnalysisFailed):
            errors.append(f"{name}: {warning.message}")
            log.line(f"analysis {name} failed for {warning.message}", style="red")
    if failure is not None:
        errors.append(f"{name}: {failure[0]}")
        log.line(failure[1], style="red")
    else:
        log.line(f"analysis {name}: {time.perf_counter() - t1:.1f} s")
    return errors


def execute(
    models: list[ModelSpec],
    datasets: list[ImageDataset],
    workspace: Path,
    analyses: list[tuple[str, Analysis]],
    *,
    options: AnalysisOptions | None = None,
    config: dict[str, Any] | None = None,
    inference: InferenceOptions | None = None,
    settings: EngineSettings | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    console: Console | None = None,
    command: str = "uebench run",
    metadata_overrides: Overrides | None = None,
    detectors: DetectorSettings | None = None,
    fit_set: ImageDataset | None = None,
) -> RunContext:
    """Run inference for every (model, dataset), then each analysis, ingesting everything; returns the context.

    Holds the workspace lock throughout (a second run gets a one-line UserError naming the holder); marks runs a
    killed driver left ``running`` as ``interrupted`` and removes their temporary files first. A model that fails
    is recorded in ``run_tasks`` (status ``failed``) and left out of the analyses; the run's status is ``ok``,
    ``partial`` (some tasks or analyses failed) or ``failed`` (every model failed), set on the returned context.
    Ctrl-C marks the run ``interrupted``, disconnects from Ray (which cancels this driver's Ray work) and re-raises
    KeyboardInterrupt. ``settings.gpus_per_actor`` None-like 0 with GPUs in the cluster: one GPU per model actor
    unless ``inference.device`` is "cpu". ``metadata_overrides``: the user's model metadata override file
    (``models`` regime columns; docs/models.md). ``detectors`` with its ``fit_set``: the detectors are fitted on
    the fit set first (pipelines.engine.detectors; a model whose fit fails is failed for the run) and scored as
    κ columns ``det_<name>`` during inference. ``inference.keep_features``: the kept features' size on disk is
    checked against ``inference.feature_storage_bytes`` before anything runs (one-line UserError).
    """
    from results.store import Store

    console = console or Console(width=None if sys.stdout.isatty() else 160)  # logs and pipes: no truncation
    workspace = ensure_workspace(workspace)
    run_id = new_run_id()
    inference = inference or InferenceOptions()
    settings = settings or EngineSettings(cpus_per_actor=inference.threads)
    db_path = database_path(workspace)
    with WorkspaceLock.acquire(workspace, run_id, command):
        marked = mark_interrupted_runs(db_path, by=command)
        if marked:
            console.print(interrupted_note(marked))
        remove_stale_temp(workspace, min_age_s=0)  # the lock is ours: every temporary file is a dead run's
        log = RunLog(workspace / "logs" / f"{run_id}.log", console)
        run_row: dict[str, Any] = {}
        options = AnalysisOptions() if options is None else options
        try:
            return _execute_locked(
                models, datasets, workspace, analyses, run_id, run_row, log, options, config or {},
                inference, settings, ray_address, num_cpus, metadata_overrides, detectors, fit_set,
            )
        except KeyboardInterrupt:
            if run_row:
                run_row.update(finished_at=_now(), status="interrupted", error="interrupted (Ctrl-C)")
                with Store.open(db_path, samples=False) as store:
                    store.ingest("runs", pl.DataFrame([run_row], infer_schema_length=None))
            log.line(f"run {run_id} interrupted; stopping the Ray work", style="yellow")
            _disconnect_ray()
            raise
        except BaseException as exc:
            if run_row:
                run_row.update(finished_at=_now(), status="failed", error=f"{type(exc).__name__}: {exc}")
                with Store.open(db_path, samples=False) as store:
                    store.ingest("runs", pl.DataFrame([run_row], infer_schema_length=None))
            raise
        finally:
            log.close()


def _fit_detectors(
    models: list[ModelSpec], fit_set: ImageDataset, workspace: Path, inference: InferenceOptions,
    detectors: DetectorSettings, log: RunLog, settings: EngineSettings,
) -> tuple[list[ModelSpec], dict[int, Any], list[TaskResult], InferenceOptions]:
    """The fit phase (pipelines.engine.detectors.fit_all: one Ray task per model to fit, with the model actors'
    resources from ``settings``): the models whose detectors are fitted, their statistics by index into that
    list (each a mapping or, with Ray up, its object reference: FitReport.stats), a failed task (dataset = the fit
    set, shard -1) per other model, and the inference options carrying the detectors and the fit set's fingerprint."""
    from pipelines.engine.detectors import fit_all, fit_set_sha256

    sha = fit_set_sha256(fit_set)
    log.line(f"detectors: fitting {', '.join(detectors.names)} on {fit_set.name} ({len(fit_set)} images, "
             f"fingerprint {sha[:12]})")
    fitted = fit_all(models, fit_set, workspace, inference, detectors, sha, on_line=log.line, engine=settings,
                     on_progress=log.progress)
    failures = [
        TaskResult(models[k].model_id, fit_set.name, -1, "failed", error=error, attempts=0)
        for k, error in sorted(fitted.errors.items())
    ]
    keep = [k for k in range(len(models)) if k in fitted.stats]
    options = dataclasses.replace(
        inference, detectors=detectors.names, detector_fit_sha256=sha,
        detector_params=json.dumps(detectors.params, sort_keys=True) if detectors.params else "",
    )
    return [models[k] for k in keep], {i: fitted.stats[k] for i, k in enumerate(keep)}, failures, options


def _disconnect_ray() -> None:
    """Disconnect this driver from Ray: its tasks and actors are cancelled (they belong to this job)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _execute_locked(
    models: list[ModelSpec],
    datasets: list[ImageDataset],
    workspace: Path,
    analyses: list[tuple[str, Analysis]],
    run_id: str,
    run_row: dict[str, Any],
    log: RunLog,
    options: AnalysisOptions,
    config: dict[str, Any],
    inference: InferenceOptions,
    settings: EngineSettings,
    ray_address: str | None,
    num_cpus: int | None,
    metadata_overrides: Overrides | None = None,
    detectors: DetectorSettings | None = None,
    fit_set: ImageDataset | None = None,
) -> RunContext:
    from results.store import Store

    console = log.console
    started = _now()
    log.line(f"run {run_id}: {len(models)} models × {len(datasets)} datasets; log {log._file.name}")
    if inference.keep_features:  # before any work: the kept features must fit their budget on disk
        need = check_feature_storage(models, datasets, inference.feature_storage_bytes)
        log.line(f"keeping features: {need / 2**30:.2f} GiB of float16 at most, under {workspace / 'features'}")
    log.line("starting Ray" if not ray_address else f"connecting to Ray at {ray_address}")
    init_ray(ray_address, num_cpus)
    if settings.gpus_per_actor == 0 and inference.device != "cpu" and cluster_gpus() > 0:
        settings = dataclasses.replace(settings, gpus_per_actor=1.0)
    run_row.update({
        "run_id": run_id, "started_at": started, "finished_at": None, "status": "running", "error": None,
        "code_version": code_version(), "torch_version": library_versions()["torch"],
        "timm_version": library_versions()["timm"],
        "device": device_description("cuda" if settings.gpus_per_actor > 0 else "cpu"),
        "precision": inference.precision(),
        "config": json.dumps(
            {**config, "engine": dataclasses.asdict(settings), "analysis": dataclasses.asdict(options),
             "libraries": library_versions()},
            default=str, sort_keys=True,
        ),
    })
    t0 = time.perf_counter()
    db_path = database_path(workspace)
    with Store.open(db_path, samples=False) as store:
        store.ingest("runs", pl.DataFrame([run_row], infer_schema_length=None))

    def on_plan(plan: Plan) -> None:
        reused = sum(r.status == "reused" for r in plan.results)
        todo = sum(len(shards) for shards in plan.todo.values())
        log.line(f"outputs: {reused} verified and reused, {todo} to compute")
        for model_id, dataset, shard, why in plan.recomputed:
            where = f"shard {shard}" if shard >= 0 else "stale file"
            log.line(f"recomputing {model_id} on {dataset} {where}: {why}", style="yellow")

    scored, stats, fit_failures = models, None, []
    if detectors is not None and fit_set is not None:
        scored, stats, fit_failures, inference = _fit_detectors(
            models, fit_set, workspace, inference, detectors, log, settings
        )
    report = run_inference(
        scored, datasets, workspace, options=inference, settings=settings, run_id=run_id,
        on_progress=lambda stage, done, total: log.progress(f"inference {stage}", done, total), on_plan=on_plan,
        detector_stats=stats,
    )
    report.results.extend(fit_failures)
    results = report.results
    for r in results:
        if r.status == "failed":
            log.line(f"failed {r.model_id} on {r.dataset} shard {r.shard}: {r.error}", style="red")
    images = sum(r.n_samples for r in results if r.status == "ok")
    bad = {(r.dataset, sid) for r in results for sid, _ in r.bad_files}
    log.line(
        f"inference: {len(results)} (model, dataset, shard) outputs ({sum(r.status == 'reused' for r in results)} "
        f"reused), {images} rows computed, {report.decoded} images decoded, {len(bad)} bad files, "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    failed_models = {r.model_id for r in results if r.status == "failed"}
    context = RunContext(
        workspace=workspace, run_id=run_id, models=[m for m in models if m.model_id not in failed_models],
        datasets=datasets, options=options, console=console, inference=report,
    )
    frames = _frames_from_inference(workspace, run_id, models, datasets, report, metadata_overrides)
    with Store.open(db_path, samples=False) as store:
        for table, frame in frames.items():
            store.ingest(table, frame)
    errors = []
    for name, analysis in analyses if context.models else []:
        errors += analyse_and_ingest(name, analysis, context, db_path, log)
    status = "ok"
    if failed_models or errors:
        status = "failed" if len(failed_models) == len(models) else "partial"
    failures = [f"{r.model_id}/{r.dataset}: {r.error}" for r in results if r.status == "failed"] + errors
    run_row.update(finished_at=_now(), status=status, error="; ".join(failures) or None)
    with Store.open(db_path, samples=False) as store:
        store.ingest("runs", pl.DataFrame([run_row], infer_schema_length=None))
    context.status = status
    log.line(f"run {run_id}: {status} in {time.perf_counter() - t0:.1f} s")
    return context
