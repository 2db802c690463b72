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


def paired(a, b, *, pairs: int = 9, warmup: int = 1) -> tuple[float, float, float]:
    """Run ``a()`` and ``b()`` alternately, A B A B, ``pairs`` times after ``warmup`` pairs.

    Returns (median seconds of a, median seconds of b, median of the per-pair
    ratios b / a): each ratio compares two runs made a moment apart, so a
    neighbour's load that comes and goes moves both sides of it alike.
    """
    for _ in range(warmup):
        a()
        b()
    times_a, times_b, ratios = [], [], []
    for _ in range(pairs):
        started = time.perf_counter()
        a()
        middle = time.perf_counter()
        b()
        ended = time.perf_counter()
        times_a.append(middle - started)
        times_b.append(ended - middle)
        ratios.append((ended - middle) / (middle - started))
    return statistics.median(times_a), statistics.median(times_b), statistics.median(ratios)


def goal(met: bool) -> str:
    return "met" if met else "NOT met"
