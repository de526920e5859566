"""Shared timing helpers of the benchmark scripts (run as ``python benchmarks/bench_*.py``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def _wall_times(setup: Callable[[], object], fn: Callable[[object], object], repeats: int) -> list[float]:
    """Wall times in seconds of ``fn(setup())``, ``repeats`` times, ``setup`` untimed."""
    times = []
    for _ in range(repeats):
        prepared = setup()
        start = time.perf_counter()
        fn(prepared)
        times.append(time.perf_counter() - start)
    return times


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls, in seconds."""
    return min(_wall_times(lambda: None, lambda _: fn(), repeats))


def best_time_after(setup: Callable[[], object], fn: Callable[[object], object], repeats: int) -> float:
    """Minimum wall time of ``fn(setup())`` over ``repeats`` calls, ``setup`` untimed, in seconds."""
    return min(_wall_times(setup, fn, repeats))


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls, in seconds."""
    return statistics.median(_wall_times(lambda: None, lambda _: fn(), repeats))


def print_table(rows: list[tuple[str, int | str, float, float | None, str]]) -> None:
    """Print the BENCHMARKS.md table: (operation, N, ours s, baseline s or None, target) per row; ratio =
    baseline / ours (> 1: ours faster)."""
    print("| operation | N | ours (s) | baseline (s) | ratio | target |")
    print("|---|---|---|---|---|---|")
    for name, size, ours, base, target in rows:
        size_text = f"{size:,}" if isinstance(size, int) else size
        base_text = "–" if base is None else f"{base:.3f}"
        ratio = "–" if base is None else (f"{base / ours:,.0f}×" if base >= 10 * ours else f"{base / ours:.2f}×")
        ours_text = f"{ours:.4f}" if ours >= 0.01 else f"{ours:.6f}"  # microseconds below 10 ms
        print(f"| {name} | {size_text} | {ours_text} | {base_text} | {ratio} | {target} |")
