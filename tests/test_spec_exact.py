"""Answers exactly as the Modality and Filters specs type them, through the real server.

Device icons (iconUrl), BatteryInfo without a battery, AcquisitionStatus
before the first image, ImageInfo without a map, ImageResource of an upload,
and Binned2x2 refused on a sensor that cannot bin.
"""
from __future__ import annotations

import io

from PIL import Image

from tests.support import images
from tests.support.filters_api import assert_error, upload
from tests.support.modality import (
    API,
    control,
    create_session,
    device_of,
    devices,
    expose,
    put_info,
    subscribe_status,
)
from tests.support.server import CLIENT, CLIENT_PASSWORD
from tests.support.sse_client import EventStream


def _icon(srv, url: str) -> Image.Image:
    response = srv.http.get(url)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    icon = Image.open(io.BytesIO(response.content))
    assert icon.format == "PNG" and icon.size == (48, 48)
    return icon


def test_every_device_has_an_absolute_icon_url_that_serves_its_icon(serve):
    srv = serve()
    listed = devices(srv)
    by_interface = {d["interfaceType"]: d["iconUrl"] for d in listed}
    assert set(by_interface) == {"usb", "network"}
    for device in listed:
        assert device["iconUrl"].startswith(srv.base + API + "/icons/"), device["iconUrl"]
        _icon(srv, device["iconUrl"])
        assert srv.http.get(srv.url(f"{API}/devices/{device['deviceId']}")).json()["iconUrl"] == device["iconUrl"]
    usb, wireless = (_icon(srv, by_interface[k]).tobytes() for k in ("usb", "network"))
    assert usb != wireless                  # one picture per kind of interface
    # The imaging software's role may fetch them too, and they follow the Host it used.
    client = srv.as_user(CLIENT, CLIENT_PASSWORD)
    _icon(client, by_interface["usb"])
    port = srv.server.port
    named = srv.http.get(srv.url(API + "/devices"), headers={"Host": f"localhost:{port}"}).json()
    assert named[0]["iconUrl"].startswith(f"http://localhost:{port}{API}/icons/")
    assert_error(srv.http.get(srv.url(API + "/icons/toaster.png")), 404, "toaster")


def test_device_events_carry_the_absolute_icon_url(serve):
    srv = serve()
    dev = devices(srv)[0]
    stream = EventStream(srv.http, srv.url(API + "/devices/subscribe"))
    try:
        assert control(srv, dev["deviceId"], "unplug-sensor").status_code == 200
        _, data = stream.until(lambda e, d: e == "message" and d["deviceInfo"]["deviceId"] == dev["deviceId"])[-1]
    finally:
        stream.close()
    assert data["deviceInfo"]["hasSensor"] is False and data["deviceInfo"]["iconUrl"] == dev["iconUrl"]


def test_battery_is_an_object_even_without_one(serve):
    srv = serve()
    listed = {d["interfaceType"]: d["battery"] for d in devices(srv)}
    assert listed["usb"] == {"hasBattery": False, "percentRemaining": 100.0, "level": "Full"}   # mains
    assert listed["network"]["hasBattery"] is True and listed["network"]["level"] in ("Low", "Good", "Full")


def test_status_before_the_first_image_and_image_info_without_a_map(serve):
    srv = serve()
    dev = device_of(srv, "Simradix Select")
    sid = create_session(srv, dev["deviceId"])["sessionId"]
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert status == {"ready": False, "state": "NoAcquisitionInfo", "totalImages": 0}   # lastImageId: none yet
    stream = subscribe_status(srv, sid)
    try:
        assert "lastImageId" not in stream.next()[1]                      # the stream's first status too
        _, info = expose(srv, sid, dev["deviceId"], stream, applyLut=False)
    finally:
        stream.close()
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert status["lastImageId"] == info["id"] and status["totalImages"] == 1
    assert "lutInfo" not in info and info["exposureInfo"] is not None      # no map applied: no LutInfo
    assert info["deviceInfo"]["iconUrl"] == dev["iconUrl"]                 # absolute, as in the device list
    assert info["deviceInfo"]["battery"]["hasBattery"] is False
    # A filters resource of that image keeps "no map"; an upload has no modalitySession.
    linked = srv.http.post(srv.url("/api/dsio/filters/v1/images/modality"),
                           json={"sessionId": sid, "imageId": info["id"]}).json()
    assert linked["modalitySession"] == {"sessionId": sid, "imageId": info["id"]}
    assert "lutInfo" not in linked["imageInfo"]
    uploaded = upload(srv, media=images.png16(images.raw_image(48, 64))).json()
    assert "modalitySession" not in uploaded


def test_binning_the_sensor_cannot_do_is_400_naming_the_sensor(serve):
    srv = serve()
    select = device_of(srv, "Simradix Select")
    sid = create_session(srv, select["deviceId"])["sessionId"]
    info_url = srv.url(f"{API}/acquisition/{sid}/info")
    before = srv.http.get(info_url).json()
    # As every client spells it: the spec's name, the SDK's PascalCase with an integer enum.
    for body in ({"enable": True, "binning": "Binned2x2"}, {"Enable": True, "Binning": 1}):
        assert_error(srv.http.put(info_url, json=body), 400, "Simradix Select", select["deviceId"], "cannot bin")
    assert srv.http.get(info_url).json() == before                        # nothing changed
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert status["state"] == "NoAcquisitionInfo"
    # null keeps the default, Unbinned is what it can do.
    for binning in (None, "Unbinned", 0):
        got = put_info(srv, sid, enable=True, binning=binning)
        assert got.status_code == 200 and got.json()["binning"] == "Unbinned", got.text


def test_binning_follows_the_sensor_the_session_moves_to(serve):
    srv = serve()
    supreme = device_of(srv, "Simradix Supreme")
    select = device_of(srv, "Simradix Select")
    sid = create_session(srv, supreme["deviceId"])["sessionId"]
    assert put_info(srv, sid, enable=False, binning="Binned2x2").json()["binning"] == "Binned2x2"
    moved = srv.http.put(srv.url(f"{API}/acquisition/{sid}"), json={"deviceId": select["deviceId"]})
    assert moved.status_code == 200, moved.text
    # Kept from before (null), it becomes what this sensor delivers; asked again, it is refused.
    assert put_info(srv, sid, enable=True, binning=None).json()["binning"] == "Unbinned"
    assert_error(put_info(srv, sid, enable=True, binning="Binned2x2"), 400, "cannot bin")
