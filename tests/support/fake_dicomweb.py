"""A small DICOMweb archive whose STOW-RS answers a test picks (canned DICOM JSON bodies).

``POST /studies`` reads the multipart body, stores each instance (unless the
answer is a failure, ``store=False``), counts the call and answers
``status`` with ``body(sop)``: the DICOM JSON a real archive gives (PS3.18
10.5.3). ``GET .../instances/{sop}`` serves a stored instance back as
``multipart/related`` (404 when unknown). ``lose_next_stow(seconds)`` stores,
then holds the answer back so a client with a shorter timeout loses it.
"""
from __future__ import annotations

import http
import json
import threading
import uuid

from sensord.daemon.forward.platforms import dicom
from sensord.daemon.forward.platforms.dicomweb import multipart_related, split_multipart


def referenced(sop: str, *, url: str | None = None, warning: int | None = None) -> dict:
    """Referenced SOP Sequence (0008,1199) naming ``sop``."""
    item = {"00081150": {"vr": "UI", "Value": [dicom.SOP_CLASS]}, "00081155": {"vr": "UI", "Value": [sop]}}
    if url is not None:
        item["00081190"] = {"vr": "UR", "Value": [url]}
    if warning is not None:
        item["00081196"] = {"vr": "US", "Value": [warning]}
    return {"00081199": {"vr": "SQ", "Value": [item]}}


def failed(sop: str, reason: int) -> dict:
    """Failed SOP Sequence (0008,1198) naming ``sop`` with Failure Reason (0008,1197)."""
    return {"00081198": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": [dicom.SOP_CLASS]},
                                                 "00081155": {"vr": "UI", "Value": [sop]},
                                                 "00081197": {"vr": "US", "Value": [reason]}}]}}


class FakeStow:
    def __init__(self, *, status: int = 200, body=referenced, store: bool = True):
        self.status, self.body, self.store = status, body, store
        self.instances: dict[str, bytes] = {}
        self.stows = 0
        self.readbacks = 0
        self._lose: list[float] = []
        self._released = threading.Event()
        self._lock = threading.Lock()

    def lose_next_stow(self, seconds: float) -> None:
        self._lose.append(seconds)

    def release(self) -> None:
        self._released.set()

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "POST":
            data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            sops = []
            for part in split_multipart(data, environ["CONTENT_TYPE"]):
                sop = dicom.read_pixels(part)[0].SOPInstanceUID
                sops.append(sop)
                if self.store:
                    with self._lock:
                        self.instances.setdefault(sop, part)      # one instance per SOP Instance UID
            with self._lock:
                self.stows += 1
                hold = self._lose.pop(0) if self._lose else None
            answer = json.dumps(self.body(sops[0]) if sops else {}).encode()
            if hold is not None:
                self._released.wait(hold)
            start_response(f"{self.status} {http.HTTPStatus(self.status).phrase}",
                           [("Content-Type", "application/dicom+json")])
            return [answer]
        with self._lock:
            self.readbacks += 1
        path = environ["PATH_INFO"]
        sop = path.removesuffix("/metadata").rsplit("/", 1)[-1]
        if sop not in self.instances:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b"{}"]
        body, content_type = multipart_related([self.instances[sop]], boundary="b-" + uuid.uuid4().hex)
        start_response("200 OK", [("Content-Type", content_type)])
        return [body]
