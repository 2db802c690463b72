"""The state schemathesis fuzzes against: a real daemon with real ids to aim at.

Ids generated from the vendor's specs are random strings, so alone they only
ever reach the 404 answers. ``World.aim`` swaps most of them for ids that
exist (a device, a session holding two exposures, a filters resource), so the
fuzzed bodies and the answers' schemas are checked where the work is done.
Which ids are swapped follows a CRC of the generated value: repeatable runs.
Calls that would destroy the shared state (DELETE) get a throwaway target
made for them; sessions a fuzzed POST creates are deleted after it.
"""
from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import images
from tests.support.filters_api import upload
from tests.support.modality import API, control, create_session, devices, expose, subscribe_status
from tests.support.server import Running

ROOT = Path(__file__).resolve().parents[2]
# CI clones the repository with shared/ beside it, as on the development machines.
SPECS = ROOT.parent / "shared" / "specs"
FILTERS_API = "/api/dsio/filters/v1"


def spec_path(name: str) -> Path:
    path = SPECS / name
    if not path.is_file():
        raise pytest.UsageError(f"the vendor's spec {path} is missing: the tests expect the shared/ "
                                f"folder beside the repository ({ROOT.parent}/shared), as CI clones it")
    return path


def _keep_generated(value: object) -> bool:
    """One generated id in five is sent as generated (the 404 paths); the rest are aimed."""
    return zlib.crc32(repr(value).encode()) % 5 == 0


@dataclass
class World:
    srv: Running
    devices: list[str]           # every device id
    spare: str                   # a device no session holds: throwaway sessions go there
    session: str                 # holds two images (one with a LUT, one without)
    images: list[str]
    fresh: str                   # a session without an image yet
    resource: str                # a filters resource of a 64x48 upload
    throwaway: list[tuple[str, str]] = field(default_factory=list)   # (kind, id) to clean up

    # -- before the call ---------------------------------------------------------
    def aim(self, case) -> None:
        params = case.path_parameters or {}
        label = f"{case.method} {case.path}"
        for name, value in list(params.items()):
            if _keep_generated(value):
                continue
            params[name] = self._real(name, value, label)
        query = case.query or {}
        if "deviceId" in query and not _keep_generated(query["deviceId"]):
            query["deviceId"] = self.devices[zlib.crc32(repr(query["deviceId"]).encode()) % len(self.devices)]
        body = case.body
        if isinstance(body, dict) and not _keep_generated(body):
            self._aim_body(label, body)

    def _real(self, name: str, value: object, label: str) -> str:
        pick = zlib.crc32(repr(value).encode())
        if name == "deviceId":
            return self.devices[pick % len(self.devices)]
        if name == "sessionId":
            if label == "DELETE /acquisition/{sessionId}":
                return self._throwaway_session()
            return self.fresh if pick % 3 == 0 else self.session
        if name == "imageId":
            return self.images[pick % len(self.images)]
        if name == "id":             # the Filters API's resource
            if label == "DELETE /images/{id}":
                return self._throwaway_resource()
            return self.resource
        return str(value)

    def _aim_body(self, label: str, body: dict) -> None:
        if label == "POST /acquisition" and "deviceId" in body:
            body["deviceId"] = self.spare
        elif label == "POST /images/modality":
            body["sessionId"], body["imageId"] = self.session, self.images[0]
        elif label == "POST /images" and "imageMedia" in body:
            body["imageMedia"] = images.png16(images.raw_image(48, 64))

    def _throwaway_session(self) -> str:
        sid = create_session(self.srv, self.spare)["sessionId"]
        self.throwaway.append(("session", sid))
        return sid

    def _throwaway_resource(self) -> str:
        rid = upload(self.srv, media=images.png16(images.raw_image(48, 64))).json()["id"]
        self.throwaway.append(("resource", rid))
        return rid

    # -- after the call ----------------------------------------------------------
    def tidy(self, case, response) -> None:
        """Delete what the call made (``response`` None: it failed), so the
        spare device stays free for the next."""
        created = response is not None and response.status_code == 201
        if f"{case.method} {case.path}" == "POST /acquisition" and created:
            self.throwaway.append(("session", response.json()["sessionId"]))
        while self.throwaway:
            kind, ident = self.throwaway.pop()
            path = f"{API}/acquisition/{ident}" if kind == "session" else f"{FILTERS_API}/images/{ident}"
            self.srv.http.delete(self.srv.url(path))


@contextlib.contextmanager
def world(srv: Running):
    """Set the daemon up (four devices): a session with two images on the
    first, the second spare, a session without images on the third, the
    fourth's sensor pulled (SensorInfo's empty answer); a filters resource."""
    ids = [d["deviceId"] for d in devices(srv)]
    holder, spare, idle, sensorless = ids
    sid = create_session(srv, holder, clientName="schemathesis")["sessionId"]
    fresh = create_session(srv, idle)["sessionId"]
    stream = subscribe_status(srv, sid)
    try:
        shots = [expose(srv, sid, holder, stream, applyLut=True)[1]["id"],
                 expose(srv, sid, holder, stream, applyLut=False, rotation=90)[1]["id"]]
    finally:
        stream.close()
    assert control(srv, sensorless, "unplug-sensor").status_code == 200
    response = upload(srv, media=images.png16(images.raw_image(48, 64)))
    assert response.status_code == 201, response.text
    yield World(srv, ids, spare, sid, shots, fresh, response.json()["id"])
