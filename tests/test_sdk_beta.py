"""The vendor's beta .NET Filters SDK (tag v1.0-beta), as it goes on the wire.

Beta clients are still in the field; the daemon accepts their forms beside
the released ones (tests/test_sdk_released.py). Requests go through
tests/support/dotnet_client.py exactly as HttpClient + Newtonsoft write them.

What the beta does differently from v1.0:
- UploadImage posts the PNG as the whole body (a StreamContent with the
  caller's Content-Type), with no ImageInfo at all.
- Every filter body carries the map: SelectFilterImageParam
  {EnhancementMode, LutInfo}, SupremeFilterImageParam {Task, BinningMode,
  Sharpness, LutInfo}, OmegaFilterImageParam {Task, Sharpness, LutInfo}
  (what AeFilter posts). Enums are Nullable (null when unset), Sharpness is
  an int, LutInfo is null when unset.
- UnmapFilter posts the LutInfo itself as the JSON body (``null`` when the
  caller passes none).
- Its ImageResource type has no ImageInfo (an extra property is ignored).

Filters ServiceProxy (v1.0-beta), each call covered:

    [x] SetBasicAuthenticationHeader
    [x] IsServiceAvailable      GET ""
    [x] UploadImage             POST images            the PNG as the body, Content-Type image/png
    [x] CreateImage             POST images/modality   ModalitySession (as v1.0)
    [x] GetImage                GET images/{id}
    [x] GetImageMedia           GET images/{id}/media
    [x] SelectFilter            POST images/{id}/filters/select    SelectFilterImageParam
    [x] SupremeFilter           POST images/{id}/filters/supreme   SupremeFilterImageParam
    [x] AeFilter                POST images/{id}/filters/ae        OmegaFilterImageParam
    [x] UnmapFilter             POST images/{id}/filters/unmap     LutInfo (or null)
    [x] DeleteImage             DELETE images/{id}

The beta Modality SDK's ServiceProxy is the same as v1.0's, call for call;
its subscription readers parse the stream the same way (only their
threading differs), so tests/test_sdk_released.py covers it.

The rules the daemon follows for these bodies: a LutInfo in a filter body is
the map to use (over the resource's; the only one for an image uploaded
without one); a null LutInfo means "not given"; an all-zero LutInfo means no
map, as everywhere else. A BinningMode is the binning the image was
acquired with: Binned2X2 runs the binned Supreme presets. Unknown keys are
still refused.
"""
from __future__ import annotations

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

LUT = Lut.from_info(images.LUT_INFO)
# A second, different map: linear-ish, not inverted, on 14 bits.
OTHER_LUT_INFO = {"gamma": 1.6, "slope": 60000.0, "offset": 1000.0, "totalGrays": 16384,
                  "minimumGray": 200, "maximumGray": 15000}
OTHER_LUT = Lut.from_info(OTHER_LUT_INFO)


def read(response: dn.Response, tp, status: int = 200):
    return dn.read_as(ensure_success(response, status), tp)


def assert_error(response: dn.Response, status: int, *words: str) -> None:
    """The daemon's error shape: the status and a JSON message naming what was wrong."""
    assert response.status == status, response
    assert response.media_type == "application/json", response
    body = response.json()
    assert body["status"] == status
    for word in words:
        assert word.lower() in body["message"].lower(), body["message"]


def filtered(response: dn.Response) -> np.ndarray:
    ensure_success(response, 200)
    assert response.media_type == "image/png", response
    return decode_gray16(response.body, **BIG)


def upload_beta(client: dn.DotNetHttpClient, media: bytes, media_type: str = "image/png") -> dn.Response:
    """The beta UploadImage: the file's StreamContent as the body."""
    return client.post_content("images", media, media_type)


