"""Small timing helpers shared by the benchmarks."""
from __future__ import annotations

import statistics
import time


def best_of(fn, *, repeat: int = 7, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds (median: robust to a noisy neighbour)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def row(name: str, seconds: float, reference: float | None = None, target: float | None = None) -> str:
    text = f"  {name:<34} {seconds * 1e3:9.2f} ms"
    if reference:
        ratio = seconds / reference
        text += f"   {ratio:7.2f}x"
        if target is not None:
            text += f"  (target {target:g}x: {'met' if ratio <= target else 'NOT met'})"
    return text
