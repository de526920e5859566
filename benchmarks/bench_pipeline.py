"""Pipeline throughput (issue 6): end-to-end images/s vs raw forward, and decode-once vs per-model decoding.

1. End-to-end: ``run_inference`` of one small timm model over N generated ImageNet-like JPEGs (decode tasks and the
   model task run concurrently through local Ray; one CPU thread per task) against the same model's raw forward
   throughput on pre-made tensors of the same batch size and thread count. Target: ≥ 85%.
2. Decode once: a 4-model sweep whose models share one preprocessing signature (each image decoded once) against
   four independent single-model runs, each decoding for itself. Target: ≤ 0.6× the time.

Ray start-up is excluded from both (it happens once per run, not per model). On a GPU machine, run with
``--device cuda --model timm:resnet50@random --batch-size 128`` to measure the GPU path.

    python benchmarks/bench_pipeline.py [--quick] [--images N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


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


def raw_forward_seconds(spec: str, n: int, batch_size: int, device: str, threads: int) -> float:
    """Seconds for the bare forward pass over n images as pre-made tensors, ``threads`` intra-op threads."""
    import torch

    from pipelines.zoo import build_model, resolve

    (ms,) = resolve(spec)
    torch.set_num_threads(threads)
    model = build_model(ms).to(device)
    size = ms.preprocess.input_size
    batch = torch.randn(batch_size, 3, size, size, device=device)
    with torch.inference_mode():
        model(batch)  # warm-up
        started = time.perf_counter()
        for start in range(0, n, batch_size):
            model(batch[: min(batch_size, n - start)])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return time.perf_counter() - started


def timed_run(specs: list[str], dataset, workspace: Path, shard_size: int, batch_size: int, device: str) -> float:
    from pipelines.engine.inference import InferenceOptions, run_inference
    from pipelines.zoo import resolve_all

    shutil.rmtree(workspace, ignore_errors=True)
    started = time.perf_counter()
    report = run_inference(
        resolve_all(specs), [dataset], workspace, shard_size=shard_size,
        options=InferenceOptions(batch_size=batch_size, device=device, threads=1),
        gpus_per_task=1.0 if device == "cuda" else 0.0,
    )
    elapsed = time.perf_counter() - started
    failed = [r.error for r in report.results if r.status == "failed"]
    if failed:
        raise SystemExit(f"benchmark run failed: {failed[0]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 images instead of 2,000")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--model", default="timm:mobilenetv3_large_100@random")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    n = args.images or (500 if args.quick else 2000)

    from pipelines.data.datasets import load_folder
    from pipelines.engine.inference import init_ray

    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        dataset = load_folder("bench", make_images(work / "images", n), "id")
        init_ray(num_cpus=2)
        shard = max(1, n // 8)
        # the fair baseline gets the whole machine (both cores) for the forward pass alone; the 1-thread number
        # is what a single Ray model task (1 CPU) could reach without any decoding
        raw = raw_forward_seconds(args.model, n, args.batch_size, args.device, threads=2)
        raw_one = raw_forward_seconds(args.model, n, args.batch_size, args.device, threads=1)
        e2e = timed_run([args.model], dataset, work / "e2e", shard, args.batch_size, args.device)

        sweep_models = ["timm:test_vit@random", "timm:test_efficientnet@random", "timm:test_convnext@random",
                        "timm:test_byobnet@random"]
        shared = timed_run(sweep_models, dataset, work / "shared", shard, args.batch_size, args.device)
        independent = sum(
            timed_run([m], dataset, work / f"alone-{i}", shard, args.batch_size, args.device)
            for i, m in enumerate(sweep_models)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{n} generated 500×375 JPEGs, batch {args.batch_size}, device {args.device}, 1 thread per task, "
          "local Ray with 2 CPUs\n")
    print("| operation | N | ours (s) | baseline (s) | ratio | target |")
    print("|---|---|---|---|---|---|")
    print(f"| end-to-end {args.model} (img/s: ours {n / e2e:.1f}, raw {n / raw:.1f} on 2 threads, "
          f"{n / raw_one:.1f} on 1) | {n} | {e2e:.2f} | {raw:.2f} (raw forward, 2 threads) | "
          f"{raw / e2e:.2f} of raw throughput | ≥ 0.85 |")
    print(f"| 4-model sweep, one signature, decode once | {n} | {shared:.2f} | {independent:.2f} "
          f"(4 independent runs) | {shared / independent:.2f}× | ≤ 0.6× |")


if __name__ == "__main__":
    main()
