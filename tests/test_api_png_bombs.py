"""Uploads that lie about their size cost the daemon what they declare, not what they claim.

Through the real server: four lying PNGs posted at once, each answered 400
with a JSON body that names the lie, while the peak resident memory of the
process (which hosts the daemon) rises by less than 100 MB. Before the
bounded decoder, OpenCV allocated each IDAT's claimed length: 4.4 GB for
one 141-byte file, 8.2 GB for four at once; and a header of 1024x1024 over
256 MiB of zeros was stored (201), its surplus silently ignored.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from tests.support import images, png_bombs
from tests.support.filters_api import API, assert_error
from tests.support.memory import MiB, peak_bytes, reset_peak
from tests.support.server import PASSWORD, USER


def _post_at_once(srv, bodies: list[bytes]) -> list[requests.Response]:
    """Post each body at the same time, alternately as a multipart upload and
    as the beta SDK's bare image/png body."""
    def post(numbered: tuple[int, bytes]) -> requests.Response:
        i, body = numbered
        with requests.Session() as http:
            http.auth = (USER, PASSWORD)
            if i % 2:
                return http.post(srv.url(API + "/images"), data=body,
                                 headers={"Content-Type": "image/png"}, timeout=60)
            return http.post(srv.url(API + "/images"), timeout=60,
                             files=images.upload_files(images.image_info(), body))

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, enumerate(bodies)))


def _warm(srv) -> int:
    """One good upload first: the password check (scrypt holds 32 MiB while
    it runs, then the credentials are cached) and first-use imports are not
    what is measured. Returns the resident size the peak starts from."""
    assert srv.http.post(srv.url(API + "/images"), files=images.upload_files(
        images.image_info(), images.png16(images.raw_image()))).status_code == 201
    return reset_peak()


def test_four_chunk_length_bombs_at_once_cost_less_than_100_mb(serve):
    srv = serve()
    bomb = png_bombs.claimed_length()
    assert len(bomb) < 160
    before = _warm(srv)
    answers = _post_at_once(srv, [bomb] * 4)
    grown = peak_bytes() - before
    for response in answers:
        assert_error(response, 400, "claims 4294967280 bytes")
    print(f"peak RSS rose by {grown / MiB:.1f} MiB")
    assert grown < 100 * MiB, f"peak RSS rose by {grown / MiB:.0f} MiB"


def test_four_inflation_bombs_at_once_are_refused_within_what_they_declare(serve):
    """1024x1024 declared (2 MiB of scanlines), 256 MiB of zeros behind it."""
    srv = serve(images={"max_width": 1024, "max_height": 1024})
    bomb = png_bombs.inflating(1024, 1024, 256)
    before = _warm(srv)
    answers = _post_at_once(srv, [bomb] * 4)
    grown = peak_bytes() - before
    for response in answers:
        assert_error(response, 400, "inflates to more than")
    print(f"peak RSS rose by {grown / MiB:.1f} MiB")
    assert grown < 100 * MiB, f"peak RSS rose by {grown / MiB:.0f} MiB"
    assert srv.http.get(srv.url(API)).status_code == 200     # and the daemon still answers