def upload_released(client: dn.DotNetHttpClient, lut: dict | None, media: bytes) -> dn.Response:
    """The v1.0 UploadImage (multipart with an ImageInfo), to give a resource its own map."""
    info = dn.FiltersImageInfo(dn.FiltersAcquisitionInfo(dn.BinningMode.Unbinned),
                               dn.lut_info(lut) if lut else None)
    return client.post_multipart("images", [("imageMedia", "image/png", media),
                                            ("ImageInfo", dn.STRING_CONTENT, dn.newtonsoft_json(info))])


def assert_default_image_info(info) -> None:
    """The ImageInfo of an upload that had none: no map, no acquisition details."""
    assert isinstance(info, dict), info
    dn.check_type(info, dn.FiltersImageInfo, require_all=False)
    assert lut_from_info(info) is None, info
    acquisition = info.get("acquisitionInfo")
    assert not acquisition or acquisition.get("binning") in (None, "Unbinned"), info


@pytest.fixture
def srv(serve):
    return start(serve)


@pytest.fixture
def client(srv):
    c = sdk(srv, FILTERS)
    yield c
    c.close()


@pytest.fixture
def bare_image(client):
    """A LUT-mapped image uploaded the beta way, without its map: (resource id, pixels)."""
    pixels = filters.lut_map(images.raw_image(), lut=LUT)
    resource = read(upload_beta(client, images.png16(pixels)), dn.BetaImageResource, 201)
    return resource["id"], pixels


# -- UploadImage ---------------------------------------------------------------

def test_upload_flow(client):
    """IsServiceAvailable, UploadImage (the PNG as the body), GetImage, GetImageMedia, DeleteImage."""
    ensure_success(client.get(""), 200)                                       # IsServiceAvailable

    media = images.png16(filters.lut_map(images.raw_image(), lut=LUT))
    response = upload_beta(client, media)                                     # UploadImage
    headers, body = client.last_request()
    assert headers["Content-Type"] == "image/png" and headers["Content-Length"] == str(len(media))
    assert headers["Expect"] == "100-continue" and body == media
    resource = read(response, dn.BetaImageResource, 201)
    rid = resource["id"]
    assert resource["mediaType"] == "image/png" and "modalitySession" not in resource
    assert_default_image_info(resource.get("imageInfo"))
    # A v1.0 client can read the same resource (an empty ImageInfo leaves its properties null).
    dn.check_type(resource, dn.ImageResource, require_all=False)

    got = read(client.get(f"images/{rid}"), dn.BetaImageResource)              # GetImage
    assert got["id"] == rid
    assert_default_image_info(got.get("imageInfo"))
    assert ensure_success(client.get(f"images/{rid}/media"), 200).body == media   # GetImageMedia

    assert ensure_success(client.delete(f"images/{rid}"), 204)                # DeleteImage
    assert client.get(f"images/{rid}").status == 404


@pytest.mark.parametrize("media,media_type", [
    (images.jpeg(), "image/png"),          # a file that is not a PNG, labelled as one
    (images.jpeg(), "image/jpeg"),
    (images.png8(), "image/png"),          # a PNG, but 8-bit
    (images.png16_rgb(), "image/png"),     # 16-bit, but colour
], ids=["jpeg-as-png", "jpeg", "png8", "png16-rgb"])
def test_upload_refuses_what_is_not_a_16_bit_gray_png(client, media, media_type):
    assert_error(upload_beta(client, media, media_type), 415)


def test_upload_limits_apply(serve):
    srv = start(serve, images={"max_width": 64, "max_height": 64})
    client = sdk(srv, FILTERS)
    try:
        fits = images.png16(images.raw_image(48, 64))
        assert read(upload_beta(client, fits), dn.BetaImageResource, 201)
        for height, width in ((48, 65), (65, 48)):
            assert_error(upload_beta(client, images.png16(images.raw_image(height, width))), 413)
        # A header that claims far more than the data holds is refused from the header alone.
        assert_error(upload_beta(client, images.png_claiming(60000, 60000)), 413)
    finally:
        client.close()


# -- filters with a LutInfo in the body ----------------------------------------------

