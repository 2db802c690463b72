"""The resource store keeps imageInfo on disk: what a restart reads and
holds grows with the number of resources, not with the size of their
imageInfo, and everything still answers as before after a restart.

Resources are uploaded through the real server; the restart is measured
on the store the daemon builds at start (time and the Python memory it
keeps), then the daemon itself is started again on the same folder.
"""
from __future__ import annotations

import json
import os
import time
import tracemalloc

from sensord.daemon.store.pixel_cache import PixelCache
from sensord.daemon.store.resources import ResourceStore
from sensord.filters.png import decode_gray16
from tests.support import images
from tests.support.filters_api import API, assert_error
from tests.support.json_bodies import info_upload
COUNT = 100


def image_info(entries: int) -> dict:
    """An ImageInfo whose context has ``entries`` keys: 4000 make about 60 KiB,
    within images.max_info_kb, and many small objects once parsed."""
    context = {f"k{i:05d}": i for i in range(entries)}
    return images.image_info(acquisitionInfo={"binning": "Unbinned", "context": context})


def seed(serve, state, info: dict, count: int, monkeypatch) -> list[str]:
    # fsync is what the store pays for durability; it is not what is measured
    # here, and skipping it keeps seeding a hundred resources to a second.
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", lambda fd: None)
        srv = serve(state_dir=state)
        ids = []
        for _ in range(count):
            response = info_upload(srv, json.dumps(info).encode())
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
    srv.daemon.close()
    return ids


def start_store(root) -> tuple[float, int, ResourceStore]:
    """Start a store on ``root`` as the daemon does: (seconds, bytes kept, the store)."""
    store = ResourceStore(root, lifetime=3600, quota_bytes=1 << 40, decode=decode_gray16,
                          pixel_cache=PixelCache(0))
    tracemalloc.start()
    try:
        started = time.perf_counter()
        store.start()
        seconds = time.perf_counter() - started
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return seconds, kept, store


def test_restart_does_not_grow_with_image_info(serve, tmp_path, monkeypatch):
    small, large = image_info(1), image_info(4000)
    assert len(json.dumps(large)) > 60 << 10
    seed(serve, tmp_path / "small", small, COUNT, monkeypatch)
    seed(serve, tmp_path / "large", large, COUNT, monkeypatch)
    figures = {}
    for name in ("small", "large"):
        runs = [start_store(tmp_path / name / "resources") for _ in range(3)]
        assert all(len(store._index) == COUNT for _, _, store in runs)
        figures[name] = (min(s for s, _, _ in runs), min(k for _, k, _ in runs))
        del runs
    stored = COUNT * len(json.dumps(large))
    report = (f"{COUNT} resources, {stored / 2**20:.1f} MiB of imageInfo on disk: start "
              f"{figures['small'][0] * 1e3:.1f} ms / {figures['small'][1] / 1024:.0f} KiB kept with tiny imageInfo, "
              f"{figures['large'][0] * 1e3:.1f} ms / {figures['large'][1] / 1024:.0f} KiB kept with large")
    print(report)
    # What is kept is the index: a few hundred bytes a resource, whatever its imageInfo.
    assert figures["large"][1] < 2 * figures["small"][1] + (256 << 10), report
    assert figures["large"][1] < stored / 20, report
    # And a start reads no more for large imageInfo than for tiny ones.
    assert figures["large"][0] < 2 * figures["small"][0] + 0.03, report


def test_after_a_restart_resources_answer_from_disk(serve, tmp_path, monkeypatch):
    state = tmp_path / "kept"
    info = image_info(3000)
    ids = seed(serve, state, info, 3, monkeypatch)
    again = serve(state_dir=state)
    got = again.http.get(again.url(f"{API}/images/{ids[0]}"))
    assert got.status_code == 200, got.text
    assert got.json()["imageInfo"]["acquisitionInfo"]["context"] == info["acquisitionInfo"]["context"]
    assert got.json()["imageInfo"]["lutInfo"] == images.LUT_INFO
    # The filters read the map from the imageInfo on disk.
    unmapped = again.http.post(again.url(f"{API}/images/{ids[1]}/filters/unmap"))
    assert unmapped.status_code == 200, unmapped.text
    assert again.http.delete(again.url(f"{API}/images/{ids[2]}")).status_code == 204
    assert_error(again.http.get(again.url(f"{API}/images/{ids[2]}")), 404)
    assert again.daemon.store.used_bytes == sum(
        json.loads((again.daemon.store.root / rid / "index.json").read_bytes())["size"] for rid in ids[:2])
    # Only ids in the index are read from disk: an id that names a path, or
    # nothing, is a 404 like any unknown one.
    for rid in ("%2e%2e", "..%2F..%2Fkept", "x" * 5000, "%00", ids[2]):
        for method, path in (("GET", ""), ("GET", "/media"), ("DELETE", ""), ("POST", "/filters/unmap")):
            assert_error(again.http.request(method, again.url(f"{API}/images/{rid}{path}")), 404)


def test_a_store_without_a_readable_index_file_still_loads(serve, tmp_path, monkeypatch):
    """A resource written before index.json existed, or one whose index.json
    is damaged, is read from resource.json instead, and nothing is lost."""
    state = tmp_path / "old"
    ids = seed(serve, state, image_info(10), 2, monkeypatch)
    (state / "resources" / ids[0] / "index.json").unlink()
    (state / "resources" / ids[1] / "index.json").write_bytes(b'{"id": "half')
    again = serve(state_dir=state)
    for rid in ids:
        got = again.http.get(again.url(f"{API}/images/{rid}"))
        assert got.status_code == 200, got.text
        assert got.json()["imageInfo"]["acquisitionInfo"]["context"]["k00009"] == 9


def test_an_index_file_that_names_another_resource_is_not_served(serve, tmp_path, monkeypatch):
    """The index says which folder holds a resource; a folder whose record
    names another id is removed at start, as any unreadable resource is."""
    state = tmp_path / "odd"
    first, second = seed(serve, state, image_info(1), 2, monkeypatch)
    root = state / "resources"
    (root / second / "index.json").write_bytes((root / first / "index.json").read_bytes())
    again = serve(state_dir=state)
    assert again.http.get(again.url(f"{API}/images/{first}")).status_code == 200
    assert_error(again.http.get(again.url(f"{API}/images/{second}")), 404)
    assert not (root / second).exists()
