"""Row-chunk parallelism for the numpy passes of ``hsc``: one shared thread pool (numpy releases the GIL in
its inner loops, so memory-bound passes over (N, C) arrays use every core)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
MAX_THREADS = 8
_POOL: ThreadPoolExecutor | None = None


def pool() -> ThreadPoolExecutor:
    """The shared pool: min(MAX_THREADS, cpu count) threads, created on first use."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(MAX_THREADS, os.cpu_count() or 1)))
    return _POOL


def map_row_chunks(fn: Callable[[int, int], T], n_rows: int, chunk_rows: int) -> list[T]:
    """``[fn(start, stop) for each chunk of chunk_rows rows]`` in order; on the shared pool when there are
    several chunks and several cores."""
    bounds = [(a, min(a + chunk_rows, n_rows)) for a in range(0, n_rows, chunk_rows)]
    if len(bounds) <= 1 or (os.cpu_count() or 1) == 1:
        return [fn(a, b) for a, b in bounds]
    return list(pool().map(lambda ab: fn(*ab), bounds))
