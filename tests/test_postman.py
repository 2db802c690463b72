"""The vendor's Postman collections, run by newman against a real daemon.

Each collection is read from shared/specs/postman, filled in (credentials, base
URL, real ids, a 16-bit PNG to upload) and run; every request must answer the
2xx of its saved example. The two event-stream requests, which newman would
wait on forever, are checked here with the project's own SSE client instead.
"""
from __future__ import annotations

import pytest

from tests.support import images
from tests.support import postman
from tests.support.modality import API, create_session, device_of, devices, expose, subscribe_status
from tests.support.postman import Filling, expected_status, is_subscribe, requests_in, url_of
from tests.support.server import PASSWORD, USER
from tests.support.sse_client import EventStream

pytestmark = pytest.mark.process

FILTERS_API = "/api/dsio/filters/v1"
# Requests that need an acquired image; they use a session exposed before the run.
IMAGE_REQUESTS = ("Get All Images", "Get Image", "Get Image Media", "Get Image Preview Media")


def exposed_image(srv, device_id: str) -> tuple[str, str]:
    """(session id, image id) of one simulated exposure on ``device_id``."""
    sid = create_session(srv, device_id, clientName="postman fixture")["sessionId"]
    stream = subscribe_status(srv, sid)
    try:
        _, info = expose(srv, sid, device_id, stream)
    finally:
        stream.close()
    return sid, info["id"]


def assert_clean_run(result: postman.Run, collection: dict, *, streams: int, captures: int) -> None:
    """Every request but the streams ran once, answered as its example does, and no script failed."""
    expected = [item["name"] for item in requests_in(collection) if not is_subscribe(item)]
    # Both subscribe requests are in the Modality collection; the Filters one has none.
    assert len(expected) == len(list(requests_in(collection))) - streams
    failures = result.failed()
    assert failures == [], "\n".join(failures) + "\n\n" + result.output
    assert result.report["run"]["failures"] == [], result.output
    assert result.stats["requests"]["total"] == len(expected), result.executed
    assert result.stats["requests"]["failed"] == 0, result.output
    assert sorted(result.executed) == sorted(expected)
    assert result.stats["assertions"]["failed"] == 0, result.output
    # One status test per request plus one per captured id: proof the scripts ran at all.
    assert result.stats["assertions"]["total"] == len(expected) + captures, result.output


def test_modality_collection(serve, tmp_path):
    srv = serve()
    # The smallest simulated sensor: newman's JSON report holds the media as an array of numbers.
    imaged = device_of(srv, "Simradix Select")["deviceId"]
    image_session, image_id = exposed_image(srv, imaged)
    # The collection creates, updates and deletes its own session, on another device.
    device = next(d["deviceId"] for d in devices(srv) if d["deviceId"] != imaged)
    collection = postman.load(postman.MODALITY)
    captures = {"Create Acquisition Session": {"sessionId": "sessionId"}}
    filled = postman.fill(collection, Filling(
        srv.url(API), USER, PASSWORD,
        values={"deviceId": device, "sessionId": "{{sessionId}}"},
        per_request={name: {"sessionId": image_session, "imageId": image_id} for name in IMAGE_REQUESTS},
        captures=captures))

    result = postman.run(filled, tmp_path, "modality")

    assert_clean_run(result, collection, streams=2, captures=1)
    assert result.executed[-1] == "Delete Acquisition Session"
    # The delete hit the session the run created: its device is free again, the exposed one is not.
    assert srv.http.get(srv.url(f"{API}/devices/{device}")).json()["status"] == "Available"
    assert [s["sessionId"] for s in srv.http.get(srv.url(API + "/acquisition")).json()] == [image_session]


def test_filters_collection(serve, tmp_path):
    srv = serve()
    session, image_id = exposed_image(srv, device_of(srv, "Simradix Select")["deviceId"])
    png = tmp_path / "upload.png"
    png.write_bytes(images.png16(images.raw_image()))
    collection = postman.load(postman.FILTERS)
    captures = {"Create Image Resource": {"resourceId": "id"}}
    filled = postman.fill(collection, Filling(
        srv.url(FILTERS_API), USER, PASSWORD,
        values={"id": "{{resourceId}}", "sessionId": session, "imageId": image_id},
        captures=captures, files={"imageMedia": png}))

    result = postman.run(filled, tmp_path, "filters")

    assert_clean_run(result, collection, streams=0, captures=1)
    assert result.executed[-1] == "Delete Image Resource"


def test_subscribe_requests_stream_events(serve):
    srv = serve()
    subscribes = {item["name"]: item for item in requests_in(postman.load(postman.MODALITY))
                  if is_subscribe(item)}
    assert sorted(subscribes) == ["Subscribe to Acquisition Status Events", "Subscribe to Device Events"]
    device = devices(srv)[0]["deviceId"]

    item = subscribes["Subscribe to Device Events"]
    device_events = EventStream(srv.http, url_of(item, srv.url(API), {}))
    try:
        assert device_events.status_code == expected_status(item)
        assert device_events.response.headers["Content-Type"].startswith("text/event-stream")
        sid = create_session(srv, device)["sessionId"]
        event, data = device_events.next()
        assert event == "message" and data["action"] == "changed"
        assert data["deviceInfo"]["deviceId"] == device and data["deviceInfo"]["status"] == "InUse"
    finally:
        device_events.close()

    item = subscribes["Subscribe to Acquisition Status Events"]
    status_events = EventStream(srv.http, url_of(item, srv.url(API), {"sessionId": sid}))
    try:
        assert status_events.status_code == expected_status(item)
        assert status_events.response.headers["Content-Type"].startswith("text/event-stream")
        assert status_events.next()[1]["state"] == "NoAcquisitionInfo"     # the current status first
        # The collection asks for a heartbeat every 1000 ms.
        assert status_events.next(3, heartbeats=True) == ("heartbeat", {"heartbeatTimeout": 1000})
        states, info = expose(srv, sid, device, status_events)
        assert states[-1] == "NewImage" and info["id"]
    finally:
        status_events.close()
