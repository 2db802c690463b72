"""The status page at ``/``: its snapshot, its live feed over SSE, and the
page itself in headless Chromium against a running daemon."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import requests

from sensord.daemon.live.hub import CLOSED, Hub, SubscriberLimit
from sensord.daemon.live.status_feed import StatusFeed
from tests.support.browser import chromium, with_credentials  # noqa: F401  (fixture)
from tests.support.forward import target
from tests.support.loopback import closed_port_url, free_port, wait_until
from tests.support.modality import API, control, create_session, device_of, put_info
from tests.support.server import PASSWORD, USER, make_settings, running
from tests.support.sse_client import EventStream

STATUS = "/api/sensord/v1/status"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def snapshot(srv) -> dict:
    response = srv.http.get(srv.url(STATUS))
    assert response.status_code == 200, response.text
    return response.json()


def mimetype(response) -> str:
    return response.headers["Content-Type"].split(";")[0].strip()


def session_of(snap: dict, sid: str) -> dict | None:
    return next((s for s in snap["sessions"] if s["sessionId"] == sid), None)


def image_id_after_exposure(srv, sid: str, device_id: str) -> str:
    """Arm the session, expose, and wait for the image; its id."""
    assert put_info(srv, sid, enable=True).status_code == 200
    assert wait_until(lambda: srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()["ready"])
    assert control(srv, device_id, "expose").status_code == 200
    status_url = srv.url(f"{API}/acquisition/{sid}/status")
    assert wait_until(lambda: srv.http.get(status_url).json().get("lastImageId"), 15)   # absent until then
    return srv.http.get(status_url).json()["lastImageId"]


# -- the feed on its own --------------------------------------------------------
def test_feed_coalesces_bursts_and_publishes_only_changes():
    state = {"n": 0}
    built = []

    def build():
        built.append(dict(state))
        return dict(state)

    feed = StatusFeed(build, Hub(SubscriberLimit(4)), interval=30, coalesce=0.1)
    sub = feed.hub.subscribe()
    feed.start()
    try:
        feed.notify()
        assert sub.get(10) == ("status", {"n": 0})
        before = len(built)
        for n in range(1, 51):                    # a burst of changes, notified from several threads
            state["n"] = n
            threads = [threading.Thread(target=feed.notify, args=("event",)) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        published = []
        while not published or published[-1] != ("status", {"n": 50}):
            item = sub.get(10)
            assert item not in (None, CLOSED), published
            published.append(item)
        assert len(built) - before < 10           # a few snapshots for 100 notifications
        before = len(built)
        feed.notify()                             # nothing changed: nothing published
        assert wait_until(lambda: len(built) > before, 10)
        assert sub.get(0.3) is None
    finally:
        feed.close()
    assert sub.get(1) is CLOSED                   # close ends the subscriptions
    feed.close()                                  # and may be called twice


def test_feed_builds_nothing_while_nobody_listens():
    built = []
    feed = StatusFeed(lambda: built.append(1) or {"n": len(built)}, Hub(SubscriberLimit(4)),
                      interval=0.05, coalesce=0.01)
    feed.start()
    try:
        for _ in range(5):
            feed.notify()
            time.sleep(0.05)
        assert built == []
        sub = feed.hub.subscribe()
        feed.notify()
        assert sub.get(10)[0] == "status"         # the first listener gets snapshots again
    finally:
        feed.close()


# -- HTTP ------------------------------------------------------------------------
def test_page_answers_the_challenge_without_credentials(serve):
    srv = serve()
    for path in ("/", STATUS, STATUS + "/subscribe", "/assets/status.js"):
        response = requests.get(srv.url(path), timeout=5)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="sensord"'), path
    page = srv.http.get(srv.url("/"))
    assert page.status_code == 200 and mimetype(page) == "text/html"
    assert "/assets/status.js" in page.text and "<script src=\"http" not in page.text
    for asset, expected in (("status.js", ("text/javascript", "application/javascript")),
                            ("status.css", ("text/css",))):
        response = srv.http.get(srv.url(f"/assets/{asset}"))
        assert response.status_code == 200 and mimetype(response) in expected, asset


def test_snapshot_and_stream_follow_an_exposure(serve):
    srv = serve()
    snap = snapshot(srv)
    assert len(snap["devices"]) == 3
    assert {d["sensor"].rsplit(" ", 1)[0] for d in snap["devices"]} == {
        "Simradix Select", "Simradix Supreme", "Simradix Velocity"}
    assert all(d["status"] == "Available" for d in snap["devices"])
    assert snap["sessions"] == [] and snap["images"] == []
    assert snap["outbox"] == {"counts": {}, "failures": [], "targets": []}
    assert srv.http.get(srv.url(STATUS + "/subscribe?heartbeat=5")).status_code == 400

    stream = EventStream(srv.http, srv.url(STATUS + "/subscribe"))
    try:
        event, first = stream.next(timeout=10)                   # the current snapshot, at once
        assert event == "status" and first["devices"] == snap["devices"]
        dev = device_of(srv, "Simradix Select")["deviceId"]
        sid = create_session(srv, dev, clientName="panoramix")["sessionId"]
        stream.until(lambda e, d: session_of(d, sid) is not None, timeout=15)
        image_id = image_id_after_exposure(srv, sid, dev)
        seen = stream.until(lambda e, d: d["images"], timeout=10)
        latest = seen[-1][1]
        [image] = latest["images"]
        assert image["sessionId"] == sid and image["imageId"] == image_id
        shown = session_of(latest, sid)
        assert shown["deviceId"] == dev and shown["totalImages"] == 1 and shown["clientName"] == "panoramix"
        assert shown["state"] in ("NewImage", "NoAcquisitionInfo")
        device = next(d for d in latest["devices"] if d["deviceId"] == dev)
        assert device["status"] == "InUse" and device["sessionId"] == sid
    finally:
        stream.close()

    snap = snapshot(srv)
    assert session_of(snap, sid)["state"] == "NoAcquisitionInfo"
    assert snap["images"] == [image]
    preview = srv.http.get(srv.url(image["previewUrl"]))
    assert preview.status_code == 200 and mimetype(preview) == "image/jpeg"
    assert preview.content == srv.http.get(srv.url(f"{API}/acquisition/{sid}/images/{image_id}/preview")).content

    assert srv.http.delete(srv.url(f"{API}/acquisition/{sid}")).status_code == 200
    assert snapshot(srv)["sessions"] == [] and snapshot(srv)["images"] == []


def test_outbox_failures_show_with_their_error(serve):
    srv = serve(forward={"targets": [target(closed_port_url(), max_attempts=2)],
                         "rules": [{"target": "dm", "source": "acquired"}]})
    stream = EventStream(srv.http, srv.url(STATUS + "/subscribe"))
    try:
        dev = device_of(srv, "Simradix Select")["deviceId"]
        sid = create_session(srv, dev)["sessionId"]
        image_id = image_id_after_exposure(srv, sid, dev)
        # Nothing hooks the outbox: the feed's periodic look finds the dead entry.
        seen = stream.until(lambda e, d: any(f["state"] == "dead" for f in d["outbox"]["failures"]), timeout=15)
    finally:
        stream.close()
    outbox = seen[-1][1]["outbox"]
    assert outbox["counts"] == {"dead": 1}
    [failure] = outbox["failures"]
    assert failure["target"] == "dm" and failure["imageId"] == image_id and failure["attempts"] == 2
    assert failure["lastError"]
    assert snapshot(srv)["outbox"] == outbox


# -- the page in a browser ---------------------------------------------------------
DATA = "const node = document.querySelector(arguments[0]); return node && {...node.dataset};"
THUMBNAIL_LOADED = """
const img = document.querySelector(arguments[0]);
return img !== null && img.complete && img.naturalWidth > 0;
"""
TEXT = "return document.querySelector(arguments[0]).textContent;"


@pytest.mark.process
def test_page_shows_an_exposure_live(chromium, tmp_path):
    unreachable = {"targets": [target(closed_port_url(), max_attempts=2)],
                   "rules": [{"target": "dm", "source": "acquired"}]}
    down = {"host": "127.0.0.1", "port": free_port(), "called_ae": "WORKLIST"}     # a worklist not answering
    with running(make_settings(tmp_path / "state", forward=unreachable, worklist=down)) as srv:
        chromium.get(with_credentials(srv.base, USER, PASSWORD) + "/")
        chromium.wait_for("return document.querySelectorAll('#devices tr[data-device-id]').length === 3;")
        # The rows come with the page; the feed's first snapshot makes it live.
        chromium.wait_for("return document.body.dataset.live === 'live';")
        assert chromium.execute(TEXT, "#connection") == "connected"
        dev = device_of(srv, "Simradix Select")["deviceId"]
        device_row, session_row = f"#devices tr[data-device-id='{dev}']", "#sessions tr[data-session-id='{}']"
        assert chromium.execute(DATA, device_row)["status"] == "Available"

        client = '<img id="injected" src="x">Imaging & Co'
        sid = create_session(srv, dev, clientName=client, context={"accessionNumber": "ACC-9"})["sessionId"]
        session_row = session_row.format(sid)
        chromium.wait_for(DATA, session_row)
        image_id = image_id_after_exposure(srv, sid, dev)
        chromium.wait_for(THUMBNAIL_LOADED, f"#thumbnails img[data-image-id='{image_id}']")
        chromium.wait_for("return document.querySelector(arguments[0]).dataset.images === '1';", session_row)
        session = chromium.execute(DATA, session_row)
        assert session["state"] == "NoAcquisitionInfo" and session["ready"] == "false"
        assert chromium.execute(DATA, device_row)["status"] == "InUse"
        # The image could not be forwarded: the outbox shows the failure.
        chromium.wait_for(DATA, "#failures tr[data-state='dead']")
        assert "dm" in chromium.execute(TEXT, "#failures tbody")
        assert chromium.execute(TEXT, "#outbox-counts") == "0 waiting · dead: 1"
        # Strings from the daemon are text, never markup.
        assert chromium.execute("return document.getElementById('injected');") is None
        assert client in chromium.execute(TEXT, session_row)
        # The worklist's error, and the session it could not bind.
        chromium.wait_for("return document.querySelector('#worklist').dataset.error === 'yes';")
        assert "does not answer" in chromium.execute(TEXT, "#worklist-state")
        assert chromium.execute(DATA, session_row)["worklist"] == "unmatched"
        assert chromium.execute(TEXT, "#connection") == "connected"
        assert chromium.errors() == []

        png = chromium.screenshot()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "status-page.png").write_bytes(png)
        assert (ARTIFACTS / "status-page.png").read_bytes()[:8] == PNG_SIGNATURE
    # The daemon has stopped: the page says so (and keeps trying to reconnect).
    chromium.wait_for("return document.querySelector('#connection').textContent === 'disconnected';", timeout=10)
    assert chromium.execute("return document.body.dataset.live;") == "stale"
