"""Timing helpers shared by the in-process contenders."""

from __future__ import annotations

import threading
import time
from typing import Callable, List


def per_op(fn: Callable[[], object], n: int) -> float:
    """Wall seconds per call of ``fn`` over ``n`` calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def cpu_per_op(fn: Callable[[], object], n: int) -> float:
    """CPU seconds of this thread per call of ``fn`` over ``n`` calls: on a shared
    machine, other processes disturb it less than wall time."""
    t0 = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - t0) / n


def per_op_threads(fn: Callable[[], object], n: int, threads: int) -> float:
    """Wall seconds per call when ``threads`` threads each call ``fn`` ``n`` times at once."""
    if threads == 1:
        return per_op(fn, n)
    start = threading.Barrier(threads + 1)
    errors: List[BaseException] = []

    def work() -> None:
        try:
            start.wait(30)
            for _ in range(n):
                fn()
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    start.wait(30)
    t0 = time.perf_counter()
    for w in workers:
        w.join(600)
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    if any(w.is_alive() for w in workers):
        raise TimeoutError("a benchmark thread did not finish")
    return elapsed / (n * threads)
