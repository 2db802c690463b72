"""Memory given back after a burst: 8 concurrent uploaders, then the daemon's RSS.

The daemon runs as its own process (as in production, defaults but for the
users). Its idle RSS is read after one authenticated request; then 8
clients upload the 2400x1708 16-bit test image at once, each on its own
connection, for `BURST_SECONDS`; then its RSS is read every few seconds
for `AFTER_SECONDS`. Goal (issue 14): within 20 % of idle a minute after
the uploaders stop. The daemon drops cached pixels idle for 30 s and
trims the heap every 10 s (daemon/malloc.py, store/pixel_cache.py).
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import requests

from sensord.filters import png

from .filters_http import start_daemon, test_image, upload_body
from .orthanc_side import _kib
from .timing import goal

UPLOADERS = 8
BURST_SECONDS = 8.0
AFTER_SECONDS = 60.0
SAMPLE_SECONDS = 5.0
TARGET = 1.2


def main() -> None:
    print(f"memory after a burst ({os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}):")
    body, headers = upload_body(png.encode_gray16(test_image()))
    with tempfile.TemporaryDirectory() as tmp:
        proc, base, client = start_daemon(Path(tmp), "bench-password")
        try:
            assert client.get(base).ok
            time.sleep(2.0)
            idle = _kib(proc.pid, "VmRSS")
            counts = [0] * UPLOADERS
            failures: list[str] = []
            stop = time.monotonic() + BURST_SECONDS

            def uploader(k: int) -> None:
                with requests.Session() as session:
                    session.auth = client.auth
                    while time.monotonic() < stop:
                        answer = session.post(base + "/images", data=body, headers=headers, timeout=60)
                        if answer.status_code != 201:
                            failures.append(f"{answer.status_code} {answer.text[:100]}")
                            return
                        counts[k] += 1

            threads = [threading.Thread(target=uploader, args=(k,)) for k in range(UPLOADERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            ended = time.monotonic()
            assert not failures, failures[:3]
            peak, right_after = _kib(proc.pid, "VmHWM"), _kib(proc.pid, "VmRSS")
            print(f"  {UPLOADERS} uploaders for {BURST_SECONDS:g} s: {sum(counts)} uploads; "
                  f"RSS idle {idle >> 10} MB, peak {peak >> 10} MB, at the end {right_after >> 10} MB")
            samples = []
            while (since := time.monotonic() - ended) < AFTER_SECONDS:
                time.sleep(min(SAMPLE_SECONDS, AFTER_SECONDS - since))
                samples.append((time.monotonic() - ended, _kib(proc.pid, "VmRSS")))
            print("  RSS after: " + ", ".join(f"{s:.0f} s {rss >> 10} MB" for s, rss in samples))
            ratio = samples[-1][1] / idle
            print(f"    {AFTER_SECONDS:.0f} s after: {ratio:.2f}x idle; goal <= {TARGET:g}x: {goal(ratio <= TARGET)}")
        finally:
            proc.terminate()
            proc.wait(timeout=20)
