"""The pixel cache: one byte budget (store.pixel_cache_mb) for the resource
store and the session images together, with keys that cannot collide."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sensord.daemon.acquisition.session_images import ImageFolder
from sensord.daemon.store.pixel_cache import PixelCache
from sensord.daemon.store.resources import ResourceStore
from sensord.filters import png
from tests.support import filters_api, images
from tests.support.modality import create_session, device_of, expose, subscribe_status

MiB = 1 << 20


def frame(value: int, side: int = 64) -> np.ndarray:
    return np.full((side, side), value, np.uint16)


def test_the_budget_holds_after_every_put_and_the_least_recent_goes_first():
    one = frame(0).nbytes
    cache = PixelCache(3 * one)
    for i in range(10):
        cache.put(f"k{i}", frame(i))
        assert cache.used_bytes <= cache.max_bytes
        cache.get("k0")                  # kept fresh, so never the one evicted
    assert cache.used_bytes == 3 * one and len(cache) == 3
    assert cache.get("k0") is not None and cache.get("k9") is not None and cache.get("k1") is None


def test_an_array_beyond_the_budget_is_handed_back_uncached():
    cache = PixelCache(100)
    big = frame(1)
    assert cache.put("big", big) is big and not big.flags.writeable
    assert cache.get("big") is None and cache.used_bytes == 0


def test_scopes_keep_equal_keys_apart():
    cache = PixelCache(MiB)
    store, sessions = cache.scope("resources"), cache.scope("session images")
    a, b = frame(1), frame(2)
    store.put("same-id", a)
    sessions.put("same-id", b)
    assert store.get("same-id") is a and sessions.get("same-id") is b
    assert cache.used_bytes == a.nbytes + b.nbytes
    store.drop("same-id")
    assert store.get("same-id") is None and sessions.get("same-id") is b
    assert cache.used_bytes == b.nbytes


def test_store_and_session_images_evict_each_other_from_one_budget(tmp_path):
    """Two resources and two session images, each a third of the budget: with
    one budget the fourth evicts the first resource (with a budget each, as
    before, all four would stay)."""
    decodes = []

    def decode(data: bytes) -> np.ndarray:
        decodes.append(len(data))
        return png.decode_gray16(data, max_width=4096, max_height=4096)

    one = frame(0).nbytes
    cache = PixelCache(3 * one)
    store = ResourceStore(tmp_path / "resources", lifetime=3600, quota_bytes=64 * MiB, decode=decode,
                          pixel_cache=cache)
    folder = ImageFolder(tmp_path / "sessions", pixel_cache=cache)
    store.start()
    folder.start()

    resources = []
    for value in (1, 2):
        pixels = frame(value)
        resources.append(store.create(image_info={}, media=images.png16(pixels), pixels=pixels))
        assert cache.used_bytes <= cache.max_bytes
    saved = []
    for value in (3, 4):
        pixels = frame(value)
        saved.append(folder.save("s1", f"i{value}", png=images.png16(pixels), preview=b"jpeg",
                                 pixels=pixels, image_info={}))
        assert cache.used_bytes <= cache.max_bytes

    assert cache.used_bytes == 3 * one
    assert saved[1].pixels()[0, 0] == 4 and store.pixels(resources[1])[0, 0] == 2
    assert decodes == []                                     # those three were still cached
    assert store.pixels(resources[0])[0, 0] == 1
    assert len(decodes) == 1                                 # the first resource had been evicted
    assert cache.used_bytes <= cache.max_bytes


def test_the_daemon_keeps_uploads_and_exposures_within_one_budget(serve):
    budget_mb = 8
    srv = serve(store={"pixel_cache_mb": budget_mb})
    cache = srv.daemon.pixel_cache
    assert cache.max_bytes == budget_mb * MiB

    offered = 0
    uploaded = []
    for seed in range(3):                                    # 2 MiB of pixels each
        pixels = images.raw_image(1024, 1024, seed=seed)
        response = filters_api.upload(srv, media=images.png16(pixels))
        assert response.status_code == 201, response.text
        uploaded.append(response.json()["id"])
        offered += pixels.nbytes
        assert cache.used_bytes <= cache.max_bytes

    dev = device_of(srv, "Simradix Select")["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    stream = subscribe_status(srv, sid)
    acquired = []
    for _ in range(2):
        _, info = expose(srv, sid, dev, stream)
        acquired.append(info["id"])
        offered += info["width"] * info["height"] * 2
        assert cache.used_bytes <= cache.max_bytes

    # Together they offered more than the budget, so the one budget gave up its
    # least recent entry, an upload (with a budget each, as before, the uploads
    # alone fit theirs and the first would still be held).
    assert offered > cache.max_bytes
    assert cache.scope("resources").get(uploaded[0]) is None
    assert cache.scope("session images").get(acquired[-1]) is not None


def test_the_documented_key_says_it_is_one_budget_for_both():
    config = (Path(__file__).resolve().parent.parent / "config" / "sensord.toml").read_text()
    head, _, _ = config.partition("\npixel_cache_mb = ")
    comment = " ".join(line.lstrip("# ") for line in head.splitlines()[-3:] if line.startswith("#"))
    assert "one budget" in comment.lower()
    assert "resources" in comment and "sessions" in comment
