"""The device path of one model actor, without Ray: forward_all per block against the bare forward pass.

Measures images/s of ``pipelines.engine.inference.forward_all`` called per block as the engine's model stage
calls it (uint8 crops -> host tensor, pinned on CUDA -> device -> normalise -> forward -> logits back; then the
κ columns of ``cood.confidence.compute``) against the bare forward pass on a pre-made device batch (normalised
crops), for fp32, bf16 autocast and bf16 + channels_last; and the agreement of the device's logits with CPU
fp32 logits on the same crops.

The crops are decoded once before anything is timed (``pipelines.data.preprocess.decode``, the engine's decode
stage), so only the model side is measured; the model is built by ``load_model`` as a model actor builds it.
Runs anywhere torch runs (Ray is not needed, so it also runs where Ray is not installed); meant for a CUDA
machine, where its defaults are resnet50, 4,096 images and batch 256 (on CPU: mobilenetv3, 128 images, batch 32,
one torch thread as a 1-CPU model actor, so that ``make bench`` checks that it runs; CPU ratios are not a
statement about the device path)::

    python benchmarks/bench_gpu_task.py [--device cuda] [--model timm:vit_base_patch16_224@random] [--images N]
                                        [--batch-size B] [--concurrent 2]

``--concurrent K`` (default 2) also runs K model workers at once on the same device, in K processes, as the
engine does with K model actors per GPU (``gpus_per_actor = 1/K``); its row gives the time per N images of all
of them together.

Prints a Markdown table: operation | N | ours (s) | baseline (s) | ratio | target (the target of issue 6 is
end-to-end ≥ 0.85 of the raw forward throughput).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from threading import BrokenBarrierError

import numpy as np
from bench_pipeline import make_images  # benchmarks/ is on sys.path when the script runs
from timing import print_table


def decode_crops(dataset, pre, max_pixels: int) -> np.ndarray:
    """All images of ``dataset`` decoded and cropped as the engine's decode stage does: ``(n, S, S, 3) uint8``."""
    from pipelines.data.preprocess import decode

    crops = np.empty((len(dataset.sample_ids), pre.input_size, pre.input_size, 3), dtype=np.uint8)
    for i in range(len(crops)):
        crops[i] = decode(dataset.path(i), pre, max_pixels)
    return crops


def raw_forward(model, crops: np.ndarray, pre, n: int, batch_size: int, device: str, amp: bool,
                channels_last: bool) -> float:
    """Seconds for the bare forward of n images as one pre-made device batch reused (best of 3). The batch is the
    first crops normalised (not random numbers: on a CPU a random-weight network runs slower on ``torch.randn``
    input than on real crops)."""
    import torch

    from pipelines.data.preprocess import normalise

    batch = normalise(torch.from_numpy(np.ascontiguousarray(crops[:batch_size])), pre, device)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    best = float("inf")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        model(batch)
        for _ in range(3):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            for start in range(0, n, batch_size):
                model(batch[: min(batch_size, n - start)]).float()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
    return best


def actor_pass(model, crops: np.ndarray, ms, opts) -> tuple[float, float, np.ndarray]:
    """One pass over ``crops`` in blocks of ``opts.batch_size``, as a model actor handles the engine's blocks:
    ``forward_all`` then the κ columns per block. Returns (forward_all seconds, κ seconds, logits)."""
    from cood.confidence import compute
    from pipelines.engine.inference import forward_all

    forward_s = kappa_s = 0.0
    parts = []
    for block, start in enumerate(range(0, len(crops), opts.batch_size)):
        started = time.perf_counter()
        logits, _, _ = forward_all(model, crops[start : start + opts.batch_size], ms, opts, block)
        middle = time.perf_counter()
        compute(logits, opts.confidences)
        forward_s += middle - started
        kappa_s += time.perf_counter() - middle
        parts.append(logits)
    return forward_s, kappa_s, np.concatenate(parts)


def _concurrent_worker(ms, crops_path: Path, opts, runs: int, barrier, results) -> None:
    """One of the processes of :func:`concurrent_actors`: build the model, one warm-up pass, then ``runs`` timed
    passes after all processes are warm; puts (first start, last end) on ``results``."""
    import torch

    from pipelines.engine.inference import load_model

    try:
        torch.set_num_threads(max(1, opts.threads))
        crops = np.load(crops_path, mmap_mode="r")
        model, _, _ = load_model(ms, opts)
        actor_pass(model, crops[: opts.batch_size], ms, opts)
    except Exception as exc:
        results.put(("failed", f"{type(exc).__name__}: {exc}"))
        barrier.abort()  # the others stop waiting for this one
        return
    try:
        barrier.wait()
    except BrokenBarrierError:
        results.put(("failed", "another worker failed before the timed passes"))
        return
    started = time.perf_counter()
    for _ in range(runs):
        actor_pass(model, crops, ms, opts)
    results.put((started, time.perf_counter()))


