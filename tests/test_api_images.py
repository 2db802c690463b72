"""Image resources over HTTP: upload, read, delete, auth and malformed input."""
from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest
import requests

from tests.support import images
from tests.support.filters_api import API, assert_error, post_raw, upload
from tests.support.server import USER


def test_base_url_answers_when_the_service_is_up(serve):
    srv = serve()
    for path in (API, API + "/"):
        response = srv.http.get(srv.url(path))
        assert response.status_code == 200
        assert response.json()["api"] == "dsio-filters"


@pytest.mark.parametrize("auth", [None, (USER, "wrong"), ("nobody", "x")])
def test_every_endpoint_requires_basic_auth(serve, auth):
    srv = serve()
    for method, path in (("GET", API), ("POST", API + "/images"), ("GET", API + "/images/x"),
                         ("DELETE", API + "/images/x"), ("POST", API + "/images/x/filters/unmap")):
        response = requests.request(method, srv.url(path), auth=auth)
        assert_error(response, 401, "authentication")
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_upload_then_get_resource_and_media(serve):
    srv = serve(store={"lifetime_seconds": 3600})
    media = images.png16(images.raw_image())
    response = upload(srv, media=media)
    assert response.status_code == 201, response.text
    res = response.json()
    assert list(res) == ["id", "mediaType", "url", "createdOn", "expires", "imageInfo"]   # no modalitySession
    assert res["mediaType"] == "image/png"
    assert res["imageInfo"] == images.image_info()
    created = datetime.fromisoformat(res["createdOn"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(res["expires"].replace("Z", "+00:00"))
    assert (expires - created).total_seconds() == pytest.approx(3600, abs=0.01)
    assert response.headers["Location"].endswith(f"/images/{res['id']}")

    assert srv.http.get(srv.url(f"{API}/images/{res['id']}")).json() == res
    got = srv.http.get(res["url"])
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "image/png"
    assert got.content == media


def test_delete_answers_204_then_404(serve):
    srv = serve()
    rid = upload(srv).json()["id"]
    assert srv.http.delete(srv.url(f"{API}/images/{rid}")).status_code == 204
    assert_error(srv.http.delete(srv.url(f"{API}/images/{rid}")), 404, rid)
    assert_error(srv.http.get(srv.url(f"{API}/images/{rid}")), 404)
    assert_error(srv.http.get(srv.url(f"{API}/images/{rid}/media")), 404)
    assert not (srv.daemon.store.root / rid).exists()


@pytest.mark.parametrize("method,path", [
    ("GET", "/images/nope"), ("DELETE", "/images/nope"), ("GET", "/images/nope/media"),
    ("POST", "/images/nope/filters/unmap"), ("POST", "/images/nope/filters/select"),
    ("POST", "/images/nope/filters/supreme"), ("POST", "/images/nope/filters/ae"),
])
def test_unknown_ids_answer_404(serve, method, path):
    srv = serve()
    assert_error(srv.http.request(method, srv.url(API + path), json={}), 404, "nope")


def test_unknown_route_and_wrong_method_answer_json(serve):
    srv = serve()
    assert_error(srv.http.get(srv.url(API + "/nothing-here")), 404)
    assert_error(srv.http.put(srv.url(API + "/images")), 405)


def test_dotnet_style_upload_is_accepted(serve):
    """Newtonsoft's defaults: PascalCase names, enum as number, nulls; unquoted part names,
    no filename on the PNG part, JSON labelled text/plain, a quoted boundary."""
    srv = serve()
    info = {"AcquisitionInfo": {"Binning": 1, "Rotation": None},
            "LutInfo": {"Gamma": 2.3, "Slope": 65535.0, "Offset": 0.0, "TotalGrays": 4096,
                        "MinimumGray": 3612, "MaximumGray": 418},
            "ModalitySession": None}
    media = images.png16(images.raw_image())
    body, _ = images.multipart([
        ("name=ImageInfo", {"Content-Type": "text/plain; charset=utf-8"}, json.dumps(info).encode()),
        ("name=imageMedia", {"Content-Type": "application/octet-stream"}, media),
    ], boundary="7a1c0b4e-7a1c-4f0e-9d2b-d6b5a2f1e3c4")
    response = post_raw(srv, body, 'multipart/form-data; boundary="7a1c0b4e-7a1c-4f0e-9d2b-d6b5a2f1e3c4"')
    assert response.status_code == 201, response.text
    got = response.json()["imageInfo"]
    assert got["acquisitionInfo"] == {"binning": "Binned2x2", "rotation": None}
    assert got["lutInfo"] == images.LUT_INFO
    assert srv.http.get(response.json()["url"]).content == media


def test_vendor_wiki_spelling_binned2X2_is_accepted(serve):
    srv = serve()
    response = upload(srv, info=images.image_info(acquisitionInfo={"binning": "Binned2X2"}))
    assert response.status_code == 201
    assert response.json()["imageInfo"]["acquisitionInfo"]["binning"] == "Binned2x2"


@pytest.mark.parametrize("media,status,words", [
    (images.png8(), 415, ["16-bit", "8-bit"]),
    (images.png16_rgb(), 415, ["16-bit", "rgb"]),
    (images.jpeg(), 415, ["png"]),
    (b"GIF89a" + b"\0" * 40, 415, ["png"]),
    (images.png_claiming(100_000, 100_000), 413, ["100000"]),
    (images.png16(images.raw_image())[:200], 400, ["png"]),
    (b"", 400, ["empty"]),
], ids=["png8", "png16-rgb", "jpeg", "gif", "huge", "truncated", "empty"])
def test_wrong_media_is_refused(serve, media, status, words):
    srv = serve()
    assert_error(upload(srv, media=media), status, *words)
    assert list(srv.daemon.store.root.iterdir()) == []


def test_corrupt_pixel_data_is_400(serve):
    srv = serve()
    data = bytearray(images.png16(images.raw_image()))
    idat = data.index(b"IDAT")
    data[idat + 20: idat + 60] = b"\xff" * 40
    assert_error(upload(srv, media=bytes(data)), 400)


def test_dimensions_bound_comes_from_settings(serve):
    srv = serve(images={"max_width": 100, "max_height": 100})
    assert_error(upload(srv, media=images.png16(images.raw_image(120, 160))), 413, "160")


@pytest.mark.parametrize("info_bytes,words", [
    (b"{not json", ["json"]),
    (b"[1, 2]", ["object"]),
    (json.dumps({"lutInfo": {"gamma": "2.3"}}).encode(), ["gamma"]),
    (json.dumps({"lutInfo": {**images.LUT_INFO, "slope": 0}}).encode(), ["slope"]),
    (json.dumps({"lutInfo": {**images.LUT_INFO, "maximumGray": 3612}}).encode(), ["lutInfo"]),
    (json.dumps({"acquisitionInfo": {"binning": "Binned3x3"}}).encode(), ["binning"]),
])
def test_bad_image_info_is_400(serve, info_bytes, words):
    srv = serve()
    body, ctype = images.multipart([
        ('name="imageInfo"', {"Content-Type": "application/json"}, info_bytes),
        ('name="imageMedia"; filename="a.png"', {"Content-Type": "image/png"},
         images.png16(images.raw_image())),
    ])
    assert_error(post_raw(srv, body, ctype), 400, *words)


def test_missing_parts_are_400(serve):
    srv = serve()
    media = images.png16(images.raw_image())
    only_media, ctype = images.multipart([('name="imageMedia"; filename="a.png"', {}, media)])
    assert_error(post_raw(srv, only_media, ctype), 400, "imageInfo")
    only_info, ctype = images.multipart([('name="imageInfo"', {}, b"{}")])
    assert_error(post_raw(srv, only_info, ctype), 400, "imageMedia")


def test_malformed_multipart_is_400(serve):
    srv = serve()
    body, ctype = images.multipart([
        ('name="imageInfo"', {}, json.dumps(images.image_info()).encode()),
        ('name="imageMedia"; filename="a.png"', {}, images.png16(images.raw_image())),
    ])
    assert_error(post_raw(srv, body[:-40], ctype), 400, "multipart")            # truncated
    assert_error(post_raw(srv, body, "multipart/form-data"), 400, "boundary")   # no boundary
    assert_error(post_raw(srv, b"just some bytes", ctype), 400, "multipart")
    no_disposition = body.replace(b"Content-Disposition", b"Content-Dispositio", 1)
    assert_error(post_raw(srv, no_disposition, ctype), 400, "multipart")
    assert list(srv.daemon.store.root.iterdir()) == []


def test_non_multipart_body_is_415(serve):
    srv = serve()
    response = srv.http.post(srv.url(API + "/images"), json=images.image_info())
    assert_error(response, 415, "multipart/form-data")


def test_upload_over_the_size_limit_is_413(serve):
    srv = serve(server={"max_upload_mb": 1})
    noise = np.random.default_rng(1).integers(0, 65535, (800, 800), dtype=np.uint16)
    media = images.png16(noise)
    assert len(media) > 1 << 20
    assert_error(upload(srv, media=media), 413)
    assert list(srv.daemon.store.root.iterdir()) == []


def test_realm_comes_from_settings(serve):
    srv = serve(auth={"realm": "Surgery 3"})
    response = requests.get(srv.url(API))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="Surgery 3"')
