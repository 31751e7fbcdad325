"""Timing helper shared by the benchmarks."""

from __future__ import annotations

import time


def best_of(fn, repeat: int = 5) -> float:
    """Fastest wall time in seconds of ``repeat`` calls of ``fn()`` (the least disturbed run)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
