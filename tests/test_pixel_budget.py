"""The pixel budget: decodes and filters in progress hold at most images.pixel_budget_mb.

Through the real server, with small images and a proportionally small budget
so the module runs in seconds. By hand, at full size (`sensord serve`, an
8192x8192 image, the default 1280 MiB budget, eight concurrent select
calls): one 200 and seven 503, the daemon's peak RSS 1245 MiB; 7.9 GB
before the budget. At 4096x4096: four 200, four 503, +919 MiB, against
+1768 MiB with the budget set out of reach.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from sensord.daemon.forward import delivery
from sensord.daemon.store.pixel_budget import BeyondBudget, BudgetBusy, PixelBudget
from sensord.filters import footprint
from tests.support import images
from tests.support.filters_api import API, assert_error, upload
from tests.support.forward import target
from tests.support.loopback import wait_until
from tests.support.memory import MiB, peak_bytes, reset_peak
from tests.support.modality import create_session, device_of, expose, subscribe_status
from tests.support.server import PASSWORD, USER

ADMIN = "/api/sensord/v1"
SIDE = 1024
CALL = footprint.filter_call_bytes("select", SIDE, SIDE)     # 23 MiB


def _noise(side: int = SIDE) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 4096, (side, side), dtype=np.uint16)
    return images.png16(pixels)


def _select_at_once(srv, rid: str, count: int) -> list[requests.Response]:
    start = threading.Barrier(count)

    def call(_) -> requests.Response:
        with requests.Session() as http:
            http.auth = (USER, PASSWORD)
            start.wait(timeout=10)
            return http.post(srv.url(f"{API}/images/{rid}/filters/select"),
                             json={"enhancementMode": "edgePro"}, timeout=60)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


# --- through the server ---------------------------------------------------------

def test_eight_concurrent_maximum_size_filter_calls_stay_within_the_budget(serve):
    budget_mb = 2 * CALL // MiB + 4                  # room for two calls at once, not three
    # No wait: with the ISA-L encoder a call takes ~20 ms, and in a 0.1 s wait
    # the two slots served all eight calls, so none found the budget full.
    srv = serve(images={"max_width": SIDE, "max_height": SIDE, "pixel_budget_mb": budget_mb,
                        "pixel_budget_wait_seconds": 0.0})
    rid = upload(srv, media=_noise()).json()["id"]   # (also caches the credentials: scrypt is not measured)
    budget = srv.daemon.pixel_budget
    before = reset_peak()
    answers = _select_at_once(srv, rid, 8)
    grown = peak_bytes() - before
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) == {200, 503}, statuses
    for response in answers:
        if response.status_code == 503:
            assert_error(response, 503, "busy", "pixel budget", "try again")
            assert response.headers["Retry-After"] == "1"
        else:
            assert response.headers["Content-Type"] == "image/png"
    assert 0 < budget.peak_bytes <= budget.max_bytes
    assert budget.reserved_bytes == 0
    # What the process really held (measured 32-38 MiB, two calls at once;
    # 127 MiB with no budget): within the budget, plus the answers in flight
    # (2 MiB PNGs, held by both ends) and allocator slack.
    assert grown < budget.max_bytes + 16 * MiB, f"peak RSS rose by {grown / MiB:.0f} MiB"


def test_a_call_larger_than_the_whole_budget_is_413_at_once(serve):
    # A wait that would show: half a minute (a loaded machine answers well within a third of it).
    srv = serve(images={"max_width": SIDE, "max_height": SIDE, "pixel_budget_mb": 16,
                        "pixel_budget_wait_seconds": 30.0})
    rid = upload(srv, media=_noise()).json()["id"]           # decoding needs 11 MiB: fits
    started = time.monotonic()
    response = srv.http.post(srv.url(f"{API}/images/{rid}/filters/select"), json={"enhancementMode": "smooth"})
    assert_error(response, 413, "select filter on a 1024x1024 image needs 23 MiB",
                 "more than the whole pixel budget of 16 MiB", "images.pixel_budget_mb")
    assert "Retry-After" not in response.headers      # no retry can help
    assert time.monotonic() - started < 10.0          # and it did not wait for one
    # unmap needs 15 MiB: the same image, within the same budget.
    assert srv.http.post(srv.url(f"{API}/images/{rid}/filters/unmap")).status_code == 200


def test_an_upload_waits_for_room_then_gets_503(serve):
    srv = serve(images={"pixel_budget_mb": 64, "pixel_budget_wait_seconds": 0.3})
    budget = srv.daemon.pixel_budget
    media = images.png16(images.raw_image())
    assert upload(srv, media=media).status_code == 201
    with budget.reserve(budget.max_bytes, what="the test"):
        started = time.monotonic()
        response = upload(srv, media=media)
        waited = time.monotonic() - started
    assert_error(response, 503, "busy", "decoding a 160x120 PNG")
    assert response.headers["Retry-After"] == "1"
    assert 0.3 <= waited < 2.0
    assert upload(srv, media=media).status_code == 201


def test_a_request_gets_the_room_freed_while_it_waits(serve):
    srv = serve(images={"pixel_budget_mb": 64, "pixel_budget_wait_seconds": 5.0})
    budget = srv.daemon.pixel_budget
    rid = upload(srv).json()["id"]
    held = threading.Event()

    def hold_briefly():
        with budget.reserve(budget.max_bytes, what="the test"):
            held.set()
            time.sleep(0.3)

    holder = threading.Thread(target=hold_briefly)
    holder.start()
    held.wait(5)
    response = srv.http.post(srv.url(f"{API}/images/{rid}/filters/select"), json={"enhancementMode": "smooth"})
    holder.join()
    assert response.status_code == 200, response.text


def test_an_exposure_proceeds_while_the_budget_is_full_and_is_counted(serve):
    srv = serve(images={"pixel_budget_mb": 16})
    budget = srv.daemon.pixel_budget
    dev = device_of(srv, "Simradix Select")
    sid = create_session(srv, dev["deviceId"])["sessionId"]
    with budget.reserve(budget.max_bytes, what="the test"):
        states, info = expose(srv, sid, dev["deviceId"], subscribe_status(srv, sid))
    assert states[-1] == "NewImage"
    # Admitted beyond the budget, never refused or held back: a dose was given.
    assert budget.peak_bytes >= budget.max_bytes + 10 * info["width"] * info["height"]
    assert budget.reserved_bytes == 0


def test_a_filtered_forward_waits_for_the_budget_then_is_delivered(serve, datamint, monkeypatch):
    monkeypatch.setattr(delivery, "BUDGET_WAIT_SECONDS", 0.1)
    fake, url = datamint
    srv = serve(forward={"targets": [target(url)]}, images={"pixel_budget_mb": 64})
    budget = srv.daemon.pixel_budget
    rid = upload(srv).json()["id"]
    with budget.reserve(budget.max_bytes, what="the test"):
        queued = srv.http.post(srv.url(ADMIN + "/forward"), json={"target": "dm", "resourceId": rid,
                                                                  "filter": "select:edgePro"})
        assert queued.status_code == 202
        assert wait_until(lambda: "busy" in (_entry(srv)["lastError"] or ""), timeout=10)
        assert fake.resources == []
    assert wait_until(lambda: _entry(srv)["state"] == "delivered", timeout=15)
    assert len(fake.resources) == 1


def _entry(srv) -> dict:
    [entry] = srv.http.get(srv.url(ADMIN + "/outbox")).json()["entries"]
    return entry


# --- the budget itself ------------------------------------------------------------

def test_reserve_waits_at_most_its_wait_then_refuses():
    budget = PixelBudget(100, wait_seconds=0.05)
    with budget.reserve(60, what="a"):
        with pytest.raises(BudgetBusy, match="b needs 1 MiB") as err:
            with budget.reserve(50, what="b"):
                pass
        assert err.value.status == 503 and err.value.headers == {"Retry-After": "1"}
        with budget.reserve(40, what="c"):
            assert budget.reserved_bytes == 100
    assert budget.reserved_bytes == 0 and budget.peak_bytes == 100


def test_more_than_the_whole_budget_is_refused_without_waiting():
    budget = PixelBudget(100, wait_seconds=10)
    started = time.monotonic()
    with pytest.raises(BeyondBudget) as err:
        with budget.reserve(101, what="x"):
            pass
    assert err.value.status == 413 and time.monotonic() - started < 0.5


def test_admit_never_waits_and_counts_beyond_the_budget():
    budget = PixelBudget(100, wait_seconds=0)
    with budget.reserve(100, what="a"), budget.admit(500, what="exposure"):
        assert budget.reserved_bytes == 600
        with pytest.raises(BudgetBusy):
            with budget.reserve(1, what="b"):
                pass
    assert budget.reserved_bytes == 0 and budget.peak_bytes == 600


def test_a_failing_body_gives_its_bytes_back():
    budget = PixelBudget(100)
    with pytest.raises(RuntimeError):
        with budget.reserve(70, what="a"):
            raise RuntimeError("filter failed")
    assert budget.reserved_bytes == 0


def test_filtered_image_maps_the_budget_to_retry_and_dead_letter(tmp_path, monkeypatch):
    from sensord.daemon.forward.filter_spec import parse
    from sensord.daemon.forward.platforms.base import PermanentError, RetryableError

    monkeypatch.setattr(delivery, "BUDGET_WAIT_SECONDS", 0.05)
    path = tmp_path / "image.png"
    path.write_bytes(images.png16(images.raw_image()))
    info = images.image_info()
    busy = PixelBudget(1 << 30)
    with busy.reserve(1 << 30, what="the test"):
        with pytest.raises(RetryableError, match="busy"):
            delivery.filtered_image(path, info, parse("select:edgePro"), budget=busy)
    with pytest.raises(PermanentError, match="more than the whole pixel budget"):
        delivery.filtered_image(path, info, parse("select:edgePro"), budget=PixelBudget(200_000))
    data, _ = delivery.filtered_image(path, info, parse("select:edgePro"), budget=busy)
    assert data.startswith(b"\x89PNG") and busy.reserved_bytes == 0
