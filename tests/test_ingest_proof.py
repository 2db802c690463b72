"""Uploads are proved while they are written: a 201 means both done, a bad PNG
leaves nothing behind, and the rows left filtered are undone once, correctly."""
from __future__ import annotations

import struct
import threading
import zlib

import numpy as np
import pytest

from sensord.daemon.store.pixel_cache import PixelCache
from sensord.filters import png
from sensord.filters.png_scanlines import Scanlines
from tests.support import images
from tests.support.filters_api import API, assert_error, upload


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return png.SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _rows(image: np.ndarray, kind: int = 0) -> bytes:
    """Scanlines with filter type ``kind`` written on every row (the bytes stay unfiltered:
    the filter byte alone is what these tests look at, except kind 0)."""
    return b"".join(bytes([kind]) + row.astype(">u2").tobytes() for row in image)


def test_a_well_formed_upload_leaves_its_rows_to_the_first_filter_and_answers_the_same(serve):
    srv = serve()
    pixels = images.raw_image(48, 64)
    data = png.encode_gray16(pixels)        # Up-filtered rows: left to undo
    created = upload(srv, media=data)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    held = srv.daemon.pixel_cache._items[("resources", rid)]
    assert isinstance(held, Scanlines)
    out = srv.http.post(srv.url(f"{API}/images/{rid}/filters/unmap"))
    assert out.status_code == 200
    media = srv.http.get(srv.url(f"{API}/images/{rid}/media"))
    assert media.content == data and media.headers["Content-Length"] == str(len(data))
    np.testing.assert_array_equal(srv.daemon.store.pixels(srv.daemon.store.get(rid)), pixels)


@pytest.mark.parametrize("idat, words", [
    (zlib.compress(_rows(np.zeros((4, 4), np.uint16)))[:-6], "readable"),          # cut short
    (zlib.compress(_rows(np.zeros((4, 4), np.uint16), kind=7)), "filter type 7"),   # an unknown row filter
    (zlib.compress(_rows(np.zeros((5, 4), np.uint16))), "readable"),               # a row more than declared
    (zlib.compress(_rows(np.zeros((4, 4), np.uint16))) + b"tail", "follow"),        # bytes after the stream
])
def test_a_png_that_fails_its_proof_is_400_and_nothing_is_kept(serve, idat, words):
    srv = serve()
    assert_error(upload(srv, media=_png(4, 4, idat)), 400, words)
    assert list(srv.daemon.store.root.iterdir()) == []
    assert srv.daemon.store.used_bytes == 0 and len(srv.daemon.pixel_cache) == 0


def test_a_bad_png_to_a_full_store_hears_of_its_png_first(serve):
    srv = serve(store={"quota_mb": 1})
    big = images.png16(np.random.default_rng(3).integers(0, 65536, (700, 800), dtype=np.uint16))
    assert len(big) > 1 << 20
    bad = bytearray(big)
    bad[-30] ^= 0xFF                                # inside the IDAT: its CRC fails
    assert_error(upload(srv, media=bytes(bad)), 400, "CRC")
    assert_error(upload(srv, media=big), 507, "quota")


def test_the_write_and_the_proof_both_finish_before_the_201(serve, monkeypatch):
    """The resource appears whole: files fsynced by the writer thread, pixels proved here."""
    srv = serve()
    seen = []
    real = srv.daemon.store._writer.submit

    def watched(fn, *args):
        seen.append(threading.current_thread().name)
        return real(fn, *args)

    monkeypatch.setattr(srv.daemon.store._writer, "submit", watched)
    created = upload(srv)
    assert created.status_code == 201
    folder = srv.daemon.store.root / created.json()["id"]
    assert sorted(p.name for p in folder.iterdir()) == ["index.json", "media.png", "resource.json"]
    assert seen and not any(p.name.startswith(".new-") for p in srv.daemon.store.root.iterdir())


def test_rows_left_filtered_are_undone_once_for_concurrent_readers():
    pixels = np.random.default_rng(8).integers(0, 65536, (300, 200), dtype=np.uint16)
    held = png.prove_gray16(png.encode_gray16(pixels), max_width=1000, max_height=1000)
    cache = PixelCache(1 << 30)
    cache.put("k", held)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k"))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(r) for r in results}) == 1
    np.testing.assert_array_equal(results[0], pixels)
    assert not results[0].flags.writeable
    assert cache.used_bytes == held.nbytes == 300 * (1 + 2 * 200)


def test_average_and_paeth_rows_are_decoded_by_the_proof():
    pixels = images.raw_image(40, 30)
    data = images.png16(pixels)     # OpenCV's libpng picks its filters per row, Paeth among them
    held = png.prove_gray16(data, max_width=100, max_height=100)
    np.testing.assert_array_equal(held.pixels(), pixels)
    np.testing.assert_array_equal(png.decode_gray16(data, max_width=100, max_height=100), pixels)
