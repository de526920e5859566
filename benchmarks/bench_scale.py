"""Scale benchmark: the whole pipeline at ImageNet shape on a 2-node Ray cluster, with its memory held and its rates.

Data (``benchmarks/scale_data.py``): an ImageNet-val-style set over all 1,000 ImageNet-1k classes and an
ImageNet-21k-style set over the full 18,838-class C-OOD pool, as small generated JPEGs. Models: 12 random-weight
timm test architectures over 3 preprocessing signatures (:data:`MODELS`). Cluster: ``ray.cluster_utils.Cluster``
with two nodes of 1 CPU each (:func:`two_node_cluster`). The run (:func:`run_engine`) goes through every analysis
(C-OOD window 1,000, 11 levels) into DuckDB.

Measured, printed, and written as JSON with ``--json``:

- wall time (s) and end-to-end images/s of the run (an image counts once, after all models saw it);
- decode-only and forward-only images/s of the same models and images in this script, each with the engine's
  parallelism (2 processes, 1 torch thread each), measured ``--rate-repeats`` times before AND after the run (the
  machine's speed drifts over a 20-minute run) and pooled by median (:func:`pooled_median`); target: end-to-end ≥
  0.85 × the smaller of the two;
- peak decoded-crop bytes held: Ray object store bytes in use across the cluster + bytes on disk in the spill
  folder (the engine keeps no crops on disk), sampled together every 0.5 s (:class:`PeakSampler`); target: ≤ the
  configured budget (``--budget-mib``, default 1,024 MiB) and flat when the dataset doubles (``--scale 2``, and
  ``--compare`` the first run's JSON);
- peak driver RSS (bytes), weight loads per model (target ≤ 1 per model per actor), Ray tasks scheduled.

Typical use (the data is generated once and reused; the workspace is emptied before each run)::

    python benchmarks/bench_scale.py --json /tmp/scale-1.json
    python benchmarks/bench_scale.py --scale 2 --json /tmp/scale-2.json --compare /tmp/scale-1.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scale_data import generate  # benchmarks/scale_data.py (the script folder is on sys.path)

# fastest first, except that the first three cover the three signatures (so --models 3 still has all three):
# test_mambaout crops at 192 px with crop_pct 1.0, test_resnet uses bilinear resizing, the rest share
# 160px-crop0.95-center-bicubic. CPU forward rates, 1 thread, batch 64, img/s, as split by forward_only_rate
# (2026-12-02, 512 images, quiet sandbox): test_vit 576, test_mambaout 231 (192 px), test_resnet 248, test_vit2 430,
# test_vit3 236, test_convnext3 223, test_efficientnet_ln 248, test_vit_relpos 238, test_convnext 276,
# test_efficientnet 317, test_convnext2 221, test_vit4 209: those 12 together ≈ 21 img/s per core. test_byobnet
# replaced test_vit4 (2026-12-03: 464 against 176 img/s in one interleaved timing of the whole test_* family on a
# loaded machine).
MODELS = tuple(f"timm:{name}@random" for name in (
    "test_vit", "test_mambaout", "test_resnet", "test_vit2", "test_vit3", "test_convnext3", "test_efficientnet_ln",
    "test_vit_relpos", "test_convnext", "test_byobnet", "test_efficientnet", "test_convnext2",
))
WORKERS = 2  # processes of the rate baselines = CPUs of the cluster (2 nodes × 1 CPU)
WALL_TARGET_S = 20 * 60
E2E_TARGET = 0.85  # of min(decode-only, forward-only)
FLAT_TOLERANCE = 1.2  # "flat": peak crop bytes at double the data ≤ this × the first size's
MIB = 2**20


# ---------------------------------------------------------------------------------------------- rate baselines


def _specs(models: Sequence[str]):
    from pipelines.zoo import resolve_all

    return resolve_all(list(models))


def signatures(models: Sequence[str]) -> list:
    """The distinct :class:`~pipelines.zoo.Preprocess` of ``models``, in model order (one per signature)."""
    unique: dict[str, Any] = {}
    for ms in _specs(models):
        unique.setdefault(ms.preprocess.signature, ms.preprocess)
    return list(unique.values())


def _forward_worker(models: list[str], n: int, batch_size: int, paths: list[str], barrier, results) -> None:
    """One forward-only process: 1 torch thread, every model over ``n`` crops of the benchmark's own images
    (``paths``, decoded once per signature before timing; a few batches reused).

    Puts (start, end, CPU seconds, {model id: seconds}) on ``results`` (perf_counter and process_time seconds).
    """
    import torch

    torch.set_num_threads(1)
    from pipelines.data.preprocess import decode, normalise
    from pipelines.zoo import build_model

    built = [(ms, build_model(ms)) for ms in _specs(models)]
    # real crops, not noise: on this CPU some random-weight models run up to 1.7x faster or slower on noise
    pools = {
        ms.preprocess.signature: torch.from_numpy(
            np.stack([decode(Path(paths[i % len(paths)]), ms.preprocess) for i in range(4 * batch_size)])
        ).reshape(4, batch_size, ms.preprocess.input_size, ms.preprocess.input_size, 3)
        for ms, _ in built
    }
    per_model: dict[str, float] = {}
    with torch.inference_mode():
        for ms, model in built:  # warm-up: one full batch each, untimed
            model(normalise(pools[ms.preprocess.signature][0], ms.preprocess))
        barrier.wait()
        start, cpu = time.perf_counter(), time.process_time()
        for ms, model in built:
            began = time.perf_counter()
            pool = pools[ms.preprocess.signature]
            for i, first in enumerate(range(0, n, batch_size)):
                model(normalise(pool[i % 4, : min(batch_size, n - first)], ms.preprocess))
            per_model[ms.model_id] = time.perf_counter() - began
        end, cpu = time.perf_counter(), time.process_time() - cpu
    results.put((start, end, cpu, per_model))


def _decode_worker(paths: list[str], pres: list, barrier, results) -> None:
    """One decode-only process: every path decoded and cropped once per signature.

    Puts (start, end, CPU seconds, {signature: seconds}) on ``results``.
    """
    from pipelines.data.preprocess import decode

    for pre in pres:  # warm-up: builds the timm transforms, untimed
        decode(Path(paths[0]), pre)
    per_signature: dict[str, float] = {}
    barrier.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for pre in pres:  # signature-major, as the engine's decode tasks
        began = time.perf_counter()
        for path in paths:
            decode(Path(path), pre)
        per_signature[pre.signature] = time.perf_counter() - began
    end, cpu = time.perf_counter(), time.process_time() - cpu
    results.put((start, end, cpu, per_signature))


def _parallel_rate(target, shares: list[tuple], n_images: int, details: dict | None) -> float:
    """images/s of ``target(*share, barrier, results)`` in one spawned process per share, started together.

    Wall = last end − first start (perf_counter is CLOCK_MONOTONIC, shared by the processes on Linux). ``details``
    (if given) receives ``wall_s``, ``cpu_s`` (per process), ``cpu_img_s`` (images / the largest CPU time: about
    the rate on an otherwise idle machine) and ``parts_s`` (seconds per model or signature, summed over processes).
    """
    import multiprocessing
    import queue

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(shares)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*share, barrier, results)) for share in shares]
    for p in procs:
        p.start()
    reports: list[tuple] = []
    try:
        while len(reports) < len(procs):
            try:
                reports.append(results.get(timeout=5.0))
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"{target.__name__} process exited with {dead[0]}") from None
    finally:
        for p in procs:
            if len(reports) < len(procs):
                p.terminate()
            p.join()
    wall = max(r[1] for r in reports) - min(r[0] for r in reports)
    if details is not None:
        details["wall_s"] = round(wall, 3)
        details["cpu_s"] = [round(r[2], 3) for r in reports]
        details["cpu_img_s"] = round(n_images / max(r[2] for r in reports), 1)
        details["parts_s"] = {k: round(sum(r[3].get(k, 0.0) for r in reports), 3) for k in reports[0][3]}
    return n_images / wall


def median_rate(measure: Callable[[dict], float], repeats: int, details: dict) -> float:
    """The median of ``repeats`` calls of ``measure(details_of_that_call)`` (a rate baseline varies by ±10 % from
    call to call on a shared 2-core machine); ``details`` receives ``rates`` (every call's, in order) and
    ``runs`` (every call's details)."""
    runs: list[dict] = []
    rates = []
    for _ in range(repeats):
        runs.append({})
        rates.append(round(measure(runs[-1]), 1))
    details["rates"], details["runs"] = rates, runs
    return float(np.median(rates))


def rate_baselines(models: Sequence[str], pres: Sequence, files: Sequence[Path], n_images: int, batch_size: int,
                   repeats: int, when: str) -> dict[str, dict[str, Any]]:
    """Both rate baselines, ``repeats`` times each: ``{"decode_only": details, "forward_only": details}`` with the
    fields of :func:`median_rate` plus ``median``; prints one line per baseline tagged ``when``."""
    decode: dict[str, Any] = {}
    decode["median"] = median_rate(lambda d: decode_only_rate(files, pres, details=d), repeats, decode)
    print(f"decode-only {when}: {decode['median']:,.1f} images/s, median of {decode['rates']} ({len(files):,} "
          f"images × {len(pres)} signatures)", flush=True)
    forward: dict[str, Any] = {}
    forward["median"] = median_rate(
        lambda d: forward_only_rate(models, n_images, files, batch_size=batch_size, details=d), repeats, forward)
    print(f"forward-only {when}: {forward['median']:,.1f} images/s, median of {forward['rates']} ({n_images:,} "
          f"images × {len(models)} models)", flush=True)
    return {"decode_only": decode, "forward_only": forward}


def pooled_median(baselines: Mapping[str, Mapping[str, Any]], kind: str) -> float:
    """The median of every repetition of baseline ``kind`` over all measuring times in ``baselines`` (before and
    after the run): on a shared 2-core host the machine's speed moved by up to a fifth between 20-minute runs
    (BENCHMARKS.md, runs E–G), so a snapshot from one side of the run alone can sit at either end of that drift."""
    return float(np.median([rate for when in baselines.values() for rate in when[kind]["rates"]]))


def forward_only_rate(models: Sequence[str], n_images: int, files: Sequence[Path], workers: int = WORKERS,
                      batch_size: int = 64, details: dict | None = None) -> float:
    """images/s of the bare forward of ``n_images`` crops of ``files`` through ALL ``models``.

    ``workers`` processes with 1 torch thread each, each handling its share of the images (batches of
    ``batch_size``), normalisation (pipelines.data.preprocess.normalise) included, model building and one warm-up
    batch per model excluded. An image counts once, after it passed every model. ``details``: see
    :func:`_parallel_rate` (parts: seconds per model id).
    """
    counts = np.diff(np.linspace(0, n_images, workers + 1).round().astype(int))
    paths = [str(f) for f in files]
    shares = [(list(models), int(n), batch_size, paths[w::workers]) for w, n in enumerate(counts)]
    return _parallel_rate(_forward_worker, shares, n_images, details)


def decode_only_rate(files: Sequence[Path], pres: Sequence, workers: int = WORKERS,
                     details: dict | None = None) -> float:
    """images/s of decoding + cropping ``files`` once per preprocessing in ``pres`` (pipelines.data.preprocess.decode).

    ``workers`` processes, each with its share of the files; an image counts once, after its crops for every
    signature exist. Files should be in the page cache already (freshly generated, as in the run). ``details``:
    see :func:`_parallel_rate` (parts: seconds per signature).
    """
    paths = [str(f) for f in files]
    shares = [(paths[i::workers], list(pres)) for i in range(workers)]
    return _parallel_rate(_decode_worker, shares, len(paths), details)


def sample_files(roots: Sequence[Path], n: int) -> list[Path]:
    """``n`` image files spread evenly over the ``<root>/<wnid>/<image>`` folders of ``roots`` (sorted listing)."""
    files = sorted(
        Path(entry.path)
        for root in roots
        for folder in os.scandir(root) if folder.is_dir()
        for entry in os.scandir(folder.path) if entry.name.endswith(".JPEG")
    )
    if not files:
        raise ValueError(f"no .JPEG files under {', '.join(map(str, roots))}")
    picks = np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)
    return [files[i] for i in picks]


# ---------------------------------------------------------------------------------------------- memory sampling


def object_store_bytes() -> dict[str, int]:
    """Ray object store bytes in use per node: the engine's own reading (pipelines.engine.stream)."""
    from pipelines.engine.stream import object_store_bytes_per_node

    return object_store_bytes_per_node()


def folder_bytes(root: Path) -> int:
    """Apparent size in bytes of the regular files under ``root`` (0 if missing); tolerates files vanishing."""
    total, stack = 0, [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        pass
        except (FileNotFoundError, NotADirectoryError):
            pass
    return total


def driver_rss_bytes() -> int:
    """Resident set size of this process in bytes (psutil when installed, else /proc/self/statm)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


class PeakSampler(threading.Thread):
    """Samples every ``interval_s`` seconds and keeps the maxima (bytes) of:

    - ``store``: Ray object store bytes in use, cluster total (:func:`object_store_bytes`; ``store_node``: the
      largest single node);
    - each folder of ``folders`` (name -> path) by :func:`folder_bytes`, e.g. the Ray spill folder, the decode
      cache, the whole workspace;
    - ``crops_held``: store + the folders named in ``crop_folders``, from the same sample (decoded crops held in
      memory and on disk at one moment);
    - ``driver_rss``: this process's RSS (also ``ru_maxrss`` at :meth:`stop`, which sees between samples).

    Use as a context manager around the measured work; ``ray=False`` skips the store (no Ray connection).
    The store reading lags the store by up to ≈ 1 s (:func:`object_store_bytes`), so a peak shorter than
    that can be missed; store + spill counts an object twice while it is both spilled and still in memory.
    """

    def __init__(self, folders: Mapping[str, Path], crop_folders: Sequence[str], *, interval_s: float = 0.5,
                 ray: bool = True) -> None:
        super().__init__(name="peak-sampler", daemon=True)
        self.folders, self.crop_folders = dict(folders), tuple(crop_folders)
        self.interval_s, self.use_ray = interval_s, ray
        self.peaks: dict[str, int] = {}
        self.samples = 0
        self.sample_seconds = 0.0  # time spent sampling (its own cost)
        self.errors: list[str] = []  # failed samples (the thread keeps going; the first few are kept)
        self._stop_event = threading.Event()

    def read(self) -> dict[str, int]:
        """One sample (bytes), without updating the peaks."""
        per_node = object_store_bytes() if self.use_ray else {}
        values = {"store": sum(per_node.values()), "store_node": max(per_node.values(), default=0)}
        values.update({name: folder_bytes(path) for name, path in self.folders.items()})
        values["crops_held"] = values["store"] + sum(values[name] for name in self.crop_folders)
        values["driver_rss"] = driver_rss_bytes()
        return values

    def sample(self) -> dict[str, int]:
        started = time.perf_counter()
        values = self.read()
        for key, value in values.items():
            self.peaks[key] = max(self.peaks.get(key, 0), value)
        self.samples += 1
        self.sample_seconds += time.perf_counter() - started
        return values

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.sample()
            except Exception as exc:  # a GCS hiccup must not end the sampling silently
                if len(self.errors) < 5:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop_event.wait(self.interval_s)

    def stop(self) -> dict[str, int]:
        """Stop, take a last sample, and return the peaks (bytes; ``driver_rss_max`` from getrusage)."""
        self._stop_event.set()
        if self.is_alive():
            self.join()
        self.sample()
        self.peaks["driver_rss_max"] = max(
            self.peaks["driver_rss"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        )
        return dict(self.peaks)

    def __enter__(self) -> PeakSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def store_probe(mib: int = 100, timeout_s: float = 10.0) -> dict[str, float]:
    """Check :func:`object_store_bytes` against a known ``ray.put`` of ``mib`` MiB of uint8.

    Returns ``expected_bytes``, ``measured_bytes`` (the increase seen), ``lag_s`` (seconds until the increase
    showed) and ``released_lag_s`` (seconds until it went again after the reference was dropped).
    """
    import ray

    array = np.ones(mib * MIB, dtype=np.uint8)
    before = sum(object_store_bytes().values())
    started = time.perf_counter()
    ref = ray.put(array)
    measured = 0
    while time.perf_counter() - started < timeout_s:
        measured = sum(object_store_bytes().values()) - before
        if measured >= mib * MIB:
            break
        time.sleep(0.02)
    lag = time.perf_counter() - started
    del ref, array
    released = time.perf_counter()
    while time.perf_counter() - released < timeout_s and sum(object_store_bytes().values()) > before:
        time.sleep(0.02)
    return {"expected_bytes": mib * MIB, "measured_bytes": measured, "lag_s": round(lag, 3),
            "released_lag_s": round(time.perf_counter() - released, 3)}


# ---------------------------------------------------------------------------------------------- cluster and engine


@contextmanager
def two_node_cluster(spill_dir: Path, object_store_mib: int = 1536, cpus_per_node: int = 1) -> Iterator[Any]:
    """A 2-node ``ray.cluster_utils.Cluster`` (head + one worker node, ``cpus_per_node`` CPUs and
    ``object_store_mib`` MiB of object store each, objects spilled to ``spill_dir``), with this process connected.

    Yields the cluster (``cluster.address`` for the engine); shuts Ray and both nodes down on exit.
    """
    import logging

    import ray
    from ray.cluster_utils import Cluster

    spill_dir.mkdir(parents=True, exist_ok=True)
    node = {"num_cpus": cpus_per_node, "object_store_memory": object_store_mib * MIB,
            "object_spilling_directory": str(spill_dir)}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def run_engine(models: Sequence[str], id_root: Path, ood_root: Path, ood_per_class: int, workspace: Path,
               address: str, budget_mib: int, batch_size: int, decode_cpus: float | None = None) -> dict[str, Any]:
    """The measured run: every model over both sets, every analysis, into DuckDB, on the cluster at ``address``.

    Returns ``wall_s`` (seconds of ``run_from_config``) and what the run's InferenceReport says: ``tasks``,
    ``tasks_failed`` (with ``first_error``), ``decoded`` (images decoded), ``weight_loads`` (model id -> actors
    that loaded it), ``ray_tasks`` (tasks scheduled), ``engine_peak_store_bytes``; None where it has no such field.
    """
    from pipelines.engine.run_config import parse_config
    from pipelines.run import run_from_config

    raw = {
        "workspace": str(workspace),
        "models": list(models),
        "datasets": {
            "imagenet-val": {"kind": "id", "root": str(id_root)},
            "imagenet21k": {"kind": "ood", "root": str(ood_root), "per_class": ood_per_class,
                            "n_estimation": ood_per_class // 2},
        },
        "ray": {"address": address, **({"decode_cpus": decode_cpus} if decode_cpus else {})},
        "inference": {"batch_size": batch_size, "decode_budget_mib": budget_mib},
        "cood": {"window": 1000, "levels": 11},
        "hsc": {"repetitions": 100},
    }
    config = parse_config(raw, base=Path.cwd())
    started = time.perf_counter()
    context = run_from_config(config)
    wall = time.perf_counter() - started
    report = getattr(context, "inference", None)
    results = list(getattr(report, "results", None) or [])
    failed = [r for r in results if getattr(r, "status", None) == "failed"]
    return {
        "wall_s": wall,
        "tasks": len(results) if report is not None else None,
        "tasks_failed": len(failed) if report is not None else None,
        "first_error": getattr(failed[0], "error", None) if failed else None,
        "decoded": getattr(report, "decoded", None),
        "weight_loads": getattr(report, "weight_loads", None),
        "ray_tasks": getattr(report, "ray_tasks", None),
        "engine_peak_store_bytes": getattr(report, "peak_store_bytes", None),
    }


# ---------------------------------------------------------------------------------------------- report


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / MIB:,.1f} MiB"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "FAIL")


def _pooled(m: dict[str, Any], kind: str) -> str:
    """The pooled median of baseline ``kind`` with the medians of each measuring time, e.g. "40.1 (before 38.2,
    after 41.0)"."""
    sides = ", ".join(f"{when} {b[kind]['median']:,.1f}" for when, b in m["baselines"].items())
    return f"{m[kind + '_img_s']:,.1f} ({sides})"


def result_rows(m: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(quantity, value, target, pass/FAIL/n/a) rows of the measured numbers ``m`` (see :func:`main`)."""
    engine, peaks, budget = m["engine"], m["peaks"], m["budget_mib"] * MIB
    bound = min(m["decode_only_img_s"], m["forward_only_img_s"])
    loads = engine["weight_loads"]
    max_loads = max(loads.values()) if loads else None
    rows = [
        ("images (ID + OOD), each through every model", f"{m['images']:,} ({m['id_images']:,} + {m['ood_images']:,})",
         "", ""),
        ("models / preprocessing signatures", f"{len(m['models'])} / {m['signatures']}", "≥ 12 / ≥ 3",
         _verdict(len(m["models"]) >= 12 and m["signatures"] >= 3)),
        ("wall time of the run", f"{engine['wall_s']:,.1f} s", f"≤ {WALL_TARGET_S} s",
         _verdict(engine["wall_s"] <= WALL_TARGET_S)),
        ("end-to-end images/s", f"{m['e2e_img_s']:,.1f}",
         f"≥ {E2E_TARGET} × {bound:,.1f} = {E2E_TARGET * bound:,.1f}", _verdict(m["e2e_img_s"] >= E2E_TARGET * bound)),
        ("  decode-only images/s (all signatures, 2 processes)", _pooled(m, "decode_only"), "", ""),
        ("  forward-only images/s (all models, 2 processes × 1 thread)", _pooled(m, "forward_only"), "", ""),
        ("peak decoded-crop bytes held (object store + spill; no disk cache)", _mib(peaks["crops_held"]),
         f"≤ {_mib(budget)}", _verdict(peaks["crops_held"] <= budget)),
        ("  peak object store bytes (cluster; largest node)",
         f"{_mib(peaks['store'])}; {_mib(peaks['store_node'])}", "", ""),
        ("  peak spill folder / whole workspace bytes", f"{_mib(peaks['spill'])} / {_mib(peaks['workspace'])}",
         "", ""),
        ("  engine's own peak store bytes", _mib(engine["engine_peak_store_bytes"]), "", ""),
        ("peak driver RSS", _mib(peaks["driver_rss_max"]), "", ""),
        ("weight loads per model (min–max over models)",
         "n/a" if not loads else f"{min(loads.values())}–{max_loads} (actors: ≤ {m['actors']})",
         f"≤ 1 per model per actor (≤ {m['actors']})",
         _verdict(None if max_loads is None else max_loads <= m["actors"])),
        ("Ray tasks scheduled", "n/a" if engine["ray_tasks"] is None else f"{engine['ray_tasks']:,}", "", ""),
        ("inference tasks failed", "n/a" if engine["tasks_failed"] is None else f"{engine['tasks_failed']}", "0",
         _verdict(None if engine["tasks_failed"] is None else engine["tasks_failed"] == 0)),
        ("images decoded by the engine", "n/a" if engine["decoded"] is None else f"{engine['decoded']:,}",
         f"= images × signatures = {m['images'] * m['signatures']:,}",
         _verdict(None if engine["decoded"] is None else engine["decoded"] == m["images"] * m["signatures"])),
    ]
    if m.get("compare"):
        first = m["compare"]
        ratio = peaks["crops_held"] / max(1, first["peaks"]["crops_held"])
        rows.append((f"peak crop bytes at {m['images']:,} vs {first['images']:,} images",
                     f"{_mib(peaks['crops_held'])} vs {_mib(first['peaks']['crops_held'])} ({ratio:.2f}×)",
                     f"flat: ≤ {FLAT_TOLERANCE}×", _verdict(ratio <= FLAT_TOLERANCE)))
    return rows


def print_results(m: dict[str, Any]) -> None:
    print("| quantity | value | target | |")
    print("|---|---|---|---|")
    for row in result_rows(m):
        print("| " + " | ".join(row) + " |")


def _fresh_workspace(workspace: Path) -> None:
    """Empty ``workspace`` (a complete earlier run would be reused, not measured); refuses folders it did not make."""
    marker = workspace / ".bench_scale"
    if workspace.exists() and any(workspace.iterdir()) and not marker.exists():
        raise SystemExit(f"error: {workspace} is not empty and was not made by bench_scale.py; "
                         "pick another --workspace")
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    marker.write_text("made by benchmarks/bench_scale.py; emptied at the start of each run\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id-per-class", type=int, default=1, help="ID images per ImageNet-1k class (default 1)")
    parser.add_argument("--ood-per-class", type=int, default=2, help="OOD images per pool class, ≥ 2 (default 2)")
    parser.add_argument("--scale", type=int, choices=(1, 2), default=1, help="2 doubles both per-class counts")
    parser.add_argument("--models", type=int, default=len(MODELS), help=f"first N of the {len(MODELS)} models")
    parser.add_argument("--budget-mib", type=int, default=1024, help="decode budget of the run (MiB)")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="images per block in the run and per forward call in the forward-only baseline")
    parser.add_argument("--rate-images", type=int, default=1024,
                        help="images of the forward-only baseline (decode-only: 4× as many files)")
    parser.add_argument("--decode-cpus", type=float, default=None,
                        help="CPUs per decode task; other than 1 (the model actors' CPUs) keeps decode out of the "
                             "actors, so crops travel through the object store and the budget binds")
    parser.add_argument("--rate-repeats", type=int, default=3,
                        help="repetitions of each rate baseline, before and after the run (median of all)")
    parser.add_argument("--data", type=Path, default=Path("/tmp/uebench-scale/data"), help="generated data root")
    parser.add_argument("--workspace", type=Path, default=None, help="run workspace (emptied first)")
    parser.add_argument("--json", type=Path, default=None, help="also write every measured number here")
    parser.add_argument("--compare", type=Path, default=None, help="a first run's --json, for the flatness check")
    args = parser.parse_args()
    if args.ood_per_class < 2 or args.id_per_class < 1 or not 1 <= args.models <= len(MODELS):
        parser.error(f"need --ood-per-class ≥ 2, --id-per-class ≥ 1 and 1 ≤ --models ≤ {len(MODELS)}")
    id_per_class, ood_per_class = args.id_per_class * args.scale, args.ood_per_class * args.scale
    models = list(MODELS[: args.models])
    workspace = args.workspace or Path(f"/tmp/uebench-scale/workspace-{id_per_class}-{ood_per_class}")
    spill = workspace.parent / f"{workspace.name}-ray-spill"

    data_root = args.data / f"id{id_per_class}-ood{ood_per_class}"
    record = generate(data_root, id_per_class=id_per_class, ood_per_class=ood_per_class)
    print(f"data: {record['images']:,} JPEGs under {data_root} "
          f"({'reused' if record['reused'] else 'generated'}; generation {record['seconds']:.1f} s, "
          f"{record['images_per_s']:,.0f} images/s)", flush=True)
    id_root, ood_root = Path(record["val"]["root"]), Path(record["in21k"]["root"])

    pres = signatures(models)
    rate_files = sample_files([id_root, ood_root], 4 * args.rate_images)

    def measure(when: str) -> dict[str, dict[str, Any]]:
        return rate_baselines(models, pres, rate_files, args.rate_images, args.batch_size, args.rate_repeats, when)

    baselines = {"before": measure("before the run")}

    _fresh_workspace(workspace)
    shutil.rmtree(spill, ignore_errors=True)
    with two_node_cluster(spill) as cluster:
        import ray

        actors = int(ray.cluster_resources().get("CPU", 0))
        probe = store_probe()
        print(f"object store probe: ray.put of {_mib(probe['expected_bytes'])} read as {_mib(probe['measured_bytes'])} "
              f"after {probe['lag_s']} s", flush=True)
        folders = {"spill": spill, "workspace": workspace}
        with PeakSampler(folders, crop_folders=("spill",)) as sampler:
            engine = run_engine(models, id_root, ood_root, ood_per_class, workspace, cluster.address, args.budget_mib,
                                args.batch_size, args.decode_cpus)
        peaks = sampler.peaks
    baselines["after"] = measure("after the run")
    decode_rate, forward_rate = (pooled_median(baselines, kind) for kind in ("decode_only", "forward_only"))

    images = record["images"]
    measured: dict[str, Any] = {
        "models": models, "signatures": len(pres), "actors": actors, "scale": args.scale,
        "id_per_class": id_per_class, "ood_per_class": ood_per_class, "budget_mib": args.budget_mib,
        "batch_size": args.batch_size, "decode_cpus": args.decode_cpus,
        "images": images, "id_images": record["val"]["images"], "ood_images": record["in21k"]["images"],
        "generation": {k: record[k] for k in ("seconds", "images_per_s", "bytes", "reused")},
        "decode_only_img_s": decode_rate, "forward_only_img_s": forward_rate, "rate_images": args.rate_images,
        "baselines": baselines,
        "e2e_img_s": images / engine["wall_s"], "engine": engine, "peaks": peaks,
        "sampler": {"samples": sampler.samples, "interval_s": sampler.interval_s,
                    "seconds": round(sampler.sample_seconds, 3), "errors": sampler.errors},
        "store_probe": probe,
    }
    if args.compare:
        measured["compare"] = json.loads(args.compare.read_text())
    print()
    print_results(measured)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({k: v for k, v in measured.items() if k != "compare"}, indent=1,
                                        default=str))


if __name__ == "__main__":
    main()
