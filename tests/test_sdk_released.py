"""The vendor's released .NET SDKs (tag v1.0), call by call, as they go on the wire.

Every request goes through tests/support/dotnet_client.py, which writes what
HttpClient + System.Net.Http.Formatting + Newtonsoft put on the wire (no
User-Agent, no Origin, PascalCase JSON in declaration order, enums as
integers, explicit nulls, chunked bodies behind Expect: 100-continue). Each
answer must pass what the SDK does with it: EnsureSuccessStatusCode (and the
status the spec gives), then ReadAsAsync<T> into the SDK's type (a JSON media
type; every property present with a JSON type Newtonsoft can convert).
Redirects are never followed: an SDK call must be answered where it asks.

Modality ServiceProxy (DSIO.Modality.Api.Sdk.Client.V1, v1.0), in the order of
the ConsoleApp sample and then of an acquisition:

    [x] SetBasicAuthenticationHeader       Authorization: Basic, on every call
    [x] IsServiceAvailable                 GET ""  (the base URL, trailing slash)
    [x] GetAllDevices                      GET devices
    [x] GetSensor                          GET devices/{id}/sensor
    [x] GetAcquisitionSessions()           GET acquisition/        (trailing slash)
    [x] SubscribeToDeviceEvents            GET devices/subscribe?heartbeat=20000
    [x] CreateAcquisitionSession           POST acquisition         AcquisitionSessionInfo
    [x] GetAcquisitionSession              GET acquisition/{sid}
    [x] GetAcquisitionSessions(deviceId)   GET acquisition/?deviceId={id}
    [x] GetDevice                          GET devices/{id}
    [x] GetAcquisitionStatus               GET acquisition/{sid}/status
    [x] SubscribeToAcquisitionStatus       GET acquisition/{sid}/status/subscribe?heartbeat=1000
    [x] GetAcquisitionInfo                 GET acquisition/{sid}/info
    [x] UpdateAcquisitionInfo              PUT acquisition/{sid}/info  AcquisitionInfo
    [x] GetAllImages                       GET acquisition/{sid}/images
    [x] GetImage                           GET acquisition/{sid}/images/{iid}
    [x] GetImageMedia                      GET acquisition/{sid}/images/{iid}/media
    [x] GetImagePreview                    GET acquisition/{sid}/images/{iid}/preview
    [x] UpdateAcquisitionSession           PUT acquisition/{sid}    AcquisitionSessionInfo
    [x] DeleteAcquisitionSession           DELETE acquisition/{sid}  (IsSuccessStatusCode)

Filters ServiceProxy (DSIO.Filters.Api.Sdk.Client.V1, v1.0):

    [x] SetBasicAuthenticationHeader
    [x] IsServiceAvailable                 GET ""
    [x] UploadImage                        POST images  multipart: imageMedia (the PNG), ImageInfo (StringContent)
    [x] CreateImage                        POST images/modality     ModalitySession
    [x] GetImage                           GET images/{id}
    [x] GetImageMedia                      GET images/{id}/media
    [x] SelectFilter                       POST images/{id}/filters/select   SelectFilterParameters
    [x] SupremeFilter                      POST images/{id}/filters/supreme  SupremeFilterParameters
    [x] AeFilter                           POST images/{id}/filters/ae       AEFilterParameters
    [x] UnmapFilter                        POST images/{id}/filters/unmap    no content (Content-Length: 0)
    [x] DeleteImage                        DELETE images/{id}

The exposure itself is triggered through sensord's admin endpoint (the SDK
has no such call; a real sensor is exposed by the X-ray source).
"""
from __future__ import annotations

import base64

import numpy as np
import pytest

from sensord import filters
from sensord.daemon.dsio.imageinfo import lut_from_info
from sensord.filters.lut import Lut
from sensord.filters.png import decode_gray16
from tests.support import dotnet_client as dn
from tests.support import images
from tests.support.sdk_daemon import (
    BIG,
    FILTERS,
    MODALITY,
    control,
    ensure_success,
    sdk,
    start,
)
from tests.support.server import PASSWORD, USER

