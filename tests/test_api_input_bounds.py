"""Bounds on what a request may carry, through the real server: the size of
an imageInfo part and of any JSON body (``images.max_info_kb``), and ids
that cannot name anything (404, never a 500)."""
from __future__ import annotations

import json

import pytest

from tests.support import images
from tests.support.filters_api import API, assert_error, upload
from tests.support.json_bodies import MEDIA, info_upload
from tests.support.modality import API as MODALITY
from tests.support.modality import devices

SENSORD = "/api/sensord/v1"


def info_of_size(size: int) -> bytes:
    """A valid ImageInfo of exactly ``size`` bytes (its context pads it)."""
    base = json.dumps(images.image_info(acquisitionInfo={"binning": "Unbinned", "context": {"pad": ""}}))
    pad = size - len(base)
    assert pad >= 0
    return base.replace('"pad": ""', '"pad": "' + "x" * pad + '"').encode()


def test_image_info_up_to_the_bound_is_stored_beyond_it_413(serve):
    srv = serve()
    at_bound = info_upload(srv, info_of_size(64 << 10))
    assert at_bound.status_code == 201, at_bound.text
    assert len(json.dumps(at_bound.json()["imageInfo"])) >= 64 << 10
    stored = set(srv.daemon.store.root.iterdir())
    assert_error(info_upload(srv, info_of_size((64 << 10) + 1)), 413, "imageInfo", "64 KiB")
    assert set(srv.daemon.store.root.iterdir()) == stored      # nothing of the refused one


def test_image_info_size_is_checked_before_it_is_parsed(serve):
    """589 MiB of JSON once cost 3.8 GB of memory; now the part is refused as
    it arrives: past the bound it is a 413 even when it is not JSON at all."""
    srv = serve()
    not_json = b"[" * ((64 << 10) + 1)
    assert_error(info_upload(srv, not_json), 413, "imageInfo")
    # Far past the bound: still the same 413, and still nothing stored.
    huge = b'{"acquisitionInfo": {"context": {"pad": "' + b"x" * (8 << 20) + b'"}}}'
    assert_error(info_upload(srv, huge), 413, "imageInfo")
    assert list(srv.daemon.store.root.iterdir()) == []


def test_the_bound_comes_from_settings(serve):
    srv = serve(images={"max_info_kb": 1})
    assert info_upload(srv, info_of_size(1024)).status_code == 201
    assert_error(info_upload(srv, info_of_size(1025)), 413, "1 KiB")
    rid = upload(srv, info=images.image_info(), media=MEDIA).json()["id"]
    body = json.dumps({"task": "general", "sharpness": 70, "lutInfo": None, "x": "y" * 1024}).encode()
    assert_error(srv.http.post(srv.url(f"{API}/images/{rid}/filters/supreme"), data=body), 413, "1 KiB")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_json_body_beyond_the_bound_is_413(serve, chunked):
    srv = serve()
    context = {"pad": "x" * (64 << 10)}
    body = json.dumps({"deviceId": devices(srv)[0]["deviceId"], "context": context}).encode()
    data = iter([body[:1000], body[1000:]]) if chunked else body      # a generator: requests sends it chunked
    response = srv.http.post(srv.url(f"{MODALITY}/acquisition"), data=data,
                             headers={"Content-Type": "application/json"})
    assert_error(response, 413, "64 KiB")
    assert srv.http.get(srv.url(f"{MODALITY}/acquisition")).json() == []
    # Within the bound, chunked or not, the same body is taken.
    small = json.dumps({"deviceId": devices(srv)[0]["deviceId"], "context": {"pad": "x" * 1000}}).encode()
    data = iter([small[:100], small[100:]]) if chunked else small
    ok = srv.http.post(srv.url(f"{MODALITY}/acquisition"), data=data, headers={"Content-Type": "application/json"})
    assert ok.status_code == 201, ok.text


# Each one names no outbox entry; those past 2**63 - 1 once reached SQLite (500).
NO_ENTRY = ["9223372036854775808", "18446744073709551616", "9" * 40, "9" * 5000,
            "-1", "0", "abc", "1.5", "1e3", "%D9%A3"]     # the last is ٣, a digit to Python's int()


@pytest.mark.parametrize("method,suffix", [("POST", "/retry"), ("DELETE", "")], ids=["retry", "drop"])
def test_an_outbox_id_out_of_range_is_404(serve, method, suffix):
    srv = serve()
    for entry_id in NO_ENTRY:
        response = srv.http.request(method, srv.url(f"{SENSORD}/outbox/{entry_id}{suffix}"))
        assert response.status_code == 404, (entry_id[:40], response.text)
        assert_error(response, 404)
    # The largest id SQLite can hold is still looked up (and is not there).
    response = srv.http.request(method, srv.url(f"{SENSORD}/outbox/9223372036854775807{suffix}"))
    assert_error(response, 404, "no outbox entry 9223372036854775807")
