"""Hostile JSON through the real server: each kind refused with a 400 that
names what was wrong (test_api_json_sweep.py then throws a list of them at
every endpoint).

The rows of the issue: nesting depth, integers of thousands of digits, NaN
and Infinity, keys given twice (also when they differ only in case), two
imageInfo or two imageMedia parts; and the bounds sit just past what real
clients send.
"""
from __future__ import annotations

import json

from sensord.daemon.dsio.strict_json import MAX_DEPTH
from tests.support import images
from tests.support.filters_api import API, assert_error, post_raw, upload
from tests.support.json_bodies import MEDIA, info_upload, send_json
from tests.support.modality import API as MODALITY
from tests.support.modality import devices

LUT = images.LUT_INFO


# -- the rows of the issue, one by one ------------------------------------------

def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# One server for all the rows of a kind (subtests): each row reports on its own.
BODY_ROWS = {
    "depth-33": (nested(MAX_DEPTH + 1), ["deeper", str(MAX_DEPTH)]),
    "depth-1000": (b"[" * 1000 + b"]" * 1000, ["deeper", str(MAX_DEPTH)]),
    "depth-60000": (b"[" * 60000, ["deeper"]),                  # unclosed, and deeper than the stack
    "int-5000-digits": (b'{"task": "general", "sharpness": ' + b"7" * 5000 + b"}", ["5000 digits", "at most 20"]),
    "long-fraction": (b'{"task": "general", "sharpness": 1' + b"0" * 400 + b".5}", ["characters"]),
    "1e400": (b'{"task": "general", "sharpness": 1e400}', ["out of range", "1e400"]),
    "NaN": (b'{"task": "general", "sharpness": NaN}', ["NaN", "not JSON"]),
    "Infinity": (b'{"task": "general", "sharpness": Infinity}', ["Infinity", "not JSON"]),
    "-Infinity": (b'{"task": "general", "sharpness": -Infinity}', ["-Infinity", "not JSON"]),
    "duplicate-key": (b'{"task": "general", "sharpness": 70, "sharpness": 30}', ["'sharpness' twice"]),
    "duplicate-key-case": (b'{"task": "general", "Sharpness": 70, "sharpness": 30}',
                           ["'Sharpness'", "'sharpness'", "case"]),
}


def test_hostile_json_body_is_400_naming_it(serve, subtests):
    srv = serve()
    rid = upload(srv, info=images.image_info(), media=MEDIA).json()["id"]
    for name, (body, words) in BODY_ROWS.items():
        with subtests.test(name):
            assert_error(send_json(srv, f"{API}/images/{rid}/filters/supreme", body), 400, *words)


INFO_ROWS = {
    "depth": (json.dumps(images.image_info())[:-1].encode() + b', "x": ' + nested(MAX_DEPTH) + b"}", ["deeper"]),
    "int-5000-digits": (b'{"width": ' + b"1" * 5000 + b"}", ["5000 digits"]),
    "NaN": (b'{"pixelSizeX": NaN}', ["NaN"]),
    "2e999": (b'{"pixelSizeX": 2e999}', ["out of range"]),
    "lutInfo-LutInfo": (b'{"lutInfo": null, "LutInfo": ' + json.dumps(LUT).encode() + b"}",
                        ["'lutInfo'", "'LutInfo'"]),
    "duplicate-in-context": (b'{"acquisitionInfo": {"context": {"tooth": "36", "tooth": "37"}}}',
                             ["'tooth' twice"]),
}


def test_hostile_image_info_is_400_and_nothing_is_stored(serve, subtests):
    srv = serve()
    for name, (info_bytes, words) in INFO_ROWS.items():
        with subtests.test(name):
            assert_error(info_upload(srv, info_bytes), 400, "imageInfo", *words)
    assert list(srv.daemon.store.root.iterdir()) == []


PART_ROWS = {
    "two-imageInfo": (["imageInfo", "imageInfo"], ["'imageInfo'"]),
    "case": (["imageInfo", "ImageInfo"], ["'imageInfo'", "'ImageInfo'"]),
    "alias-info": (["imageInfo", "info"], ["'imageInfo'", "'info'"]),
    "two-imageMedia": (["imageMedia", "imageMedia"], ["'imageMedia'"]),
    "alias-file": (["imageMedia", "file"], ["'imageMedia'", "'file'"]),
}


def test_a_part_given_twice_is_400_naming_it(serve, subtests):
    srv = serve()
    info = json.dumps(images.image_info()).encode()
    for row, (names, words) in PART_ROWS.items():
        parts = [('name="imageInfo"', {"Content-Type": "application/json"}, info),
                 ('name="imageMedia"; filename="a.png"', {"Content-Type": "image/png"}, MEDIA)]
        kind = 0 if "info" in names[0].lower() else 1
        parts = [parts[1 - kind]] + [(f'name="{name}"' + ('; filename="a.png"' if kind else ""),
                                      parts[kind][1], parts[kind][2]) for name in names]
        body, ctype = images.multipart(parts)
        with subtests.test(row):
            assert_error(post_raw(srv, body, ctype), 400, "more than one", *words)
    assert list(srv.daemon.store.root.iterdir()) == []


def test_the_bounds_sit_just_past_what_real_clients_send(serve):
    """What a real client sends is inside every bound (a BOM, PascalCase,
    explicit nulls, .NET's doubles and 64-bit integers, a context nested to
    the depth allowed); one step past a bound is refused."""
    srv = serve()

    def image_info(context) -> bytes:
        return b"\xef\xbb\xbf" + json.dumps({
            "AcquisitionInfo": {"Binning": 1, "Rotation": None, "Context": context},
            "LutInfo": {"Gamma": 2.3, "Slope": 65535.0, "Offset": 0.0, "TotalGrays": 4096,
                        "MinimumGray": 3612, "MaximumGray": 418},
            "PixelSizeX": 0.0185, "PixelSizeY": 1.8500000000000001E-02, "ModalitySession": None,
        }).encode() + b" \r\n"

    response = info_upload(srv, image_info({"patient": {"id": 2**64 - 1, "ids": [-2**63, 2**63 - 1]}}))
    assert response.status_code == 201, response.text
    assert response.json()["imageInfo"]["acquisitionInfo"]["context"]["patient"]["id"] == 2**64 - 1
    assert_error(info_upload(srv, image_info({"patient": {"id": 10**20}})), 400, "21 digits", "at most 20")

    def nest(levels: int) -> dict:      # levels of objects below the ImageInfo's context
        deep: dict = {"level": 1}
        for _ in range(levels - 1):
            deep = {"level": deep}
        return deep

    # The ImageInfo and its AcquisitionInfo are two levels; the context may take the rest.
    assert info_upload(srv, image_info(nest(MAX_DEPTH - 2))).status_code == 201
    assert_error(info_upload(srv, image_info(nest(MAX_DEPTH - 1))), 400, "deeper than 32")

    rid = response.json()["id"]
    ok = send_json(srv, f"{API}/images/{rid}/filters/supreme",
                   b"\xef\xbb\xbf" + json.dumps({"Task": 0, "Sharpness": 70.0}).encode())
    assert ok.status_code == 200, ok.text
    session = {"DeviceId": devices(srv)[0]["deviceId"], "ClientName": None, "Context": nest(MAX_DEPTH - 1)}
    assert send_json(srv, f"{MODALITY}/acquisition", json.dumps(session).encode()).status_code == 201
