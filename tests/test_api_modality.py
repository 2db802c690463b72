"""The Modality API with the simulated sensor: devices, sessions, exposures, events."""
from __future__ import annotations

import hashlib
import io
import time

import numpy as np
import pytest
from PIL import Image

from tests.support import images
from tests.support.filters_api import assert_error
from tests.support.modality import (
    ADMIN,
    API,
    control,
    create_session,
    device_of,
    devices,
    expose,
    put_info,
    state_is,
    subscribe_status,
)
from tests.support.sse_client import END, EventStream

FILTERS = "/api/dsio/filters/v1"


def test_base_url_and_devices(serve):
    srv = serve()
    assert srv.http.get(srv.url(API)).status_code == 200
    listed = devices(srv)
    assert len(listed) == 3
    for device in listed:
        assert set(device) == {"deviceId", "name", "iconUrl", "hasSensor", "status", "interfaceType",
                               "modelName", "serialNumber", "version", "battery"}
        assert device["status"] == "Available" and device["hasSensor"] is True
        assert srv.http.get(srv.url(f"{API}/devices/{device['deviceId']}")).json() == device
    wireless = [d for d in listed if d["battery"]["hasBattery"]]
    assert len(wireless) == 1 and wireless[0]["interfaceType"] == "network"
    assert wireless[0]["battery"]["hasBattery"] is True
    sensor = srv.http.get(srv.url(f"{API}/devices/{listed[0]['deviceId']}/sensor")).json()
    assert {"modelName", "family", "size", "width", "height", "supportsBinning"} <= set(sensor)
    assert_error(srv.http.get(srv.url(API + "/devices/nope")), 404, "nope")
    assert_error(srv.http.get(srv.url(API + "/devices/nope/sensor")), 404)


def test_sensor_is_empty_when_unplugged(serve):
    srv = serve()
    dev = devices(srv)[0]["deviceId"]
    assert control(srv, dev, "unplug-sensor").status_code == 200
    response = srv.http.get(srv.url(f"{API}/devices/{dev}/sensor"))
    assert response.status_code == 200 and response.content == b""
    assert srv.http.get(srv.url(f"{API}/devices/{dev}")).json()["hasSensor"] is False


def test_session_lifecycle_and_device_status(serve):
    srv = serve()
    first, second = (d["deviceId"] for d in devices(srv)[:2])
    session = create_session(srv, first, clientName="OP4 Workstation", context={"patientId": "P-1"})
    sid = session["sessionId"]
    assert session["deviceId"] == first and session["context"] == {"patientId": "P-1"}
    assert srv.http.get(srv.url(f"{API}/devices/{first}")).json()["status"] == "InUse"
    assert_error(srv.http.post(srv.url(API + "/acquisition"), json={"deviceId": first}), 409, "in use")
    assert_error(srv.http.post(srv.url(API + "/acquisition"), json={"deviceId": "nope"}), 404)
    assert_error(srv.http.post(srv.url(API + "/acquisition"), json={"clientName": "x"}), 400, "deviceId")
    assert_error(srv.http.post(srv.url(API + "/acquisition"), data=b"{",
                               headers={"Content-Type": "application/json"}), 400, "json")

    assert srv.http.get(srv.url(f"{API}/acquisition/{sid}")).json() == session
    assert [s["sessionId"] for s in srv.http.get(srv.url(API + "/acquisition")).json()] == [sid]
    assert srv.http.get(srv.url(API + "/acquisition"), params={"deviceId": second}).json() == []
    assert len(srv.http.get(srv.url(API + "/acquisition"), params={"deviceId": first}).json()) == 1

    # Switch device and client name; the old device is free again.
    other = create_session(srv, second)
    assert_error(srv.http.put(srv.url(f"{API}/acquisition/{sid}"), json={"deviceId": second}), 409)
    assert_error(srv.http.put(srv.url(f"{API}/acquisition/{sid}"), json={"deviceId": "nope"}), 404)
    srv.http.delete(srv.url(f"{API}/acquisition/{other['sessionId']}"))
    moved = srv.http.put(srv.url(f"{API}/acquisition/{sid}"), json={"deviceId": second, "clientName": "B"})
    assert moved.status_code == 200 and moved.json()["deviceId"] == second and moved.json()["clientName"] == "B"
    assert srv.http.get(srv.url(f"{API}/devices/{first}")).json()["status"] == "Available"

    assert srv.http.delete(srv.url(f"{API}/acquisition/{sid}")).status_code == 200
    assert srv.http.get(srv.url(f"{API}/devices/{second}")).json()["status"] == "Available"
    for method in ("GET", "PUT", "DELETE"):
        assert_error(srv.http.request(method, srv.url(f"{API}/acquisition/{sid}"), json={}), 404)
    for path in ("/status", "/info", "/images", "/images/x", "/images/x/media", "/images/x/preview"):
        assert_error(srv.http.get(srv.url(f"{API}/acquisition/{sid}{path}")), 404)


