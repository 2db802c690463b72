"""SIGTERM and SIGINT against the real daemon process: what is in progress
finishes, nothing new is accepted, and the process exits 0 within the bound."""
from __future__ import annotations

import base64
import contextlib
import json
import signal
import socket
import time

import pytest

from tests.support.daemon_process import MODALITY, daemon_process
from tests.support.images import image_info, multipart, png16, raw_image, upload_files
from tests.support.loopback import wait_until
from tests.support.modality import ADMIN
from tests.support.server import PASSWORD, USER

FILTERS = "/api/dsio/filters/v1"


def upload_request(port: int) -> tuple[bytes, bytes]:
    """An image upload as raw bytes: (headers and the first half of the body, the rest)."""
    body, content_type = multipart([
        ('name="imageInfo"', {"Content-Type": "application/json"}, json.dumps(image_info()).encode()),
        ('name="imageMedia"; filename="x.png"', {"Content-Type": "image/png"}, png16(raw_image())),
    ])
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    head = (f"POST {FILTERS}/images HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Basic {token}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    half = len(body) // 2
    return head + body[:half], body[half:]


@contextlib.contextmanager
def half_sent_upload(daemon):
    """A connection that has sent the headers and half the body of an upload: (socket, the rest)."""
    first, rest = upload_request(daemon.port)
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(first)
        yield sock, rest


def status_of(sock: socket.socket) -> int:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return int(answer.split(b" ", 2)[1])


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


@pytest.mark.process
def test_sigterm_finishes_the_upload_in_progress_and_accepts_nothing_new(tmp_path):
    with daemon_process(tmp_path, "[server]\nshutdown_seconds = 20.0\n") as daemon:
        with half_sent_upload(daemon) as (sock, rest):
            daemon.signal(signal.SIGTERM)
            assert wait_until(lambda: refuses_connections(daemon.port)), "still accepting after SIGTERM"
            assert daemon.proc.poll() is None           # waiting for the upload
            sock.sendall(rest)
            assert status_of(sock) == 201
        assert daemon.wait(timeout=20) == 0
    log = daemon.log()
    assert "SIGTERM: stopping" in log and "stopped" in log and "Traceback" not in log


@pytest.mark.process
def test_sigterm_waits_for_the_exposure_being_read_out(tmp_path):
    # Realistic sim timing x2: the readout takes about a second.
    with daemon_process(tmp_path, '[drivers]\nurls = ["sim://?models=select0&time_scale=2&seed=3"]\n') as daemon:
        from tests.support.sse_client import EventStream

        http = daemon.http
        device = http.get(daemon.url(MODALITY + "/devices")).json()[0]["deviceId"]
        sid = http.post(daemon.url(MODALITY + "/acquisition"), json={"deviceId": device}).json()["sessionId"]
        stream = EventStream(http, daemon.url(f"{MODALITY}/acquisition/{sid}/status/subscribe"))
        assert http.put(daemon.url(f"{MODALITY}/acquisition/{sid}/info"), json={"enable": True}).status_code == 200
        stream.until(lambda e, d: e == "message" and d["ready"], timeout=20)
        assert http.post(daemon.url(f"{ADMIN}/devices/{device}/expose")).status_code == 200
        stream.until(lambda e, d: e == "message" and d["state"] == "Reading", timeout=10)

        daemon.signal(signal.SIGTERM)
        seen = stream.until(lambda e, d: e == "message" and d["state"] == "NewImage", timeout=20)
        image_id = seen[-1][1]["lastImageId"]
        assert stream.ended.wait(10)                    # then the stream ends with the daemon
        stream.close()
        assert daemon.wait(timeout=20) == 0
    log = daemon.log()
    assert f"waiting for the exposure in progress on session(s) {sid}" in log
    assert f"image {image_id}" in log and "unfinished" not in log


@pytest.mark.process
def test_work_that_never_finishes_is_cut_at_the_bound_and_exit_is_still_0(tmp_path):
    with daemon_process(tmp_path, "[server]\nshutdown_seconds = 1.5\n") as daemon:
        with half_sent_upload(daemon):                  # and never the rest
            assert wait_until(lambda: daemon.http.get(daemon.url(MODALITY)).ok)
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(timeout=15) == 0
            took = time.monotonic() - started
    assert took < 1.5 + 5, f"the 1.5 s bound took {took:.1f} s"
    assert "closing 1 connection(s) with a request still in progress" in daemon.log()


@pytest.mark.process
def test_a_second_signal_later_than_a_second_stops_at_once(tmp_path):
    with daemon_process(tmp_path, "[server]\nshutdown_seconds = 300.0\n") as daemon:
        with half_sent_upload(daemon):
            daemon.signal(signal.SIGTERM)
            assert wait_until(lambda: "SIGTERM: stopping" in daemon.log())
            time.sleep(1.2)                     # past the window of a repeated request
            daemon.signal(signal.SIGINT)
            assert daemon.wait(timeout=15) == 0
    assert "SIGINT again: stopping now" in daemon.log()


@pytest.mark.process
def test_a_repeated_sigterm_is_the_same_graceful_stop(tmp_path):
    """What killing `make run`'s process group does: two SIGTERMs at once."""
    with daemon_process(tmp_path, "[server]\nshutdown_seconds = 20.0\n") as daemon:
        with half_sent_upload(daemon) as (sock, rest):
            # (Two signals sent at once are merged by the kernel before Python sees
            # them; make's own SIGTERM arrives a moment after the kill's.)
            daemon.signal(signal.SIGTERM)
            assert wait_until(lambda: "SIGTERM: stopping" in daemon.log(), interval=0.01)
            daemon.signal(signal.SIGTERM)
            assert wait_until(lambda: "the same stop request" in daemon.log())
            assert daemon.proc.poll() is None           # still waiting for the upload
            sock.sendall(rest)
            assert status_of(sock) == 201
        assert daemon.wait(timeout=20) == 0
    assert "stopping now" not in daemon.log()


@pytest.mark.process
def test_a_third_signal_stops_at_once(tmp_path):
    with daemon_process(tmp_path, "[server]\nshutdown_seconds = 300.0\n") as daemon:
        with half_sent_upload(daemon):
            for seen in ("SIGTERM: stopping", "the same stop request"):
                daemon.signal(signal.SIGTERM)
                assert wait_until(lambda: seen in daemon.log(), interval=0.01)
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(timeout=15) == 0
    assert "SIGTERM again: stopping now" in daemon.log()


@pytest.mark.process
def test_sigterm_with_a_delivery_in_flight_leaves_it_queued_for_the_next_start(tmp_path, datamint):
    fake, url = datamint
    fake.faults.delay(60, path="/resources")      # the delivery's first request hangs
    config = f"""
[server]
shutdown_seconds = 2.0
[drivers]
urls = ["sim://?models=select0&time_scale=0.01"]
[[forward.targets]]
name = "dm"
kind = "datamint"
url = "{url}"
api_key = "key-1"
timeout = 30
[[forward.rules]]
target = "dm"
"""
    with daemon_process(tmp_path, config) as daemon:
        http = daemon.http
        resource = http.post(daemon.url(FILTERS + "/images"),
                             files=upload_files(image_info(), png16(raw_image()))).json()
        queued = http.post(daemon.url(ADMIN + "/forward"), json={"resourceId": resource["id"], "target": "dm"})
        assert queued.status_code == 202, queued.text
        assert wait_until(lambda: fake.faults.held == 1)          # the delivery is in flight
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
        assert fake.resources == []                               # nothing reached Datamint
        assert "exiting anyway" in daemon.log()

        fake.faults.release()                                     # the platform answers again
        daemon.start()
        assert wait_until(lambda: len(fake.resources) == 1, 20), daemon.log()
        assert wait_until(lambda: http.get(daemon.url(ADMIN + "/outbox")).json()["counts"] == {"delivered": 1})
