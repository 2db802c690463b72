"""Forwarding throughput: the outbox delivering to a loopback Datamint,
beside a plain requests upload of the same files, in the same run.

The platform (the tests' faithful Datamint fake) runs in its own process so
it does not share a GIL with the sender being measured.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from .filters_http import free_port, test_image
from .timing import row

FILES = 16
SERVER = """
import sys
from waitress import serve
from tests.support.fake_datamint import FakeDatamint
serve(FakeDatamint().app, host="127.0.0.1", port=int(sys.argv[1]), threads=8, _quiet=True,
      inbuf_overflow=64 << 20, recv_bytes=1 << 18)
"""


def main() -> None:
    from sensord.daemon.forward.delivery import Forwarder, Target
    from sensord.daemon.forward.outbox import Outbox
    from sensord.daemon.forward.platforms import open_adapter
    from sensord.filters import png

    root = Path(__file__).resolve().parent.parent
    data = png.encode_gray16(test_image())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], cwd=root)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/resources", headers={"apikey": "key-1"}, timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("fake platform did not start")
                time.sleep(0.1)
        total_mb = FILES * len(data) / 2**20
        print(f"sensord forwarding benchmark ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}): "
              f"{FILES} x {len(data) / 2**20:.1f} MiB PNG to a loopback Datamint")

        http = requests.Session()
        started = time.perf_counter()
        for i in range(FILES):
            answer = http.post(url + "/resources", headers={"apikey": "key-1"},
                               files={"resource": (f"plain-{i}.png", data, "image/png")},
                               data={"source": "api", "mimetype": "image/png", "bypass_inbox": "false"})
            assert answer.ok, answer.text
        plain = time.perf_counter() - started

        with tempfile.TemporaryDirectory() as tmp:
            outbox = Outbox(Path(tmp) / "outbox")
            outbox.start()
            adapter = open_adapter("datamint", name="dm", options={"url": url, "api_key": "key-1"})
            forwarder = Forwarder(outbox, {"dm": Target(name="dm", kind="datamint", adapter=adapter)},
                                  work_dir=Path(tmp) / "work")
            forwarder.start()
            started = time.perf_counter()
            for i in range(FILES):
                outbox.add([("dm", "raw")], image_id=f"00000000-0000-4000-8000-{i:012d}",
                           image_info={"width": 2400, "height": 1708}, context={}, png=data)
            queued = time.perf_counter() - started
            started = time.perf_counter()
            while outbox.counts().get("delivered", 0) < FILES:
                forwarder.tick()
                time.sleep(0.002)
            delivered = time.perf_counter() - started
            forwarder.close()
            outbox.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(row(f"plain requests upload, {FILES} files", plain))
    print(row(f"outbox queueing (fsync'd), {FILES} files", queued))
    print(row(f"outbox delivery, {FILES} files", delivered))
    ratio = plain / delivered
    print(f"  throughput: plain {total_mb / plain:.0f} MiB/s, outbox {total_mb / delivered:.0f} MiB/s, "
          f"ratio {ratio:.2f}x (target at least 0.8x: {'met' if ratio >= 0.8 else 'NOT met'})")