def test_whole_exposure_through_http_and_sse(serve):
    srv = serve()
    dev = device_of(srv, "Simradix Supreme")
    sid = create_session(srv, dev["deviceId"], context={"patientId": "P-7"})["sessionId"]
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert status == {"ready": False, "state": "NoAcquisitionInfo", "totalImages": 0}   # no lastImageId yet
    stream = subscribe_status(srv, sid)
    assert stream.next()[1]["state"] == "NoAcquisitionInfo"     # the current status comes first

    states, info = expose(srv, sid, dev["deviceId"], stream, rotation=90, applyLut=True,
                          context={"tooth": 36})
    assert states[-4:] == ["Reading", "Processing", "Storing", "NewImage"], states
    assert stream.next()[1]["state"] == "NoAcquisitionInfo"     # ready for the next AcquisitionInfo

    sensor = srv.http.get(srv.url(f"{API}/devices/{dev['deviceId']}/sensor")).json()
    assert (info["width"], info["height"]) == (sensor["height"], sensor["width"])   # rotated
    assert info["acquisitionInfo"]["rotation"] == 90 and info["acquisitionInfo"]["context"] == {"tooth": 36}
    assert info["lutInfo"]["minimumGray"] > info["lutInfo"]["maximumGray"]
    assert info["deviceInfo"]["deviceId"] == dev["deviceId"] and info["sensorInfo"] == sensor
    assert set(info["exposureInfo"]) == {"min", "max", "low", "high", "optimum", "value"}
    assert info["pixelSizeX"] > 0 and info["bytesPerPixel"] == 2

    png = srv.http.get(info["imageUrl"])
    assert png.headers["Content-Type"] == "image/png"
    pixels = images.decode(png.content)
    assert pixels.dtype == np.uint16 and pixels.shape == (info["height"], info["width"])
    assert info["pixelHash"] == {"alg": "MD5", "hash": hashlib.md5(pixels.astype("<u2").tobytes()).hexdigest()}
    preview = Image.open(io.BytesIO(srv.http.get(info["previewUrl"]).content))
    assert preview.format == "JPEG" and max(preview.size) <= 256

    listed = srv.http.get(srv.url(f"{API}/acquisition/{sid}/images")).json()
    assert [i["id"] for i in listed] == [info["id"]]
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert status == {"ready": False, "state": "NoAcquisitionInfo", "lastImageId": info["id"], "totalImages": 1}

    # A second exposure, binned: half the size, and the count goes up.
    _, second = expose(srv, sid, dev["deviceId"], stream, rotation=0, binning="Binned2x2")
    assert (second["width"], second["height"]) == (sensor["width"] // 2, sensor["height"] // 2)
    assert second["acquisitionInfo"]["binning"] == "Binned2x2"
    assert srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()["totalImages"] == 2

    srv.http.delete(srv.url(f"{API}/acquisition/{sid}"))
    while (item := stream.next(5)) is not END:     # deleting the session ends its stream
        assert item[1]["state"] == "NoAcquisitionInfo"
    assert not (srv.daemon.image_folder.root / sid).exists()


def test_binning_refused_on_a_sensor_without_it(serve):
    srv = serve()
    dev = device_of(srv, "Simradix Select")
    sid = create_session(srv, dev["deviceId"])["sessionId"]
    assert_error(put_info(srv, sid, enable=True, binning="Binned2x2"), 400, "Simradix Select", "cannot bin")
    stream = subscribe_status(srv, sid)
    _, info = expose(srv, sid, dev["deviceId"], stream, binning=None, applyLut=False)
    sensor = srv.http.get(srv.url(f"{API}/devices/{dev['deviceId']}/sensor")).json()
    assert (info["width"], info["height"]) == (sensor["width"], sensor["height"])
    assert info["acquisitionInfo"]["binning"] == "Unbinned" and "lutInfo" not in info   # no map: absent


@pytest.mark.parametrize("body,words", [
    ({"rotation": 45}, ["rotation"]),
    ({"rotation": "90"}, ["rotation"]),
    ({"binning": "Binned3x3"}, ["binning"]),
    ({"enable": "yes"}, ["enable"]),
    ([1], ["object"]),
])
def test_bad_acquisition_info_is_400(serve, body, words):
    srv = serve()
    sid = create_session(srv, devices(srv)[0]["deviceId"])["sessionId"]
    assert_error(srv.http.put(srv.url(f"{API}/acquisition/{sid}/info"), json=body), 400, *words)


def test_acquisition_info_is_kept_and_null_keeps_values(serve):
    srv = serve()
    sid = create_session(srv, devices(srv)[0]["deviceId"])["sessionId"]
    assert put_info(srv, sid, Enable=False, Rotation=180, Binning=1, ApplyLut=False).status_code == 200
    got = put_info(srv, sid, rotation=None, binning=None).json()
    assert got == {"enable": False, "rotation": 180, "binning": "Binned2x2", "applyLut": False, "context": {}}
    assert srv.http.get(srv.url(f"{API}/acquisition/{sid}/info")).json() == got
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert status["state"] == "Ready" and status["ready"] is False      # disabled by the client


def test_info_is_locked_while_reading(serve):
    srv = serve(drivers={"urls": ["sim://?time_scale=1&seed=3&models=select0"]})
    dev = devices(srv)[0]["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    stream = subscribe_status(srv, sid)
    put_info(srv, sid, enable=True)
    stream.until(lambda e, d: d["ready"], timeout=10)
    assert control(srv, dev, "expose").status_code == 200
    stream.until(state_is("Reading"))
    assert_error(put_info(srv, sid, enable=True), 423, "reading")
    stream.until(state_is("NewImage"), timeout=10)
    assert put_info(srv, sid, enable=True).status_code == 200


def test_unplugged_mid_reading_loses_the_frame_and_recovers(serve):
    srv = serve(drivers={"urls": ["sim://?time_scale=1&seed=3&models=select0"]})
    dev = devices(srv)[0]["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    stream = subscribe_status(srv, sid)
    put_info(srv, sid, enable=True)
    stream.until(lambda e, d: d["ready"], timeout=10)
    control(srv, dev, "expose")
    stream.until(state_is("Reading"))
    assert control(srv, dev, "unplug").status_code == 200
    stream.until(state_is("NoHardware"))
    assert srv.http.get(srv.url(API + "/devices")).json() == []
    assert control(srv, dev, "plug").status_code == 200
    stream.until(lambda e, d: d["ready"], timeout=10)        # armed again by itself
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert status["totalImages"] == 0 and "lastImageId" not in status
    assert srv.http.get(srv.url(f"{API}/devices/{dev}")).json()["status"] == "InUse"


def test_fault_states_no_sensor_and_low_battery(serve):
    srv = serve()
    wireless = next(d for d in devices(srv) if d["battery"]["hasBattery"])["deviceId"]
    sid = create_session(srv, wireless)["sessionId"]
    stream = subscribe_status(srv, sid)
    put_info(srv, sid, enable=True)
    stream.until(lambda e, d: d["ready"], timeout=10)
    control(srv, wireless, "battery", percent=5)
    stream.until(state_is("LowBattery"))
    assert srv.http.get(srv.url(f"{API}/devices/{wireless}")).json()["battery"]["level"] == "Low"
    assert_error(control(srv, wireless, "expose"), 409, "battery")
    control(srv, wireless, "battery", percent=95)
    stream.until(lambda e, d: d["ready"], timeout=10)
    control(srv, wireless, "unplug-sensor")
    stream.until(state_is("NoSensor"))
    control(srv, wireless, "plug-sensor")
    stream.until(lambda e, d: d["ready"], timeout=10)


def test_device_events_stream(serve):
    srv = serve()
    stream = EventStream(srv.http, srv.url(API + "/devices/subscribe?heartbeat=1000"))
    assert stream.status_code == 200
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    dev = devices(srv)[0]["deviceId"]
    event, data = stream.next(3, heartbeats=True)
    assert (event, data) == ("heartbeat", {"heartbeatTimeout": 1000})
    create_session(srv, dev)
    event, data = stream.next()
    assert event == "message" and data["action"] == "changed"
    assert data["deviceInfo"]["deviceId"] == dev and data["deviceInfo"]["status"] == "InUse"
    control(srv, dev, "unplug")
    assert stream.until(lambda e, d: d["action"] == "removed")[-1][1]["deviceInfo"]["deviceId"] == dev
    control(srv, dev, "plug")
    stream.until(lambda e, d: d["action"] == "added")
    stream.close()


@pytest.mark.parametrize("path,value", [
    ("/devices/subscribe", 500), ("/devices/subscribe", 60001), ("/devices/subscribe", "fast"),
    ("/acquisition/{sid}/status/subscribe", 20000), ("/acquisition/{sid}/status/subscribe", 999),
])
def test_heartbeat_outside_the_bounds_is_400(serve, path, value):
    srv = serve()
    sid = create_session(srv, devices(srv)[0]["deviceId"])["sessionId"]
    response = srv.http.get(srv.url(API + path.format(sid=sid)), params={"heartbeat": value})
    assert_error(response, 400, "heartbeat")


def test_heartbeat_zero_disables_it(serve):
    srv = serve()
    sid = create_session(srv, devices(srv)[0]["deviceId"])["sessionId"]
    stream = subscribe_status(srv, sid, heartbeat=0)
    stream.next()                                   # the current status
    with pytest.raises(Exception):
        stream.next(2.5, heartbeats=True)           # nothing else: no heartbeat in 2.5 s
    fast = subscribe_status(srv, sid, heartbeat=1000)
    fast.next()
    assert fast.next(2.5, heartbeats=True) == ("heartbeat", {"heartbeatTimeout": 1000})


def test_subscribers_beyond_the_cap_get_503_and_the_api_stays_up(serve):
    srv = serve(acquisition={"max_subscribers": 3})
    sid = create_session(srv, devices(srv)[0]["deviceId"])["sessionId"]
    streams = [subscribe_status(srv, sid) for _ in range(2)]
    streams.append(EventStream(srv.http, srv.url(API + "/devices/subscribe")))
    assert all(s.status_code == 200 for s in streams)
    refused = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status/subscribe"))
    assert_error(refused, 503, "subscribers")
    assert srv.http.get(srv.url(API + "/devices")).status_code == 200
    streams[0].close()                             # a client that goes away frees its place
    deadline = time.monotonic() + 15
    while srv.daemon.subscribers.count >= 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert subscribe_status(srv, sid).status_code == 200


def test_filters_on_a_session_image_end_with_the_session(serve):
    srv = serve()
    dev = device_of(srv, "Simradix Select")
    sid = create_session(srv, dev["deviceId"])["sessionId"]
    _, info = expose(srv, sid, dev["deviceId"], subscribe_status(srv, sid))
    response = srv.http.post(srv.url(FILTERS + "/images/modality"), json={"sessionId": sid, "imageId": info["id"]})
    assert response.status_code == 201, response.text
    res = response.json()
    assert res["imageInfo"]["lutInfo"] == info["lutInfo"]
    assert srv.http.get(res["url"]).content == srv.http.get(info["imageUrl"]).content
    filtered = srv.http.post(srv.url(f"{FILTERS}/images/{res['id']}/filters/unmap"))
    assert filtered.status_code == 200
    assert_error(srv.http.post(srv.url(FILTERS + "/images/modality"),
                               json={"sessionId": sid, "imageId": "nope"}), 404)
    srv.http.delete(srv.url(f"{API}/acquisition/{sid}"))
    assert_error(srv.http.get(res["url"]), 410, "session")
    assert_error(srv.http.post(srv.url(f"{FILTERS}/images/{res['id']}/filters/unmap")), 410)


def test_admin_controls_errors(serve):
    srv = serve()
    dev = devices(srv)[0]["deviceId"]
    assert_error(control(srv, dev, "explode"), 404, "explode")
    assert_error(control(srv, "nope", "expose"), 404)
    assert_error(control(srv, dev, "expose"), 409, "armed")     # no session armed it
    assert_error(control(srv, dev, "battery", volts=3), 400, "volts")
    assert_error(srv.http.post(srv.url(f"{ADMIN}/devices/{dev}/expose"), data=b"[",
                               headers={"Content-Type": "application/json"}), 400)


def test_low_disk_refuses_sessions_with_507(serve):
    srv = serve(acquisition={"min_free_mb": 10_000_000})      # more than any disk here has free
    assert_error(srv.http.post(srv.url(API + "/acquisition"), json={"deviceId": devices(srv)[0]["deviceId"]}),
                 507, "storage")


def test_low_disk_during_a_session_reports_insufficient_storage(serve):
    srv = serve()
    sid = create_session(srv, devices(srv)[0]["deviceId"])["sessionId"]
    srv.daemon.sessions.options = type(srv.daemon.sessions.options)(min_free_bytes=1 << 62)
    assert put_info(srv, sid, enable=True).status_code == 200
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert status["state"] == "InsufficientStorage" and status["ready"] is False


def test_sha256_pixel_hash_when_configured(serve):
    srv = serve(acquisition={"hash_alg": "SHA256", "preview_max": 64})
    dev = device_of(srv, "Simradix Select")
    sid = create_session(srv, dev["deviceId"])["sessionId"]
    _, info = expose(srv, sid, dev["deviceId"], subscribe_status(srv, sid))
    pixels = images.decode(srv.http.get(info["imageUrl"]).content)
    assert info["pixelHash"] == {"alg": "SHA256", "hash": hashlib.sha256(pixels.astype("<u2").tobytes()).hexdigest()}
    assert max(Image.open(io.BytesIO(srv.http.get(info["previewUrl"]).content)).size) == 64


def test_gamma_of_the_display_map_comes_from_settings(serve):
    srv = serve(acquisition={"gamma": 1.7})
    dev = device_of(srv, "Simradix Select")
    sid = create_session(srv, dev["deviceId"])["sessionId"]
    _, info = expose(srv, sid, dev["deviceId"], subscribe_status(srv, sid), applyLut=True)
    assert info["lutInfo"]["gamma"] == 1.7


def test_a_null_context_keeps_the_session_context(serve):
    """The SDK's UpdateAcquisitionSession always sends Context, null when the
    caller left it out: switching device that way keeps the stored context."""
    srv = serve()
    first, second = (d["deviceId"] for d in devices(srv)[:2])
    sid = create_session(srv, first, context={"patientId": "P-9"})["sessionId"]
    moved = srv.http.put(srv.url(f"{API}/acquisition/{sid}"),
                         json={"DeviceId": second, "ClientName": None, "Context": None})
    assert moved.status_code == 200, moved.text
    assert moved.json()["deviceId"] == second and moved.json()["context"] == {"patientId": "P-9"}
    replaced = srv.http.put(srv.url(f"{API}/acquisition/{sid}"), json={"Context": {"patientId": "P-10"}})
    assert replaced.json()["context"] == {"patientId": "P-10"}
    cleared = srv.http.put(srv.url(f"{API}/acquisition/{sid}"), json={"context": {}})
    assert cleared.json()["context"] == {}
