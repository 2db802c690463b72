"""Filter answers over the real server: the same bytes whether the pixels came
from the upload's proof, from the pixel cache or from a decode of the file;
a deleted resource leaves the cache; a large answer arrives whole however
slowly it is read (the task's thread and the server loop share the sending,
daemon/host/front_door.py), and the bytes it is sent from are never copied
or changed (daemon/api/streamed.py)."""
from __future__ import annotations

import socket
import time
from base64 import b64encode

import numpy as np
import pytest

from sensord import filters
from sensord.daemon.api.streamed import BLOCK, _Shared
from sensord.filters.lut import Lut
from tests.support import images
from tests.support.filters_api import API
from tests.support.server import PASSWORD, USER

LUT = Lut(gamma=2.3, slope=65535.0, offset=0.0, total_grays=4096, minimum_gray=3612, maximum_gray=418)
CALLS = [
    ("unmap", None),
    ("select", {"enhancementMode": "smooth"}),
    ("select", {"enhancementMode": "edgePro"}),
    ("supreme", {"task": "general", "sharpness": 70}),
    ("ae", {"task": "endodontic", "sharpness": 70}),
]


def upload(srv, pixels) -> str:
    response = srv.http.post(srv.url(API + "/images"),
                             files=images.upload_files(images.image_info(), images.png16(pixels)))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def answer(srv, rid, name, body, accept="image/png") -> bytes:
    response = srv.http.post(srv.url(f"{API}/images/{rid}/filters/{name}"), json=body,
                             headers={"Accept": accept})
    assert response.status_code == 200, response.text
    return response.content


@pytest.mark.parametrize("accept", ["image/png", "image/tiff"])
def test_every_filter_answers_the_same_bytes_cached_or_not(serve, tmp_path, accept):
    pixels = filters.lut_map(images.raw_image(96, 128), lut=LUT)
    cached = serve(state_dir=tmp_path / "cached")
    uncached = serve(state_dir=tmp_path / "uncached", store={"pixel_cache_mb": 0})
    for name, body in CALLS:
        # A fresh upload each time, so the first call takes the proof's rows, the second the cache.
        rid = upload(cached, pixels)
        first, second = answer(cached, rid, name, body, accept), answer(cached, rid, name, body, accept)
        assert len(cached.daemon.pixel_cache) > 0
        other = upload(uncached, pixels)
        decoded = answer(uncached, other, name, body, accept)
        assert len(uncached.daemon.pixel_cache) == 0
        assert first == second == decoded, name


def test_deleting_a_resource_drops_its_pixels(serve):
    srv = serve()
    cache = srv.daemon.pixel_cache
    kept, gone = upload(srv, images.raw_image(64, 48, seed=1)), upload(srv, images.raw_image(64, 48, seed=2))
    answer(srv, gone, "unmap", None)        # (images.image_info has a lutInfo)
    held = cache.used_bytes
    assert cache.scope("resources").get(gone) is not None
    assert srv.http.delete(srv.url(f"{API}/images/{gone}")).status_code == 204
    assert cache.scope("resources").get(gone) is None
    assert cache.scope("resources").get(kept) is not None
    assert cache.used_bytes == held // 2        # (two images of one size were held)


def _request(srv, rid: str) -> bytes:
    token = b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    host = srv.base.split("//", 1)[1].split("/", 1)[0]
    return (f"POST {API}/images/{rid}/filters/unmap HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Basic {token}\r\nAccept: image/tiff\r\nContent-Length: 0\r\n\r\n").encode()


def _read_answer(sock: socket.socket, pause: float) -> tuple[bytes, bytes]:
    """(headers, body) of one answer read in small pieces with pauses (bounded by the socket timeout)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    pieces = [body]
    got = len(body)
    while got < length:
        piece = sock.recv(min(1 << 16, length - got))
        assert piece, "the connection closed before the answer ended"
        pieces.append(piece)
        got += len(piece)
        if pause:
            time.sleep(pause)
    return head, b"".join(pieces)


def test_a_large_answer_read_slowly_arrives_whole_twice_on_one_connection(serve):
    """An answer far larger than the socket buffers, read slowly: the task's thread
    sends what the socket takes, the server loop the rest, and the next request
    on the same connection is answered after it."""
    srv = serve()
    pixels = filters.lut_map(np.random.default_rng(4).integers(0, 4096, (1500, 1500), dtype=np.uint16), lut=LUT)
    rid = upload(srv, pixels)
    expected = filters.lut_unmap(pixels, lut=LUT)
    host, port = srv.base.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        for pause in (0.002, 0.0):
            sock.sendall(_request(srv, rid))
            head, body = _read_answer(sock, pause)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert len(body) > 4 << 20
            assert np.array_equal(images.decode(body), expected)


def test_shared_bytes_read_as_views_when_large_and_as_bytes_when_small():
    data = bytes(range(256)) * (3 * BLOCK // 256 + 7)
    shared = _Shared(data)
    assert shared.seekable() and shared.tell() == 0
    assert shared.seek(0, 2) == len(data) and shared.seek(5) == 5
    small = shared.read(10)
    assert type(small) is bytes and small == data[5:15] and shared.tell() == 15
    large = shared.read(2 * BLOCK)
    assert isinstance(large, memoryview) and large == data[15:15 + 2 * BLOCK]
    assert shared.seek(-3, 1) == 15 + 2 * BLOCK - 3
    rest = shared.read()
    assert type(rest) is bytes and rest == data[15 + 2 * BLOCK - 3:]
    assert shared.read(2 * BLOCK) == b"" and shared.read(1) == b""
    shared.close()
    assert bytes(large) == data[15:15 + 2 * BLOCK]      # a view handed out outlives the file
