"""Pipeline throughput (issue 6): end-to-end images/s vs raw forward, and decode-once vs per-model decoding.

1. End-to-end: ``pipelines.engine.stream.run_inference`` of one small timm model over N generated ImageNet-like
   JPEGs (Ray Data streams listing -> decode -> resident model actors -> Parquet; local Ray with 2 CPUs, one
   torch thread per model actor) against the same model's raw forward throughput on a pre-made input batch
   (decoded crops, same batch size; 2 threads, the whole machine; the 1-thread rate is printed too).
   Target: ≥ 85%.
2. Decode once: a 4-model run whose models share one preprocessing signature (one pipeline: each image decoded
   once, the crops flow through every model) against four independent single-model runs, each decoding for
   itself. Target: ≤ 0.6× the time. The images each side decoded (the engine's count) are printed.

Every timed run gets a fresh workspace (a reused workspace would reuse its verified outputs). Ray start-up and
one small warm-up run are excluded (once per session, not per model); each timed run still pays for starting
its own model actors and loading their weights, as a real run does: a fixed cost of several seconds per run
on 2 CPU cores, which dominates the quick size's ratios (``--full`` amortises it over 2,000 images).

With no arguments the script runs a quick CPU check (300 images, mobilenetv3, under two minutes on 2 cores,
for ``make bench``); ``--full`` is the 2,000-image size of the older numbers in BENCHMARKS.md. On a GPU
machine, run with ``--device cuda --model timm:resnet50@random --batch-size 128 --full`` to measure the GPU
path (one GPU per model actor).

    python benchmarks/bench_pipeline.py [--full | --images N] [--model SPEC] [--batch-size B] [--shards S]
                                        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

QUICK_IMAGES = 300
FULL_IMAGES = 2000
SWEEP_MODELS = ("timm:test_vit@random", "timm:test_efficientnet@random", "timm:test_convnext@random",
                "timm:test_byobnet@random")


def make_images(root: Path, n: int, seed: int = 0) -> Path:
    """ImageNet-like JPEGs: 500×375 smooth random scenes (realistic decode cost), 10 classes."""
    from pipelines.data.datasets import imagenet1k_wnids

    rng = np.random.default_rng(seed)
    wnids = imagenet1k_wnids()[:10]
    for i in range(n):
        folder = root / wnids[i % 10]
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC).filter(ImageFilter.DETAIL)
        image.save(folder / f"img_{i:05d}.jpg", quality=90)
    return root


def raw_forward_seconds(spec: str, dataset, n: int, batch_size: int, device: str, threads: int) -> float:
    """Seconds for the bare forward pass over n images as one pre-made input batch reused, ``threads`` intra-op
    threads. The batch is the dataset's first images, decoded and normalised (not random numbers: on a CPU a
    random-weight network runs slower on ``torch.randn`` input than on real crops)."""
    import torch

    from pipelines.data.preprocess import decode, normalise
    from pipelines.zoo import build_model, resolve

    (ms,) = resolve(spec)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = build_model(ms).to(device)
        crops = np.stack([decode(dataset.path(i % n), ms.preprocess) for i in range(batch_size)])
        batch = normalise(torch.from_numpy(crops), ms.preprocess, device)
        with torch.inference_mode():
            model(batch)  # warm-up
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            for start in range(0, n, batch_size):
                model(batch[: min(batch_size, n - start)])
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter() - started
    finally:
        torch.set_num_threads(saved)


def timed_run(specs: list[str], dataset, workspace: Path, shards: int, batch_size: int, device: str):
    """Seconds of one ``run_inference`` of ``specs`` over ``dataset`` into a fresh ``workspace``, and its report."""
    from pipelines.engine.inference import InferenceOptions
    from pipelines.engine.stream import EngineSettings, run_inference
    from pipelines.zoo import resolve_all

    shutil.rmtree(workspace, ignore_errors=True)  # a reused workspace would reuse its outputs
    models = resolve_all(specs)
    settings = EngineSettings(num_shards=shards, gpus_per_actor=1.0 if device.startswith("cuda") else 0.0)
    options = InferenceOptions(batch_size=batch_size, device=device, threads=1)
    started = time.perf_counter()
    report = run_inference(models, [dataset], workspace, options=options, settings=settings)
    elapsed = time.perf_counter() - started
    failed = [r.error for r in report.results if r.status == "failed"]
    if failed:
        raise SystemExit(f"benchmark run failed: {failed[0]}")
    computed = sum(r.n_samples for r in report.results if r.status == "ok")
    if computed != len(models) * len(dataset.sample_ids):
        raise SystemExit(f"benchmark run computed {computed} rows, expected {len(models)} × {len(dataset.sample_ids)}")
    return elapsed, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help=f"{FULL_IMAGES:,} images instead of {QUICK_IMAGES}")
    parser.add_argument("--images", type=int, default=None, help="number of images (overrides --full)")
    parser.add_argument("--model", default="timm:mobilenetv3_large_100@random")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shards", type=int, default=8, help="shards of the dataset (EngineSettings.num_shards)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    n = args.images or (FULL_IMAGES if args.full else QUICK_IMAGES)

    from pipelines.data.datasets import load_folder
    from pipelines.engine.inference import init_ray

    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        dataset = load_folder("bench", make_images(work / "images", n), "id")
        warm = load_folder("warm", make_images(work / "warm-images", 20, seed=1), "id")
        init_ray(num_cpus=2)  # GPUs: Ray detects them
        # warm-up (not timed): Ray Data's first pipeline of the session starts its own actors and workers
        timed_run([args.model], warm, work / "warm", 1, args.batch_size, args.device)
        # the fair baseline gets the whole machine (both cores) for the forward pass alone; the 1-thread number
        # is what a single model actor (1 CPU, 1 thread) could reach without any decoding
        raw = raw_forward_seconds(args.model, dataset, n, args.batch_size, args.device, threads=2)
        raw_one = raw_forward_seconds(args.model, dataset, n, args.batch_size, args.device, threads=1)
        e2e, _ = timed_run([args.model], dataset, work / "e2e", args.shards, args.batch_size, args.device)

        shared, shared_report = timed_run(list(SWEEP_MODELS), dataset, work / "shared", args.shards,
                                          args.batch_size, args.device)
        if shared_report.signatures != 1:
            raise SystemExit(f"the sweep models do not share one preprocessing signature "
                             f"({shared_report.signatures} pipelines ran)")
        alone = [timed_run([m], dataset, work / f"alone-{i}", args.shards, args.batch_size, args.device)
                 for i, m in enumerate(SWEEP_MODELS)]
        independent = sum(seconds for seconds, _ in alone)
        independent_decoded = sum(report.decoded for _, report in alone)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{n} generated 500×375 JPEGs, {args.shards} shards, batch {args.batch_size}, device {args.device}, "
          "1 thread per model actor, local Ray with 2 CPUs (Ray Data streaming engine)\n")
    print("| operation | N | ours (s) | baseline (s) | ratio | target |")
    print("|---|---|---|---|---|---|")
    print(f"| end-to-end {args.model} (img/s: ours {n / e2e:.1f}, raw {n / raw:.1f} on 2 threads, "
          f"{n / raw_one:.1f} on 1) | {n} | {e2e:.2f} | {raw:.2f} (raw forward, 2 threads) | "
          f"{raw / e2e:.2f} of raw throughput | ≥ 0.85 |")
    print(f"| 4-model run, one signature, decode once (images decoded: {shared_report.decoded} vs "
          f"{independent_decoded}) | {n} | {shared:.2f} | {independent:.2f} (4 independent runs) | "
          f"{shared / independent:.2f}× | ≤ 0.6× |")


if __name__ == "__main__":
    main()
