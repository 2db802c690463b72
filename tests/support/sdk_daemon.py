"""A daemon set up the way the SDK tests use it: the SDK runs as the imaging
software does (a client), and sensord's own controls (exposing the simulated
sensor) go through an operator."""
from __future__ import annotations

import functools

import requests

from sensord.daemon.api.auth import hash_password
from tests.support import dotnet_client as dn
from tests.support.server import PASSWORD, USER

MODALITY = "/api/dsio/modality/v1/"     # the SDKs' BaseAddress paths, trailing slash included
FILTERS = "/api/dsio/filters/v1/"
ADMIN = "/api/sensord/v1"
BIG = {"max_width": 8192, "max_height": 8192}
OPERATOR, OPERATOR_PASSWORD = "operator-on-duty", "operator's own password"


@functools.cache
def _users() -> dict:
    return {USER: hash_password(PASSWORD), OPERATOR: hash_password(OPERATOR_PASSWORD)}


def start(serve, **sections):
    """A daemon where USER is a client and OPERATOR an operator."""
    return serve(auth={"users": _users(), "roles": {OPERATOR: "operator"}}, **sections)


def control(srv, device_id: str, action: str) -> None:
    response = requests.post(srv.url(f"{ADMIN}/devices/{device_id}/{action}"),
                             auth=(OPERATOR, OPERATOR_PASSWORD), timeout=30)
    assert response.status_code == 200, response.text


def sdk(srv, base: str) -> dn.DotNetHttpClient:
    """The SDK's HttpClient with its BaseAddress at ``base``, as the client user."""
    return dn.DotNetHttpClient(srv.base + base, USER, PASSWORD)


def ensure_success(response: dn.Response, status: int) -> dn.Response:
    """EnsureSuccessStatusCode, and the very status the spec gives for the call."""
    assert response.is_success, response
    assert response.status == status, response
    return response
