"""hsc.parallel: the shared row-chunk pool (order, errors, nesting)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hsc import parallel


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