@pytest.mark.parametrize("mode,name", [
    (dn.EnhancementMode.Smooth, "smooth"), (dn.EnhancementMode.EdgeLow, "edgeLow"),
    (dn.EnhancementMode.EdgeHigh, "edgeHigh"), (dn.EnhancementMode.EdgePro, "edgePro"),
])
def test_select_with_the_map_in_the_body(client, bare_image, mode, name):
    rid, pixels = bare_image
    response = client.post_as_json(f"images/{rid}/filters/select",
                                   dn.SelectFilterImageParam(mode, dn.lut_info(images.LUT_INFO)))
    assert client.last_request()[1] == (
        f'{{"EnhancementMode":{int(mode)},"LutInfo":{{"Gamma":2.3,"Slope":65535.0,"Offset":0.0,'
        '"TotalGrays":4096,"MinimumGray":3612,"MaximumGray":418}}').encode()
    assert np.array_equal(filtered(response), filters.select(pixels, lut=LUT, mode=name))


@pytest.mark.parametrize("task,name,binning,sharpness", [
    (dn.TaskName.General, "general", dn.BinningMode.Unbinned, 70),
    (dn.TaskName.General, "general", dn.BinningMode.Binned2X2, 70),
    (dn.TaskName.Endodontic, "endodontic", dn.BinningMode.Binned2X2, 40),
    (dn.TaskName.Periodontic, "periodontic", dn.BinningMode.Unbinned, 85),
    (dn.TaskName.Restorative, "restorative", dn.BinningMode.Binned2X2, 100),
    (dn.TaskName.Hygiene, "hygiene", None, 70),     # BinningMode left unset: null
])
def test_supreme_with_the_map_and_binning_in_the_body(client, bare_image, task, name, binning, sharpness):
    rid, pixels = bare_image
    params = dn.SupremeFilterImageParam(task, binning, sharpness, dn.lut_info(images.LUT_INFO))
    response = client.post_as_json(f"images/{rid}/filters/supreme", params)
    binning_json = "null" if binning is None else int(binning)
    assert client.last_request()[1].startswith(
        f'{{"Task":{int(task)},"BinningMode":{binning_json},"Sharpness":{sharpness},"LutInfo":{{"Gamma":2.3,'.encode())
    binned = binning == dn.BinningMode.Binned2X2
    expected = filters.supreme(pixels, task=name, sharpness=float(sharpness), lut=LUT, binned=binned)
    assert np.array_equal(filtered(response), expected)
    if binned:      # the binned presets really differ, so the check above means something
        assert not np.array_equal(expected, filters.supreme(pixels, task=name, sharpness=float(sharpness), lut=LUT))


@pytest.mark.parametrize("task,name,sharpness", [
    (dn.TaskName.General, "general", 70), (dn.TaskName.Endodontic, "endodontic", 35),
    (dn.TaskName.Periodontic, "periodontic", 70), (dn.TaskName.Restorative, "restorative", 100),
])
def test_ae_with_the_map_in_the_body(client, bare_image, task, name, sharpness):
    rid, pixels = bare_image
    response = client.post_as_json(f"images/{rid}/filters/ae",
                                   dn.OmegaFilterImageParam(task, sharpness, dn.lut_info(images.LUT_INFO)))
    assert client.last_request()[1].startswith(f'{{"Task":{int(task)},"Sharpness":{sharpness},"LutInfo":{{'.encode())
    assert np.array_equal(filtered(response), filters.ae(pixels, task=name, sharpness=float(sharpness), lut=LUT))