LUT = Lut.from_info(images.LUT_INFO)
DEVICE_EVENTS = {"message": dn.DeviceEventData, "heartbeat": dn.Heartbeat}
STATUS_EVENTS = {"message": dn.AcquisitionStatus, "heartbeat": dn.Heartbeat}


@pytest.fixture
def srv(serve):
    return start(serve)


@pytest.fixture
def modality(srv):
    client = sdk(srv, MODALITY)
    yield client
    client.close()


@pytest.fixture
def filters_sdk(srv):
    client = sdk(srv, FILTERS)
    yield client
    client.close()


def expose(srv, device_id: str) -> None:
    control(srv, device_id, "expose")


def binning_device(modality) -> str:
    """The device whose sensor supports binning with the fewest pixels (binned, the cheapest image)."""
    best = None
    for device in dn_read(modality.get("devices"), list[dn.DeviceInfo]):
        sensor = dn_read(modality.get(f"devices/{device['deviceId']}/sensor"), dn.SensorInfo)
        if sensor and sensor["supportsBinning"]:
            area = sensor["width"] * sensor["height"]
            if best is None or area < best[0]:
                best = (area, device["deviceId"])
    assert best is not None, "no simulated sensor supports binning"
    return best[1]


def dn_read(response: dn.Response, tp, status: int = 200):
    return dn.read_as(ensure_success(response, status), tp)


def acquire(srv, modality, sid: str, device_id: str, info: dn.AcquisitionInfo) -> dict:
    """UpdateAcquisitionInfo, wait for Ready, expose, wait for NewImage; the new image's ImageInfo."""
    with modality.subscribe(f"acquisition/{sid}/status/subscribe?heartbeat=1000", STATUS_EVENTS) as status:
        dn_read(modality.put_as_json(f"acquisition/{sid}/info", info), dn.AcquisitionInfo)
        status.until(lambda kind, data: data["ready"])
        expose(srv, device_id)
        seen = status.until(lambda kind, data: data["state"] == "NewImage", timeout=20)
    image_id = seen[-1][1]["lastImageId"]
    return dn_read(modality.get(f"acquisition/{sid}/images/{image_id}"), dn.ImageInfo)


# -- the wire itself ------------------------------------------------------------

def test_requests_carry_only_what_httpclient_sends(srv, modality):
    """The client under test is what the SDK is: no User-Agent, Origin or Accept; Basic auth."""
    ensure_success(modality.get(""), 200)
    head, _ = modality.requests[-1]
    assert head.startswith(f"GET {MODALITY} HTTP/1.1\r\n".encode())
    headers, _ = modality.last_request()
    assert list(headers) == ["Authorization", "Host", "Connection"]
    assert headers["Authorization"] == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    device = modality.get("devices").json()[0]["deviceId"]
    response = modality.post_as_json("acquisition", dn.AcquisitionSessionInfo(DeviceId=device))
    ensure_success(response, 201)
    headers, body = modality.last_request()
    assert headers == {"Authorization": headers["Authorization"], "Content-Type": "application/json; charset=utf-8",
                       "Host": f"localhost:{srv.server.port}", "Transfer-Encoding": "chunked",
                       "Expect": "100-continue"}
    assert body == f'{{"DeviceId":"{device}","ClientName":null,"Context":null}}'.encode()
    # The daemon let the body come (an interim 100) before it answered.
    assert response.interim == [100] and response.body_sent


# -- Modality -------------------------------------------------------------------

