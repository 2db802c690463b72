"""No body reaches a 500: a fuzz-ish sweep through the real server.

A list of hostile values is put into each field of every endpoint that
takes JSON (and sent as whole bodies too, with a few broken ones); every
answer must be 2xx, or 4xx with the JSON error body. The values are JSON
text, so some are not JSON at all (NaN, unclosed brackets), and some are
legal JSON that was once a 500 further in (a list as a target name, an
integer too long for Python's int()).
"""
from __future__ import annotations

import json

import pytest

from tests.support import images
from tests.support.filters_api import API, upload
from tests.support.forward import target
from tests.support.json_bodies import MEDIA, send_json
from tests.support.modality import API as MODALITY
from tests.support.modality import create_session, devices

SENSORD = "/api/sensord/v1"

# Values put where an endpoint expects one, as JSON text.
VALUES = [
    "null", "true", "0", "-1", "1.5", "1e308", "5e-324", "9223372036854775808", "18446744073709551616",
    "1" * 21, "9" * 5000, "1" + "0" * 60 + ".0", "1e400", "-1e400", "NaN", "Infinity", "-Infinity",
    '""', '"x"', '"' + "x" * 30000 + '"', r'"\ud800"', r'"\u0000"', '"../../../etc/passwd"',
    "[]", "{}", "[" + "0," * 5000 + "0]", '{"a": 1, "A": 2}', '{"a": 1, "a": 2}',
    "[" * 40 + "]" * 40, "[" * 2000 + "]" * 2000, '{"__proto__": {"x": 1}}',
]
# Whole bodies, besides each value alone.
BODIES = [b"", b" ", b"\xef\xbb\xbf", b"\xff\xfe\x00{", b"{", b"{]", b'{"a":}', b"[1,]", b"{'a': 1}",
          b"\x00" * 64, b'{"a": 1} {"b": 2}', b"// comment\n{}", b"{" * 50000]


def _lut_with(key: str) -> str:
    return json.dumps({**images.LUT_INFO, key: "@V@"}).replace('"@V@"', "@V@")


LUT_FIELDS = [f'{{"lutInfo": {_lut_with(k)}}}' for k in ("gamma", "totalGrays", "minimumGray")]
# endpoint -> (method, path, body templates: @V@ is where a value goes, {rid} {sid} {dev} {spare} ids)
ENDPOINTS = {
    "upload": ("POST", f"{API}/images", [
        "@V@", '{"lutInfo": @V@}', '{"acquisitionInfo": @V@}', '{"acquisitionInfo": {"binning": @V@}}',
        '{"acquisitionInfo": {"context": @V@}}', '{"width": @V@, "pixelSizeX": @V@}', *LUT_FIELDS]),
    "link": ("POST", f"{API}/images/modality", [
        "@V@", '{"sessionId": @V@, "imageId": "x"}', '{"sessionId": "{sid}", "imageId": @V@}']),
    "unmap": ("POST", f"{API}/images/{{rid}}/filters/unmap", [
        "@V@", '{"lutInfo": @V@}', *LUT_FIELDS, _lut_with("slope"), _lut_with("maximumGray")]),
    "select": ("POST", f"{API}/images/{{rid}}/filters/select", [
        "@V@", '{"enhancementMode": @V@}', '{"enhancementMode": "edgePro", "lutInfo": @V@}', *LUT_FIELDS]),
    "supreme": ("POST", f"{API}/images/{{rid}}/filters/supreme", [
        "@V@", '{"task": @V@, "sharpness": 70}', '{"task": "general", "sharpness": @V@}',
        '{"task": 1, "sharpness": 50, "binningMode": @V@}']),
    "ae": ("POST", f"{API}/images/{{rid}}/filters/ae", [
        "@V@", '{"task": @V@, "sharpness": 70}', '{"task": "general", "sharpness": @V@}']),
    "create-session": ("POST", f"{MODALITY}/acquisition", [
        "@V@", '{"deviceId": @V@}', '{"deviceId": "{spare}", "clientName": @V@, "context": @V@}']),
    "update-session": ("PUT", f"{MODALITY}/acquisition/{{sid}}", [
        "@V@", '{"deviceId": @V@}', '{"clientName": @V@}', '{"context": @V@}']),
    "session-info": ("PUT", f"{MODALITY}/acquisition/{{sid}}/info", [
        "@V@", '{"enable": @V@}', '{"enable": false, "rotation": @V@}', '{"enable": false, "binning": @V@}',
        '{"applyLut": @V@}', '{"enable": false, "context": @V@}']),
    "forward": ("POST", f"{SENSORD}/forward", [
        "@V@", '{"target": @V@, "resourceId": "{rid}"}', '{"target": "dm", "resourceId": @V@}',
        '{"target": "dm", "sessionId": @V@, "imageId": @V@}',
        '{"target": "dm", "resourceId": "{rid}", "filter": @V@}',
        '{"target": "dm", "resourceId": "{rid}", "context": @V@}']),
    "expose": ("POST", f"{SENSORD}/devices/{{dev}}/expose", ["@V@", '{"dose": @V@}', '{"seed": @V@}']),
    "battery": ("POST", f"{SENSORD}/devices/{{dev}}/battery", ["@V@", '{"percent": @V@}']),
    "plug-sensor": ("POST", f"{SENSORD}/devices/{{dev}}/plug-sensor", ["@V@", '{"model": @V@}']),
}


def _refusal_is_json(response) -> bool:
    return (response.headers.get("Content-Type", "").startswith("application/json")
            and response.json().get("status") == response.status_code and "Traceback" not in response.text)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_no_hostile_body_reaches_a_500(serve, datamint, endpoint):
    _, url = datamint
    srv = serve(forward={"targets": [target(url)]})
    first, spare = (d["deviceId"] for d in devices(srv)[:2])
    ids = {"rid": upload(srv, info=images.image_info(), media=MEDIA).json()["id"],
           "dev": first, "spare": spare, "sid": create_session(srv, first)["sessionId"]}
    method, path, templates = ENDPOINTS[endpoint]
    for key, value in ids.items():
        path = path.replace("{" + key + "}", value)
        templates = [t.replace("{" + key + "}", value) for t in templates]
    bodies = BODIES + [t.replace("@V@", v).encode() for v in VALUES for t in templates]
    bad = []
    for body in bodies:
        response = send_json(srv, path, body, method)
        if response.status_code >= 500 or (response.status_code >= 400 and not _refusal_is_json(response)):
            bad.append(f"{response.status_code} for {body[:80]!r}: {response.text[:200]}")
    assert not bad, f"{len(bad)} of {len(bodies)} bodies:\n" + "\n".join(bad)
