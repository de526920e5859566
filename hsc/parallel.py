"""Row-chunk parallelism for the numpy passes of ``hsc``: one shared thread pool (numpy releases the GIL in
its inner loops, so memory-bound passes over (N, C) arrays use every core).

The chunks' work must not start threads of its own: no dense BLAS products inside them (the row dots of
``hsc.softmax`` are 1,000-long, below OpenBLAS's threading threshold; sparse products use none).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
MAX_THREADS = 8
_POOL: ThreadPoolExecutor | None = None
_WORKER = threading.local()  # .active is True inside a pool task


def pool() -> ThreadPoolExecutor:
    """The shared pool: min(MAX_THREADS, cpu count) threads, created on first use."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(MAX_THREADS, os.cpu_count() or 1)))
    return _POOL


def map_row_chunks(fn: Callable[[int, int], T], n_rows: int, chunk_rows: int) -> list[T]:
    """``[fn(start, stop) for each chunk of chunk_rows rows]`` in order; on the shared pool when there are several
    chunks and several cores, in place when called from a pool task."""
    bounds = [(a, min(a + chunk_rows, n_rows)) for a in range(0, n_rows, chunk_rows)]
    if len(bounds) <= 1 or (os.cpu_count() or 1) == 1 or getattr(_WORKER, "active", False):
        return [fn(a, b) for a, b in bounds]  # a call from inside a pool task runs in place (no deadlock)

    def task(bound: tuple[int, int]) -> T:
        _WORKER.active = True
        try:
            return fn(*bound)
        finally:
            _WORKER.active = False

    return list(pool().map(task, bounds))