def test_console_app_flow(srv, modality):
    """The ConsoleApp sample: availability, devices and sensors, sessions, device events."""
    ensure_success(modality.get(""), 200)                                   # IsServiceAvailable

    devices = dn_read(modality.get("devices"), list[dn.DeviceInfo])         # GetAllDevices
    assert len(devices) == 3
    for device in devices:                                                  # GetSensor
        sensor = dn_read(modality.get(f"devices/{device['deviceId']}/sensor"), dn.SensorInfo)
        assert sensor is not None and sensor["modelName"]

    response = modality.get("acquisition/")                                 # GetAcquisitionSessions()
    assert modality.requests[-1][0].startswith(f"GET {MODALITY}acquisition/ HTTP/1.1".encode())
    assert dn.read_as(ensure_success(response, 200), list[dn.AcquisitionSession]) == []

    # SubscribeToDeviceEvents with the SDK's default heartbeat.
    with modality.subscribe("devices/subscribe?heartbeat=20000", DEVICE_EVENTS) as events:
        assert events.status == 200
        device_id = devices[0]["deviceId"]
        session = dn_read(modality.post_as_json("acquisition", dn.AcquisitionSessionInfo(
            DeviceId=device_id, ClientName="ConsoleApp", Context=None)), dn.AcquisitionSession, 201)
        _, event = events.until(lambda kind, data: data["deviceInfo"]["deviceId"] == device_id)[-1]
        assert event["action"] == "changed" and event["deviceInfo"]["status"] == "InUse"

        # Hot-plug: the device leaves and comes back (the sample's "change the connected sensor").
        other = devices[1]["deviceId"]
        control(srv, other, "unplug")
        _, event = events.until(lambda kind, data: data["deviceInfo"]["deviceId"] == other)[-1]
        assert event["action"] == "removed"
        control(srv, other, "plug")
        _, event = events.until(lambda kind, data: data["deviceInfo"]["deviceId"] == other)[-1]
        assert event["action"] == "added"

        assert modality.delete(f"acquisition/{session['sessionId']}").is_success
        _, event = events.until(lambda kind, data: data["deviceInfo"]["deviceId"] == device_id)[-1]
        assert event["action"] == "changed" and event["deviceInfo"]["status"] == "Available"


