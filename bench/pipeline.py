"""Exposure pipeline on a 2400x1708 frame, stage by stage, in process.

Reference: copying the frame (np.copy), measured in the same run. Also runs
the pipeline with the PNG encode inline, to show what encoding it on a
worker thread while hashing and making the preview buys.
"""
from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future
from statistics import median

import numpy as np

from sensord.daemon.acquisition import pipeline
from sensord.drivers.base import FrameEvent, Sensor
from sensord.drivers.phantom import phantom

from .timing import best_of, row

HEIGHT, WIDTH = 1708, 2400
RUNS = 7
SENSOR = Sensor(model_name="Supreme 2", serial_number="B1", brand="bench", family="Supreme",
                size=2, width=WIDTH, height=HEIGHT, supports_binning=True, version="1", bits=12)


class _Inline:
    """An executor that runs the task at once, in the caller's thread."""

    def submit(self, fn, *args, **kwargs):
        future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


@contextlib.contextmanager
def _inline_encode():
    saved, pipeline._ENCODER = pipeline._ENCODER, _Inline()
    try:
        yield
    finally:
        pipeline._ENCODER = saved


def _runs(frame, alg):
    """Per-run (wall seconds, timings) after one warm-up run."""
    out = []
    for _ in range(RUNS + 1):
        started = time.perf_counter()
        done = pipeline.process(frame, SENSOR, rotation=90, apply_lut=True, hash_alg=alg)
        out.append((time.perf_counter() - started, done.timings))
    return out[1:]


def main() -> None:
    raw = phantom(width=WIDTH, height=HEIGHT, bits=12, dose=1.0, seed=7)
    frame = FrameEvent(device_id="bench", pixels=raw)
    copy = best_of(lambda: np.copy(raw), repeat=21)
    for alg in ("MD5", "SHA256"):
        runs = _runs(frame, alg)
        with _inline_encode():
            serial = median(wall for wall, _ in _runs(frame, alg))
        print(f"pipeline, {WIDTH}x{HEIGHT} 12-bit phantom, rotation 90, LUT, {alg} "
              f"(median of {RUNS}; ratio to copy):")
        print(row("copy (reference)", copy, copy))
        for stage in pipeline.STAGES:
            print(row(stage, median(t[stage] for _, t in runs), copy))
        total = median(wall for wall, _ in runs)
        print(row("total (wall)", total, copy))
        print(row("total minus PNG encode", median(w - t["png_encode"] for w, t in runs), copy))
        print(row("sum of stages", median(sum(t.values()) for _, t in runs), copy))
        print(row("total, PNG encode inline (serial)", serial, copy))
        print(f"  PNG encode on a worker thread saves {(serial - total) * 1e3:.1f} ms "
              f"({(serial - total) / serial:.0%}); target: total minus PNG encode <= 100 ms")
