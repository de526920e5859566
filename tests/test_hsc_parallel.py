"""hsc.parallel: the shared row-chunk pool (order, errors, nesting, BLAS threads inside tasks)."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from hsc import parallel


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_chunks_cover_the_rows_in_order():
    """Oracle: the chunk bounds written out by hand, and the serial list comprehension."""
    assert parallel.map_row_chunks(lambda a, b: (a, b), 10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert parallel.map_row_chunks(lambda a, b: (a, b), 0, 4) == []
    values = np.arange(1000.0)
    sums = parallel.map_row_chunks(lambda a, b: values[a:b].sum(), 1000, 7)
    assert sums == [values[a : a + 7].sum() for a in range(0, 1000, 7)]


def test_an_error_in_a_task_reaches_the_caller():
    def fail_late(a: int, b: int) -> int:
        if a >= 60:
            raise ValueError(f"probs: bad row {a}")
        return a

    with pytest.raises(ValueError, match="probs: bad row 60"):
        parallel.map_row_chunks(fail_late, 100, 20)


def test_a_nested_call_runs_in_place_instead_of_waiting_for_the_busy_pool():
    """Every pool thread runs an outer task that maps again; without the in-place rule this would deadlock."""
    threads = parallel.pool()._max_workers

    def outer(a: int, b: int) -> int:
        return sum(parallel.map_row_chunks(lambda c, d: d - c, b - a, 3))

    result: list[list[int]] = []
    runner = threading.Thread(target=lambda: result.append(parallel.map_row_chunks(outer, 40 * threads, 40)))
    runner.start()
    runner.join(timeout=30)
    assert not runner.is_alive(), "nested map_row_chunks deadlocked"
    assert result == [[40] * threads]


@pytest.mark.skipif(
    (os.cpu_count() or 1) < 2 or not _blas_threads() or max(_blas_threads()) < 2,
    reason="one core or single-threaded BLAS: tasks run in place and BLAS has nothing to limit",
)
def test_blas_is_single_threaded_inside_tasks_and_restored_after():
    before = _blas_threads()
    inside = parallel.map_row_chunks(lambda a, b: _blas_threads(), 4, 1)
    assert all(threads == [1] * len(before) for threads in inside)
    assert _blas_threads() == before