def test_acquisition_flow(srv, modality):
    """Create a session, arm it, expose, read the image back every way the SDK can, delete."""
    devices = dn_read(modality.get("devices"), list[dn.DeviceInfo])
    device_id = binning_device(modality)
    other_id = next(d["deviceId"] for d in devices if d["deviceId"] != device_id)

    session = dn_read(modality.post_as_json("acquisition", dn.AcquisitionSessionInfo(   # CreateAcquisitionSession
        DeviceId=device_id, ClientName="Imaging", Context={"patient": "P-1", "visit": 3})),
        dn.AcquisitionSession, 201)
    sid = session["sessionId"]
    assert session["deviceId"] == device_id and session["clientName"] == "Imaging"
    assert session["context"] == {"patient": "P-1", "visit": 3}

    assert dn_read(modality.get(f"acquisition/{sid}"), dn.AcquisitionSession) == session   # GetAcquisitionSession
    listed = dn_read(modality.get("acquisition/"), list[dn.AcquisitionSession])          # GetAcquisitionSessions()
    assert [s["sessionId"] for s in listed] == [sid]
    response = modality.get(f"acquisition/?deviceId={device_id}")                     # GetAcquisitionSessions(id)
    assert modality.requests[-1][0].startswith(
        f"GET {MODALITY}acquisition/?deviceId={device_id} HTTP/1.1".encode())
    assert [s["sessionId"] for s in dn.read_as(ensure_success(response, 200), list[dn.AcquisitionSession])] == [sid]
    assert dn_read(modality.get(f"acquisition/?deviceId={other_id}"), list[dn.AcquisitionSession]) == []

    device = dn_read(modality.get(f"devices/{device_id}"), dn.DeviceInfo)               # GetDevice
    assert device["status"] == "InUse"

    status = dn_read(modality.get(f"acquisition/{sid}/status"), dn.AcquisitionStatus)   # GetAcquisitionStatus
    assert status == {"ready": False, "state": "NoAcquisitionInfo", "totalImages": 0}   # LastImageId reads null

    info = dn_read(modality.get(f"acquisition/{sid}/info"), dn.AcquisitionInfo)         # GetAcquisitionInfo
    assert info["enable"] is False

    # SubscribeToAcquisitionStatus with the SDK's default heartbeat (1000 ms).
    with modality.subscribe(f"acquisition/{sid}/status/subscribe?heartbeat=1000", STATUS_EVENTS) as events:
        assert events.status == 200
        kind, first = events.next()
        assert kind == "message" and first["state"] == "NoAcquisitionInfo"
        _, beat = events.until(lambda kind, data: kind == "heartbeat", heartbeats=True, timeout=5)[-1]
        assert beat["heartbeatTimeout"] == 1000

        armed = dn.AcquisitionInfo(Enable=True, Rotation=90, Binning=dn.BinningMode.Binned2X2,
                                   ApplyLut=True, Context={"tooth": 36})
        answer = dn_read(modality.put_as_json(f"acquisition/{sid}/info", armed), dn.AcquisitionInfo)
        _, body = modality.last_request()
        assert body == b'{"Enable":true,"Rotation":90,"Binning":1,"ApplyLut":true,"Context":{"tooth":36}}'
        assert answer["enable"] is True and answer["rotation"] == 90 and answer["applyLut"] is True
        assert answer["binning"].lower() == "binned2x2" and answer["context"] == {"tooth": 36}
        events.until(lambda kind, data: data["ready"] and data["state"] == "Ready")

        expose(srv, device_id)
        seen = events.until(lambda kind, data: data["state"] == "NewImage", timeout=20)
    states = [data["state"] for _, data in seen]
    assert "Reading" in states
    last = seen[-1][1]
    assert last["totalImages"] == 1 and last["lastImageId"]
    iid = last["lastImageId"]

    all_images = dn_read(modality.get(f"acquisition/{sid}/images"), list[dn.ImageInfo])   # GetAllImages
    assert [i["id"] for i in all_images] == [iid]
    image = dn_read(modality.get(f"acquisition/{sid}/images/{iid}"), dn.ImageInfo)        # GetImage
    assert image["acquisitionInfo"]["context"] == {"tooth": 36}
    assert image["acquisitionInfo"]["binning"].lower() == "binned2x2"

    media = ensure_success(modality.get(f"acquisition/{sid}/images/{iid}/media"), 200)    # GetImageMedia
    assert media.media_type == "image/png"
    pixels = decode_gray16(media.body, **BIG)
    assert pixels.shape == (image["height"], image["width"])

    preview = ensure_success(modality.get(f"acquisition/{sid}/images/{iid}/preview"), 200)  # GetImagePreview
    assert preview.media_type == "image/jpeg" and preview.body.startswith(b"\xff\xd8")

    assert modality.delete(f"acquisition/{sid}").is_success                          # DeleteAcquisitionSession
    assert modality.get(f"acquisition/{sid}").status == 404
    assert dn_read(modality.get("acquisition/"), list[dn.AcquisitionSession]) == []
    assert dn_read(modality.get(f"devices/{device_id}"), dn.DeviceInfo)["status"] == "Available"