def concurrent_actors(ms, crops_path: Path, n: int, opts, processes: int, runs: int = 2) -> float:
    """Seconds per image of ``processes`` model workers running at once on the same device (what the engine does
    with ``gpus_per_actor = 1 / processes``): (images done by all processes) / (first start to last end),
    inverted. One worker's host work (pinned copies, κ columns) can then overlap another's forward pass."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_concurrent_worker, args=(ms, crops_path, opts, runs, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    spans = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    failed = [span[1] for span in spans if span[0] == "failed"]
    if failed:
        raise SystemExit(f"concurrent model worker failed: {failed[0]}")
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return wall / (processes * runs * n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cuda | cpu | auto (cuda when available)")
    parser.add_argument("--model", default=None, help="default: resnet50 on CUDA, mobilenetv3_large_100 on CPU")
    parser.add_argument("--images", type=int, default=None, help="default: 4,096 on CUDA, 128 on CPU")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 256 on CUDA, 32 on CPU")
    parser.add_argument("--check-rows", type=int, default=64, help="crops compared against CPU fp32")
    parser.add_argument(
        "--concurrent", type=int, default=2,
        help="also time this many model workers at once on the device, per configuration (0 or 1: skip)",
    )
    args = parser.parse_args()

    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    on_cuda = args.device.startswith("cuda")
    args.model = args.model or ("timm:resnet50@random" if on_cuda else "timm:mobilenetv3_large_100@random")
    args.images = args.images or (4096 if on_cuda else 128)
    args.batch_size = args.batch_size or (256 if on_cuda else 32)

    import pipelines.engine.inference as inference
    from pipelines.data.datasets import load_folder
    from pipelines.data.preprocess import normalise
    from pipelines.zoo import build_model, resolve

    (ms,) = resolve(args.model)
    n, device = args.images, args.device
    base = inference.InferenceOptions(batch_size=args.batch_size, device=device, threads=1)
    torch.set_num_threads(base.threads)  # as a model actor of 1 CPU (ModelStage) runs; the baseline alike
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-task-"))
    rows = []
    try:
        dataset = load_folder("bench", make_images(work / "images", n), "id")
        started = time.perf_counter()
        crops = decode_crops(dataset, ms.preprocess, base.max_image_pixels)
        decode_s = time.perf_counter() - started
        crops_path = work / "crops.npy"
        if args.concurrent > 1:
            np.save(crops_path, crops)
        configs = [("fp32", base)]
        if on_cuda:
            configs += [("bf16 autocast", replace(base, amp=True)),
                        ("bf16 autocast + channels_last", replace(base, amp=True, channels_last=True))]
        logits_by_config = {}
        for name, opts in configs:
            model, _, _ = inference.load_model(ms, opts)
            actor_pass(model, crops[: opts.batch_size], ms, opts)  # warm-up (allocator, cuDNN autotuning)
            passes = [actor_pass(model, crops, ms, opts) for _ in range(2)]
            forward_s = min(p[0] for p in passes)
            with_kappa_s = min(p[0] + p[1] for p in passes)
            logits_by_config[name] = passes[-1][2]
            raw = raw_forward(model, crops, ms.preprocess, n, opts.batch_size, device, opts.amp, opts.channels_last)
            rows.append((f"forward_all per block, {name} (img/s {n / forward_s:,.0f} vs raw {n / raw:,.0f})", n,
                         forward_s, raw, "≥ 0.85 of raw throughput"))
            rows.append((f"  + κ columns per block, {name} (img/s {n / with_kappa_s:,.0f})", n, with_kappa_s, raw,
                         "≥ 0.85 of raw throughput"))
            del model
            if on_cuda:
                torch.cuda.empty_cache()
            if args.concurrent > 1:
                per_image = concurrent_actors(ms, crops_path, n, opts, args.concurrent)
                rows.append((f"  {args.concurrent} model workers at once, {name} (img/s {1 / per_image:,.0f} in "
                             "all)", n, per_image * n, raw, "–"))
        # agreement with CPU fp32 on the first crops
        check = min(args.check_rows, n)
        cpu_model = build_model(ms).eval()
        with torch.inference_mode():
            x = normalise(torch.from_numpy(crops[:check]), ms.preprocess, "cpu")
            cpu_logits = cpu_model(x).float().numpy()
        agreement = []
        for name, logits in logits_by_config.items():
            diff = np.abs(logits[:check] - cpu_logits)
            top1 = float(np.mean(logits[:check].argmax(1) == cpu_logits.argmax(1)))
            scale = float(np.abs(cpu_logits).max())
            agreement.append(f"{name}: max |Δlogit| {diff.max():.3g} (max |logit| {scale:.3g}), "
                             f"top-1 agreement {top1:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    where = torch.cuda.get_device_name(0) if on_cuda else "CPU"
    print(f"\n{args.model}, {n} generated 500×375 JPEGs (decoded once in {decode_s:.1f} s before timing, not timed "
          f"below), batch {args.batch_size}, device {device} ({where}), {torch.get_num_threads()} torch thread(s), "
          f"torch {torch.__version__}\n")
    print_table(rows)
    print("\nratio = baseline / ours = the model side's share of the raw forward throughput (ours: best of 2 passes "
          "after a warm-up; baseline: best of 3).")
    print(f"Logits against CPU fp32 on the first {check} crops (same weights):")
    for line in agreement:
        print(f"- {line}")


if __name__ == "__main__":
    main()
