"""Helpers for driving acquisition sessions through the Modality API."""
from __future__ import annotations

from tests.support.sse_client import EventStream

API = "/api/dsio/modality/v1"
ADMIN = "/api/sensord/v1"
FAST_SIM = "sim://?time_scale=0.01&seed=5"


def devices(srv) -> list[dict]:
    return srv.http.get(srv.url(API + "/devices")).json()


def device_of(srv, model_prefix: str) -> dict:
    """The first device whose sensor model name starts with ``model_prefix`` (e.g. 'Simradix Select')."""
    for device in devices(srv):
        sensor = srv.http.get(srv.url(f"{API}/devices/{device['deviceId']}/sensor"))
        if sensor.content and sensor.json()["modelName"].startswith(model_prefix):
            return device
    raise AssertionError(f"no device with a {model_prefix} sensor")


def create_session(srv, device_id: str, **extra) -> dict:
    response = srv.http.post(srv.url(API + "/acquisition"), json={"deviceId": device_id, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def subscribe_status(srv, sid: str, heartbeat: int | None = None) -> EventStream:
    query = f"?heartbeat={heartbeat}" if heartbeat is not None else ""
    return EventStream(srv.http, srv.url(f"{API}/acquisition/{sid}/status/subscribe{query}"))


def put_info(srv, sid: str, **info):
    return srv.http.put(srv.url(f"{API}/acquisition/{sid}/info"), json=info)


def control(srv, device_id: str, action: str, **body):
    return srv.http.post(srv.url(f"{ADMIN}/devices/{device_id}/{action}"), json=body or None)


def state_is(*states):
    return lambda event, data: event == "message" and data["state"] in states


def arm_and_wait(srv, sid: str, stream: EventStream, **info) -> None:
    response = put_info(srv, sid, enable=True, **info)
    assert response.status_code == 200, response.text
    stream.until(lambda e, d: e == "message" and d["ready"], timeout=10)


def expose(srv, sid: str, device_id: str, stream: EventStream, **info) -> tuple[list, dict]:
    """Arm, expose, wait for NewImage; returns (the states seen, the ImageInfo)."""
    arm_and_wait(srv, sid, stream, **info)
    assert control(srv, device_id, "expose").status_code == 200
    seen = stream.until(state_is("NewImage"), timeout=15)
    image_id = seen[-1][1]["lastImageId"]
    return [d["state"] for _, d in seen], srv.http.get(srv.url(f"{API}/acquisition/{sid}/images/{image_id}")).json()


def acquire_one(srv) -> dict:
    """One image on the first device, in a session of its own; its ImageInfo."""
    dev = devices(srv)[0]["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    stream = subscribe_status(srv, sid)
    try:
        return expose(srv, sid, dev, stream)[1]
    finally:
        stream.close()