def test_update_session_switches_device_and_keeps_context(srv, modality):
    """UpdateAcquisitionSession always sends every property: ClientName and Context
    are null when the caller only sets DeviceId. Null means "unchanged", so
    moving a session to another device keeps what the client stored."""
    devices = dn_read(modality.get("devices"), list[dn.DeviceInfo])
    first, second = devices[0]["deviceId"], devices[1]["deviceId"]
    context = {"patient": "P-7", "series": [1, 2], "note": "ünïcode"}
    sid = dn_read(modality.post_as_json("acquisition", dn.AcquisitionSessionInfo(
        DeviceId=first, ClientName="Imaging", Context=context)), dn.AcquisitionSession, 201)["sessionId"]

    moved = dn_read(modality.put_as_json(f"acquisition/{sid}", dn.AcquisitionSessionInfo(DeviceId=second)),
                    dn.AcquisitionSession)
    _, body = modality.last_request()
    assert body == f'{{"DeviceId":"{second}","ClientName":null,"Context":null}}'.encode()
    assert moved["deviceId"] == second
    assert moved["context"] == context
    assert moved["clientName"] == "Imaging"
    again = dn_read(modality.get(f"acquisition/{sid}"), dn.AcquisitionSession)
    assert again["deviceId"] == second and again["context"] == context
    assert dn_read(modality.get(f"devices/{first}"), dn.DeviceInfo)["status"] == "Available"
    assert dn_read(modality.get(f"devices/{second}"), dn.DeviceInfo)["status"] == "InUse"

    # A context the caller does set replaces the stored one.
    replaced = dn_read(modality.put_as_json(f"acquisition/{sid}", dn.AcquisitionSessionInfo(
        DeviceId=second, ClientName="Imaging", Context={"patient": "P-8"})), dn.AcquisitionSession)
    assert replaced["context"] == {"patient": "P-8"}
    assert modality.delete(f"acquisition/{sid}").is_success


# -- Filters ----------------------------------------------------------------------

def upload(client: dn.DotNetHttpClient, info: dn.FiltersImageInfo | None, media: bytes,
           media_type: str = "image/png") -> dn.Response:
    """UploadImage: the PNG part first, then the ImageInfo as JsonConvert + StringContent make it."""
    return client.post_multipart("images", [
        ("imageMedia", media_type, media),
        ("ImageInfo", dn.STRING_CONTENT, dn.newtonsoft_json(info)),
    ])


def mapped_info() -> dn.FiltersImageInfo:
    return dn.FiltersImageInfo(AcquisitionInfo=dn.FiltersAcquisitionInfo(Binning=dn.BinningMode.Unbinned),
                               LutInfo=dn.lut_info(images.LUT_INFO))


@pytest.fixture
def mapped_image(filters_sdk):
    """A LUT-mapped image uploaded as the SDK uploads it: (resource id, its pixels, the PNG)."""
    pixels = filters.lut_map(images.raw_image(), lut=LUT)
    media = images.png16(pixels)
    resource = dn_read(upload(filters_sdk, mapped_info(), media), dn.ImageResource, 201)
    return resource["id"], pixels, media


def filtered(response: dn.Response) -> np.ndarray:
    """ReadAsStreamAsync of a filter answer: a 16-bit PNG (no Accept header was sent)."""
    ensure_success(response, 200)
    assert response.media_type == "image/png", response
    return decode_gray16(response.body, **BIG)


