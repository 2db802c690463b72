"""The filters over HTTP: results, parameters and output formats."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sensord import filters
from sensord.filters.lut import Lut
from tests.support import images
from tests.support.filters_api import API, assert_error, upload

LUT = Lut(gamma=2.3, slope=65535.0, offset=0.0, total_grays=4096, minimum_gray=3612, maximum_gray=418)


@pytest.fixture
def mapped(serve):
    """A daemon holding one LUT-mapped image; yields (server, resource id, pixels)."""
    srv = serve()
    pixels = filters.lut_map(images.raw_image(), lut=LUT)
    response = srv.http.post(srv.url(API + "/images"),
                             files=images.upload_files(images.image_info(), images.png16(pixels)))
    assert response.status_code == 201
    return srv, response.json()["id"], pixels


def run(srv, rid, name, body=None, accept=None):
    headers = {"Accept": accept} if accept else {}
    return srv.http.post(srv.url(f"{API}/images/{rid}/filters/{name}"), json=body, headers=headers)


def test_unmap_returns_the_unmapped_pixels(mapped):
    srv, rid, pixels = mapped
    response = run(srv, rid, "unmap")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert np.array_equal(images.decode(response.content), filters.lut_unmap(pixels, lut=LUT))


@pytest.mark.parametrize("lut_info", [None, "zero"])
def test_unmap_of_an_image_without_a_map_is_400_not_the_input(serve, lut_info):
    """No filter answers 200 unless it did the work: with no map in the
    ImageInfo (null or all-zero) and none in the body there is nothing to undo."""
    srv = serve()
    info = {"acquisitionInfo": {"binning": "Unbinned"},
            "lutInfo": dict(images.ZERO_LUT_INFO) if lut_info == "zero" else None}
    rid = srv.http.post(srv.url(API + "/images"), files=images.upload_files(info, images.png16(images.raw_image()))
                        ).json()["id"]
    assert_error(run(srv, rid, "unmap"), 400, "nothing to unmap", "lutInfo")


@pytest.mark.parametrize("name,body,kwargs", [
    ("select", {"enhancementMode": "edgePro"}, {"mode": "edgePro"}),
    ("ae", {"task": "general", "sharpness": 60}, {"task": "general", "sharpness": 60.0}),
])
def test_an_all_zero_lut_info_is_no_lut(serve, name, body, kwargs):
    srv = serve()
    raw = images.raw_image()
    zero, none = (upload(srv, images.image_info(lutInfo=lut_info), images.png16(raw)).json()["id"]
                  for lut_info in (dict(images.ZERO_LUT_INFO), None))
    response = run(srv, zero, name, body)
    assert response.status_code == 200, response.text
    expected = getattr(filters, name)(raw, lut=None, **kwargs)
    assert np.array_equal(images.decode(response.content), expected)
    # Windowed for JPEG as an unmapped image is: from its own grays, not a LUT's range.
    assert run(srv, zero, name, body, accept="image/jpeg").content == \
        run(srv, none, name, body, accept="image/jpeg").content


@pytest.mark.parametrize("name,body,kwargs", [
    ("select", {"enhancementMode": "smooth"}, {"mode": "smooth"}),
    ("select", {"enhancementMode": "edgePro"}, {"mode": "edgePro"}),
    ("select", {"EnhancementMode": 2}, {"mode": "edgeHigh"}),
    ("supreme", {"task": "endodontic", "sharpness": 70.0}, {"task": "endodontic", "sharpness": 70.0}),
    ("supreme", {"Task": 4, "Sharpness": 10}, {"task": "hygiene", "sharpness": 10.0}),
    ("ae", {"task": "restorative", "sharpness": 100}, {"task": "restorative", "sharpness": 100.0}),
])
def test_enhancement_filters_match_the_library(mapped, name, body, kwargs):
    srv, rid, pixels = mapped
    response = run(srv, rid, name, body)
    assert response.status_code == 200, response.text
    expected = getattr(filters, name)(pixels, lut=LUT, **kwargs)
    assert np.array_equal(images.decode(response.content), expected)


@pytest.mark.parametrize("name,body,words", [
    ("select", {"enhancementMode": "blur"}, ["enhancementMode", "edgePro"]),
    ("select", None, ["enhancementMode", "required"]),
    ("select", {"enhancementMode": "smooth", "strength": 2}, ["strength"]),
    ("supreme", {"task": "general", "sharpness": 101}, ["sharpness", "100"]),
    ("supreme", {"task": "general", "sharpness": -1}, ["sharpness"]),
    ("supreme", {"task": "general", "sharpness": "70"}, ["sharpness"]),
    ("supreme", {"task": "general"}, ["sharpness", "required"]),
    ("ae", {"task": "hygiene", "sharpness": 50}, ["task", "restorative"]),
    ("ae", [1, 2], ["object"]),
])
def test_bad_filter_parameters_are_400(mapped, name, body, words):
    srv, rid, _ = mapped
    assert_error(run(srv, rid, name, body), 400, *words)


def test_malformed_filter_json_is_400(mapped):
    srv, rid, _ = mapped
    for name in ("unmap", "select", "supreme", "ae"):
        response = srv.http.post(srv.url(f"{API}/images/{rid}/filters/{name}"), data=b"{oops",
                                 headers={"Content-Type": "application/json"})
        assert_error(response, 400, "json")


def test_tiff_output_is_16_bit_and_lossless(mapped):
    srv, rid, pixels = mapped
    png = images.decode(run(srv, rid, "unmap", accept="image/png").content)
    response = run(srv, rid, "unmap", accept="image/tiff")
    assert response.headers["Content-Type"] == "image/tiff"
    tiff = np.asarray(Image.open(io.BytesIO(response.content)))
    assert tiff.dtype == np.uint16 and np.array_equal(tiff, png)


@pytest.mark.parametrize("accept,fmt", [("image/jpeg", "JPEG"), ("image/gif", "GIF")])
def test_jpeg_and_gif_are_8_bit_windowed_through_the_lut(mapped, accept, fmt):
    srv, rid, pixels = mapped
    response = run(srv, rid, "select", {"enhancementMode": "smooth"}, accept=accept)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == accept
    picture = Image.open(io.BytesIO(response.content))
    assert picture.format == fmt
    eight = np.asarray(picture.convert("L"))
    assert eight.shape == pixels.shape
    # Windowed, not shifted: the 16-bit content spreads over most of the 8-bit range.
    assert int(eight.max()) - int(eight.min()) > 150


@pytest.mark.parametrize("accept,expected", [
    ("*/*", "image/png"), ("image/*", "image/png"),
    ("image/tiff;q=0.9, image/jpeg;q=0.5", "image/tiff"),
    ("application/json, image/gif", "image/gif"),
])
def test_accept_negotiation(mapped, accept, expected):
    srv, rid, _ = mapped
    assert run(srv, rid, "unmap", accept=accept).headers["Content-Type"] == expected


def test_unsupported_accept_is_406(mapped):
    srv, rid, _ = mapped
    assert_error(run(srv, rid, "unmap", accept="application/json"), 406, "image/png")
    assert_error(run(srv, rid, "ae", {"task": "general", "sharpness": 5}, accept="image/webp"), 406)


def test_output_settings_change_the_answer(serve, tmp_path):
    """images.png_compression and images.jpeg_quality reach the encoders."""
    pixels = filters.lut_map(images.raw_image(240, 320), lut=LUT)
    sizes = {}
    for level, quality in ((0, 20), (9, 95)):
        srv = serve(state_dir=tmp_path / f"level{level}", images={"png_compression": level, "jpeg_quality": quality})
        rid = srv.http.post(srv.url(API + "/images"), files=images.upload_files(
            images.image_info(), images.png16(pixels))).json()["id"]
        png = run(srv, rid, "unmap")
        assert np.array_equal(images.decode(png.content), filters.lut_unmap(pixels, lut=LUT))
        sizes[level] = (len(png.content), len(run(srv, rid, "unmap", accept="image/jpeg").content))
    assert sizes[0][0] > sizes[9][0]          # stored PNG is larger than zlib level 9
    assert sizes[0][1] < sizes[9][1]          # JPEG quality 20 is smaller than 95


def test_filters_decode_again_without_a_pixel_cache(serve):
    srv = serve(store={"pixel_cache_mb": 0})
    pixels = filters.lut_map(images.raw_image(), lut=LUT)
    rid = srv.http.post(srv.url(API + "/images"), files=images.upload_files(
        images.image_info(), images.png16(pixels))).json()["id"]
    for _ in range(2):
        got = images.decode(run(srv, rid, "select", {"enhancementMode": "smooth"}).content)
        assert np.array_equal(got, filters.select(pixels, lut=LUT, mode="smooth"))