def test_the_map_in_the_body_overrides_the_resources(client):
    """The resource says one map, the body another: the body's is used."""
    pixels = filters.lut_map(images.raw_image(), lut=OTHER_LUT)
    rid = read(upload_released(client, images.LUT_INFO, images.png16(pixels)), dn.ImageResource, 201)["id"]

    response = client.post_as_json(f"images/{rid}/filters/select",
                                   dn.SelectFilterImageParam(dn.EnhancementMode.EdgePro, dn.lut_info(OTHER_LUT_INFO)))
    expected = filters.select(pixels, lut=OTHER_LUT, mode="edgePro")
    assert not np.array_equal(expected, filters.select(pixels, lut=LUT, mode="edgePro"))
    assert np.array_equal(filtered(response), expected)

    response = client.post_as_json(f"images/{rid}/filters/ae",
                                   dn.OmegaFilterImageParam(dn.TaskName.General, 70, dn.lut_info(OTHER_LUT_INFO)))
    assert np.array_equal(filtered(response), filters.ae(pixels, task="general", sharpness=70.0, lut=OTHER_LUT))

    response = client.post_as_json(f"images/{rid}/filters/unmap", dn.lut_info(OTHER_LUT_INFO))
    assert np.array_equal(filtered(response), filters.lut_unmap(pixels, lut=OTHER_LUT))


def test_a_null_lut_info_uses_the_resources_map(client):
    """LutInfo left unset goes out as null: the map the image was uploaded with applies."""
    pixels = filters.lut_map(images.raw_image(), lut=LUT)
    rid = read(upload_released(client, images.LUT_INFO, images.png16(pixels)), dn.ImageResource, 201)["id"]
    response = client.post_as_json(f"images/{rid}/filters/select",
                                   dn.SelectFilterImageParam(dn.EnhancementMode.EdgeLow))
    assert client.last_request()[1] == b'{"EnhancementMode":1,"LutInfo":null}'
    assert np.array_equal(filtered(response), filters.select(pixels, lut=LUT, mode="edgeLow"))
    response = client.post_as_json(f"images/{rid}/filters/supreme",
                                   dn.SupremeFilterImageParam(dn.TaskName.General, dn.BinningMode.Unbinned, 70))
    assert np.array_equal(filtered(response), filters.supreme(pixels, task="general", sharpness=70.0, lut=LUT))


def test_an_all_zero_lut_info_in_a_body_is_no_map(client):
    raw = images.raw_image()
    rid = read(upload_beta(client, images.png16(raw)), dn.BetaImageResource, 201)["id"]
    zero = dn.LutInfo()
    response = client.post_as_json(f"images/{rid}/filters/select", dn.SelectFilterImageParam(dn.EnhancementMode.EdgePro, zero))
    assert np.array_equal(filtered(response), filters.select(raw, lut=None, mode="edgePro"))
    response = client.post_as_json(f"images/{rid}/filters/ae", dn.OmegaFilterImageParam(dn.TaskName.General, 60, zero))
    assert np.array_equal(filtered(response), filters.ae(raw, task="general", sharpness=60.0, lut=None))
    assert_error(client.post_as_json(f"images/{rid}/filters/unmap", zero), 400, "map")


@pytest.mark.parametrize("name,body,word", [
    ("select", {"EnhancementMode": 3, "LutInfo": None, "Strength": 2}, "Strength"),
    ("supreme", {"Task": 0, "Binning": 1, "Sharpness": 70, "LutInfo": None}, "Binning"),
    ("ae", {"Task": 0, "Sharpness": 70, "LutInfo": None, "BinningMode": 0}, "BinningMode"),
])
def test_unknown_keys_are_still_refused(client, bare_image, name, body, word):
    rid, _ = bare_image
    assert_error(client.post_as_json(f"images/{rid}/filters/{name}", body), 400, word)


# -- UnmapFilter(imageId, LutInfo) ---------------------------------------------------

def test_unmap_with_the_map_as_the_body(client, bare_image):
    rid, pixels = bare_image
    response = client.post_as_json(f"images/{rid}/filters/unmap", dn.lut_info(images.LUT_INFO))
    headers, body = client.last_request()
    assert headers["Transfer-Encoding"] == "chunked"
    assert body == (b'{"Gamma":2.3,"Slope":65535.0,"Offset":0.0,'
                    b'"TotalGrays":4096,"MinimumGray":3612,"MaximumGray":418}')
    assert np.array_equal(filtered(response), filters.lut_unmap(pixels, lut=LUT))