def test_filters_upload_flow(filters_sdk):
    """IsServiceAvailable, UploadImage, GetImage, GetImageMedia, UnmapFilter, DeleteImage."""
    ensure_success(filters_sdk.get(""), 200)                                   # IsServiceAvailable

    pixels = filters.lut_map(images.raw_image(), lut=LUT)
    media = images.png16(pixels)
    response = upload(filters_sdk, mapped_info(), media)                       # UploadImage
    headers, body = filters_sdk.last_request()
    boundary = headers["Content-Type"].split('boundary="', 1)[1].rstrip('"')
    assert headers["Content-Type"] == f'multipart/form-data; boundary="{boundary}"'
    assert headers["Content-Length"] == str(len(body)) and headers["Expect"] == "100-continue"
    assert body.startswith(f"--{boundary}\r\nContent-Type: image/png\r\n"
                           "Content-Disposition: form-data; name=imageMedia\r\n\r\n".encode())
    assert (f"\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Disposition: form-data; name=ImageInfo\r\n\r\n"
            '{"AcquisitionInfo":{"Binning":0},"LutInfo":{"Gamma":2.3,"Slope":65535.0,"Offset":0.0,'
            '"TotalGrays":4096,"MinimumGray":3612,"MaximumGray":418}}'
            f"\r\n--{boundary}--\r\n").encode() in body
    resource = dn.read_as(ensure_success(response, 201), dn.ImageResource)
    rid = resource["id"]
    assert resource["mediaType"] == "image/png" and "modalitySession" not in resource
    assert resource["imageInfo"]["lutInfo"] == images.LUT_INFO
    assert resource["imageInfo"]["acquisitionInfo"]["binning"] == "Unbinned"

    got = dn_read(filters_sdk.get(f"images/{rid}"), dn.ImageResource)          # GetImage
    assert got["id"] == rid and got["imageInfo"] == resource["imageInfo"]

    stored = ensure_success(filters_sdk.get(f"images/{rid}/media"), 200)       # GetImageMedia
    assert stored.body == media

    response = filters_sdk.post_empty(f"images/{rid}/filters/unmap")          # UnmapFilter
    headers, body = filters_sdk.last_request()
    assert headers["Content-Length"] == "0" and "Content-Type" not in headers and body == b""
    assert np.array_equal(filtered(response), filters.lut_unmap(pixels, lut=lut_from_info(resource["imageInfo"])))

    response = filters_sdk.delete(f"images/{rid}")                             # DeleteImage
    assert response.is_success and response.status == 204
    assert filters_sdk.get(f"images/{rid}").status == 404


@pytest.mark.parametrize("mode,name", [
    (dn.EnhancementModes.Smooth, "smooth"), (dn.EnhancementModes.EdgeLow, "edgeLow"),
    (dn.EnhancementModes.EdgeHigh, "edgeHigh"), (dn.EnhancementModes.EdgePro, "edgePro"),
])
def test_select_filter(filters_sdk, mapped_image, mode, name):
    rid, pixels, _ = mapped_image
    response = filters_sdk.post_as_json(f"images/{rid}/filters/select", dn.SelectFilterParameters(mode))
    assert filters_sdk.last_request()[1] == f'{{"EnhancementMode":{int(mode)}}}'.encode()
    assert np.array_equal(filtered(response), filters.select(pixels, lut=LUT, mode=name))


@pytest.mark.parametrize("task,name,sharpness", [
    (dn.SupremeTaskNames.General, "general", 70.0), (dn.SupremeTaskNames.Endodontic, "endodontic", 70.0),
    (dn.SupremeTaskNames.Periodontic, "periodontic", 62.5), (dn.SupremeTaskNames.Restorative, "restorative", 100.0),
    (dn.SupremeTaskNames.Hygiene, "hygiene", 30.0),
])
def test_supreme_filter(filters_sdk, mapped_image, task, name, sharpness):
    rid, pixels, _ = mapped_image
    response = filters_sdk.post_as_json(f"images/{rid}/filters/supreme", dn.SupremeFilterParameters(task, sharpness))
    assert filters_sdk.last_request()[1] == f'{{"Task":{int(task)},"Sharpness":{sharpness!r}}}'.encode()
    assert np.array_equal(filtered(response), filters.supreme(pixels, lut=LUT, task=name, sharpness=sharpness))


@pytest.mark.parametrize("task,name,sharpness", [
    (dn.AETaskNames.General, "general", 70.0), (dn.AETaskNames.Endodontic, "endodontic", 45.5),
    (dn.AETaskNames.Periodontic, "periodontic", 70.0), (dn.AETaskNames.Restorative, "restorative", 100.0),
])
def test_ae_filter(filters_sdk, mapped_image, task, name, sharpness):
    rid, pixels, _ = mapped_image
    response = filters_sdk.post_as_json(f"images/{rid}/filters/ae", dn.AEFilterParameters(task, sharpness))
    assert filters_sdk.last_request()[1] == f'{{"Task":{int(task)},"Sharpness":{sharpness!r}}}'.encode()
    assert np.array_equal(filtered(response), filters.ae(pixels, lut=LUT, task=name, sharpness=sharpness))


