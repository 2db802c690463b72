"""An upload's folder is renamed into place while its PNG is still being proved
(daemon/store/resources.py): it is served only once proved, a failed proof
takes it away, and a folder a crash left marked unproven is proved at start."""
from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from sensord.daemon.store.pixel_cache import PixelCache
from sensord.daemon.store.resource_folder import UNPROVEN
from sensord.daemon.store.resources import ResourceStore
from sensord.filters import png
from tests.support import images

MiB = 1 << 20


def make_store(root: Path, decode=None) -> ResourceStore:
    store = ResourceStore(root, lifetime=3600, quota_bytes=64 * MiB, pixel_cache=PixelCache(8 * MiB),
                          decode=decode or (lambda data: png.decode_gray16(data, max_width=4096, max_height=4096)))
    store.start()
    return store


def placed(root: Path, timeout: float = 10.0) -> Path:
    """The resource folder once the writer has renamed it into place (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in root.iterdir() if not p.name.startswith(".")]
        if found:
            return found[0]
        time.sleep(0.005)
    raise AssertionError("the writer never renamed the folder into place")


def proved(data: bytes):
    return lambda: png.prove_gray16(data, max_width=4096, max_height=4096)


def test_a_folder_in_place_is_not_served_until_its_proof_passes(tmp_path):
    store = make_store(tmp_path)
    pixels = images.raw_image(24, 32)
    data = png.encode_gray16(pixels)
    seen = {}

    def proof():
        folder = placed(tmp_path)
        seen["marked"] = (folder / UNPROVEN).exists()
        seen["served"] = store.get(folder.name) is not None or store.count != 0
        return proved(data)()

    res = store.create(image_info={}, media=data, proof=proof)
    assert seen == {"marked": True, "served": False}
    assert sorted(p.name for p in (tmp_path / res.id).iterdir()) == ["index.json", "media.png", "resource.json"]
    np.testing.assert_array_equal(store.pixels(res), pixels)


def test_a_proof_that_fails_after_the_rename_leaves_nothing(tmp_path):
    store = make_store(tmp_path)
    data = png.encode_gray16(images.raw_image(24, 32))

    def proof():
        placed(tmp_path)
        raise png.PngFormatError("not proved")

    with pytest.raises(png.PngFormatError):
        store.create(image_info={}, media=data, proof=proof)
    assert list(tmp_path.iterdir()) == []
    assert store.used_bytes == 0 and store.count == 0


def test_a_marked_folder_is_proved_at_start(tmp_path):
    """As a crash would leave them: a good PNG stays (marker gone), a broken one goes."""
    store = make_store(tmp_path)
    good_pixels = images.raw_image(24, 32)
    good = store.create(image_info={}, media=png.encode_gray16(good_pixels), proof=proved(png.encode_gray16(good_pixels)))
    data = png.encode_gray16(images.raw_image(24, 32))
    bad = store.create(image_info={}, media=data, proof=proved(data))
    store.close()
    for res in (good, bad):
        (tmp_path / res.id / UNPROVEN).write_bytes(b"")
    broken = bytearray(data)
    broken[-20] ^= 0xFF                 # inside the IDAT: its CRC fails
    (tmp_path / bad.id / "media.png").write_bytes(bytes(broken))

    again = make_store(tmp_path)
    assert again.get(bad.id) is None and not (tmp_path / bad.id).exists()
    kept = again.get(good.id)
    assert kept is not None and not (tmp_path / good.id / UNPROVEN).exists()
    np.testing.assert_array_equal(again.pixels(kept), good_pixels)


def test_a_marked_folder_that_cannot_be_decoded_now_stays_marked(tmp_path):
    """Not a PNG error (the pixel budget, say): kept, and proved at a later start."""
    store = make_store(tmp_path)
    data = png.encode_gray16(images.raw_image(24, 32))
    res = store.create(image_info={}, media=data, proof=proved(data))
    store.close()
    (tmp_path / res.id / UNPROVEN).write_bytes(b"")

    def busy(_data):
        raise RuntimeError("no room now")

    assert make_store(tmp_path, decode=busy).get(res.id) is not None
    assert (tmp_path / res.id / UNPROVEN).exists()
    assert make_store(tmp_path).get(res.id) is not None
    assert not (tmp_path / res.id / UNPROVEN).exists()


def test_rows_are_undone_while_the_disk_still_writes(tmp_path, monkeypatch):
    """A proof done before the files are on disk: the wait undoes the row filters
    (the first filter call finds the pixels ready); the same pixels either way."""
    from sensord.daemon.store import resource_folder

    store = make_store(tmp_path / "slow")
    pixels = images.raw_image(24, 32)
    data = png.encode_gray16(pixels)        # Up-filtered rows
    real = resource_folder.write_file

    def slow(path, content, *, sync=True):
        if path.name == resource_folder.MEDIA:
            time.sleep(0.3)
        real(path, content, sync=sync)

    monkeypatch.setattr(resource_folder, "write_file", slow)
    slow_res = store.create(image_info={}, media=data, proof=proved(data))
    monkeypatch.setattr(resource_folder, "write_file", real)

    def written_at_once(fn, *args):         # the files on disk before the proof starts
        done: Future = Future()
        done.set_result(fn(*args))
        return done

    later = make_store(tmp_path / "fast")
    monkeypatch.setattr(later._writer, "submit", written_at_once)
    fast_res = later.create(image_info={}, media=data, proof=proved(data))
    for held_in, res, ready in ((store, slow_res, True), (later, fast_res, False)):
        held = held_in._cache.cache._items[("resources", res.id)]
        assert (held._pixels is not None) is ready
        np.testing.assert_array_equal(held_in.pixels(res), pixels)