@pytest.mark.parametrize("form", ["beta-null", "released-bodiless"])
def test_unmap_without_any_map_is_400(client, form):
    """Nothing says how the image was mapped: nothing to undo, and the answer says so
    (not a 200 with the pixels unchanged)."""
    # Uploaded the v1.0 way with a null LutInfo, so only the unmap is under test here.
    rid = read(upload_released(client, None, images.png16(images.raw_image())), dn.ImageResource, 201)["id"]
    if form == "beta-null":
        response = client.post_as_json(f"images/{rid}/filters/unmap", None)
        assert client.last_request()[1] == b"null"
    else:
        response = client.post_empty(f"images/{rid}/filters/unmap")
    assert_error(response, 400, "map")


# -- CreateImage, and a modality image's own map ---------------------------------------

def test_create_image_and_filter_a_binned_exposure(srv, client):
    """A beta client after an exposure: CreateImage, then Supreme with the modality
    ImageInfo's LutInfo and the binning it was acquired with."""
    modality = sdk(srv, MODALITY)
    try:
        binnable = {}     # device id -> pixels of its sensor; the smallest makes the cheapest image
        for device in read(modality.get("devices"), list[dn.DeviceInfo]):
            sensor = read(modality.get(f"devices/{device['deviceId']}/sensor"), dn.SensorInfo)
            if sensor and sensor["supportsBinning"]:
                binnable[device["deviceId"]] = sensor["width"] * sensor["height"]
        device_id = min(binnable, key=binnable.get)
        sid = read(modality.post_as_json("acquisition", dn.AcquisitionSessionInfo(DeviceId=device_id)),
                   dn.AcquisitionSession, 201)["sessionId"]
        with modality.subscribe(f"acquisition/{sid}/status/subscribe?heartbeat=1000",
                                {"message": dn.AcquisitionStatus}) as status:
            read(modality.put_as_json(f"acquisition/{sid}/info",
                                      dn.AcquisitionInfo(Enable=True, Binning=dn.BinningMode.Binned2X2)),
                 dn.AcquisitionInfo)
            status.until(lambda kind, data: data["ready"])
            control(srv, device_id, "expose")
            seen = status.until(lambda kind, data: data["state"] == "NewImage", timeout=20)
        iid = seen[-1][1]["lastImageId"]
        image = read(modality.get(f"acquisition/{sid}/images/{iid}"), dn.ImageInfo)
        media = ensure_success(modality.get(f"acquisition/{sid}/images/{iid}/media"), 200).body
        lut = lut_from_info(image)
        assert lut is not None

        resource = read(client.post_as_json("images/modality", dn.ModalitySession(sid, iid)),   # CreateImage
                        dn.BetaImageResource, 201)
        rid = resource["id"]
        assert resource["modalitySession"] == {"sessionId": sid, "imageId": iid}
        assert read(client.get(f"images/{rid}"), dn.BetaImageResource)["id"] == rid          # GetImage
        assert ensure_success(client.get(f"images/{rid}/media"), 200).body == media          # GetImageMedia

        pixels = decode_gray16(media, **BIG)
        # The client passes the modality ImageInfo's LutInfo along, as the beta sample does.
        params = dn.SupremeFilterImageParam(dn.TaskName.General, dn.BinningMode.Binned2X2, 70,
                                            dn.lut_info(image["lutInfo"]))
        response = client.post_as_json(f"images/{rid}/filters/supreme", params)
        assert np.array_equal(filtered(response),
                              filters.supreme(pixels, task="general", sharpness=70.0, lut=lut, binned=True))

        assert ensure_success(client.delete(f"images/{rid}"), 204)                           # DeleteImage
        assert modality.delete(f"acquisition/{sid}").is_success
    finally:
        modality.close()