def test_upload_without_a_lut(filters_sdk):
    """An ImageInfo whose properties were never set goes out as nulls: an unmapped image."""
    raw = images.raw_image()
    resource = dn_read(upload(filters_sdk, dn.FiltersImageInfo(), images.png16(raw)), dn.ImageResource, 201)
    assert filters_sdk.last_request()[1].count(b'{"AcquisitionInfo":null,"LutInfo":null}') == 1
    assert lut_from_info(resource["imageInfo"]) is None
    response = filters_sdk.post_as_json(f"images/{resource['id']}/filters/select",
                                        dn.SelectFilterParameters(dn.EnhancementModes.EdgeHigh))
    assert np.array_equal(filtered(response), filters.select(raw, lut=None, mode="edgeHigh"))


def test_upload_with_a_null_image_info(filters_sdk):
    """UploadImage(null, ...): JsonConvert writes the part as the text `null`."""
    raw = images.raw_image()
    response = upload(filters_sdk, None, images.png16(raw))
    assert b"\r\n\r\nnull\r\n" in filters_sdk.last_request()[1]
    # Newtonsoft leaves properties missing from the answer null: an empty ImageInfo reads fine.
    resource = dn.read_as(ensure_success(response, 201), dn.ImageResource, require_all=False)
    assert resource["imageInfo"] == {} and lut_from_info(resource["imageInfo"]) is None


def test_filters_on_a_modality_image(srv, modality, filters_sdk):
    """CreateImage from a live session's image, then GetImage, GetImageMedia, a filter,
    DeleteImage and DeleteAcquisitionSession, as an imaging client does after an exposure."""
    device_id = binning_device(modality)
    sid = dn_read(modality.post_as_json("acquisition", dn.AcquisitionSessionInfo(DeviceId=device_id)),
                  dn.AcquisitionSession, 201)["sessionId"]
    image = acquire(srv, modality, sid, device_id, dn.AcquisitionInfo(Enable=True, Binning=dn.BinningMode.Binned2X2))
    lut = lut_from_info(image)
    assert lut is not None      # ApplyLut defaults to true: the image is mapped
    modality_media = ensure_success(modality.get(f"acquisition/{sid}/images/{image['id']}/media"), 200).body

    response = filters_sdk.post_as_json("images/modality", dn.ModalitySession(sid, image["id"]))   # CreateImage
    assert filters_sdk.last_request()[1] == f'{{"SessionId":"{sid}","ImageId":"{image["id"]}"}}'.encode()
    resource = dn.read_as(ensure_success(response, 201), dn.ImageResource)
    assert resource["modalitySession"] == {"sessionId": sid, "imageId": image["id"]}
    rid = resource["id"]

    got = dn_read(filters_sdk.get(f"images/{rid}"), dn.ImageResource)          # GetImage
    assert got["id"] == rid and lut_from_info(got["imageInfo"]) == lut
    assert ensure_success(filters_sdk.get(f"images/{rid}/media"), 200).body == modality_media   # GetImageMedia

    pixels = decode_gray16(modality_media, **BIG)
    response = filters_sdk.post_as_json(f"images/{rid}/filters/select",
                                        dn.SelectFilterParameters(dn.EnhancementModes.EdgePro))
    assert np.array_equal(filtered(response), filters.select(pixels, lut=lut, mode="edgePro"))
    # v1.0 cannot say how the image was binned; its ImageInfo does, and Supreme follows it.
    response = filters_sdk.post_as_json(f"images/{rid}/filters/supreme",
                                        dn.SupremeFilterParameters(dn.SupremeTaskNames.General, 70.0))
    assert np.array_equal(filtered(response),
                          filters.supreme(pixels, lut=lut, task="general", sharpness=70.0, binned=True))

    assert ensure_success(filters_sdk.delete(f"images/{rid}"), 204)            # DeleteImage
    assert modality.delete(f"acquisition/{sid}").is_success                   # DeleteAcquisitionSession
