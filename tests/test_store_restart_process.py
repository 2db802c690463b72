"""A restart of the real daemon process over a store full of large
imageInfo: the memory it holds and the time it takes to answer match a
store of as many resources with tiny ones.

Before the index was split from resource.json, 589 MiB of imageInfo meant
3.8 GB of RSS after a restart and 12 s before the first answer.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.support import images
from tests.support.daemon_process import DaemonProcess
from tests.support.filters_api import API, post_raw

MEDIA = images.png16(images.raw_image(8, 8))
COUNT = 250


def image_info(entries: int) -> bytes:
    # 4000 context keys make about 60 KiB, within images.max_info_kb, and
    # many small objects for a reader that keeps them.
    context = {f"k{i:05d}": i for i in range(entries)}
    return json.dumps(images.image_info(acquisitionInfo={"binning": "Unbinned", "context": context})).encode()


def seed(serve, state: Path, info: bytes, monkeypatch) -> str:
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", lambda fd: None)    # durability is not measured here
        srv = serve(state_dir=state)
        body, ctype = images.multipart([
            ('name="imageInfo"', {"Content-Type": "text/plain; charset=utf-8"}, info),
            ('name="imageMedia"; filename="a.png"', {"Content-Type": "image/png"}, MEDIA)])
        for _ in range(COUNT):
            response = post_raw(srv, body, ctype)
            assert response.status_code == 201, response.text
    srv.daemon.close()
    return response.json()["id"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def restart(folder: Path, rid: str) -> tuple[float, int, dict]:
    """Start the daemon on folder/state: (seconds to its first answer, RSS in KiB, one resource)."""
    daemon = DaemonProcess(folder, "")
    started = time.perf_counter()
    try:
        daemon.start(timeout=60)
        seconds = time.perf_counter() - started
        got = daemon.http.get(daemon.url(f"{API}/images/{rid}"), timeout=10)
        assert got.status_code == 200, got.text
        return seconds, rss_kib(daemon.proc.pid), got.json()
    finally:
        daemon.kill()


@pytest.mark.process
def test_restart_memory_and_time_do_not_grow_with_image_info(serve, tmp_path, monkeypatch):
    small, large = image_info(1), image_info(4000)
    figures = {}
    for name, info in (("small", small), ("large", large)):
        folder = tmp_path / name
        folder.mkdir()
        rid = seed(serve, folder / "state", info, monkeypatch)
        seconds, rss, resource = restart(folder, rid)
        assert resource["imageInfo"]["acquisitionInfo"]["context"] == json.loads(info)["acquisitionInfo"]["context"]
        figures[name] = (seconds, rss)
    total = COUNT * len(large) / 2**20
    report = (f"restart over {COUNT} resources: tiny imageInfo {figures['small'][0]:.2f} s, "
              f"{figures['small'][1] / 1024:.0f} MiB RSS; {total:.1f} MiB of imageInfo "
              f"{figures['large'][0]:.2f} s, {figures['large'][1] / 1024:.0f} MiB RSS")
    print(report)
    # Kept in memory before: about 7 times the JSON on disk (a dict entry per key).
    assert figures["large"][1] - figures["small"][1] < 8 * 1024, report
    assert figures["large"][0] < figures["small"][0] * 1.5 + 0.5, report
