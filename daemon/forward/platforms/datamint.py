"""Datamint: upload the PNG as a resource, with tags, channel, modality and metadata.

One call delivers: ``POST {url}/resources``, multipart, header ``apikey``,
with the parts the Datamint client sends: ``source=api``, ``resource`` (the
file, ``image/png``), ``source_filepath``, ``mimetype``, ``channel``,
``modality``, ``bypass_inbox`` (``true`` publishes at once, ``false`` leaves
the resource in the inbox), ``tags`` (comma-separated) and ``metadata`` (a
JSON part: the ImageInfo's essentials, the acquisition context and the pixel
hash). Any 2xx answer is JSON with the new resource's ``id``, or an ``error``,
which is permanent.

The upload is not idempotent on the platform's side, so the name is: the
resource is always called ``<image_id>.png`` (``source_filepath``
``sensord/<image_id>.png``). Before every upload (a first attempt may follow
a lost one from before a restart, or an operator's requeue), the adapter asks ``GET {url}/resources?filename=...`` (the
query the Datamint client uses, answering ``{"data": [{"resources": [...]}]}``)
and, if a resource of exactly that name exists and is not deleted, returns it
as a ``duplicate: true`` receipt instead of storing a second copy.

The resource's id (from the upload's answer or the lookup) is recorded in the
outbox entry as step ``uploaded`` before the receipt is returned; a retry or a
restart that finds it returns that receipt without asking the platform again.

Options (``[[forward.targets]]`` with ``kind = "datamint"``):

=========  ========  =========================================================
url        optional  API root, default ``https://api.datamint.io``
api_key    required  sent as the ``apikey`` header
channel    optional  a name grouping the uploads; not sent when unset
modality   optional  default ``IO`` (DICOM's intraoral radiography)
tags       optional  list of strings, no commas; default none
publish    optional  bool, default false: resources wait in the inbox
timeout    optional  seconds per HTTP call, default 30
deidentify optional  bool, default true: a de-identified copy (names, ids, birth
                     dates removed or pseudonymised in metadata and context;
                     ``deidentify_dates``, ``pseudonym_key``: see forward.deidentify)
=========  ========  =========================================================
"""
from __future__ import annotations

import json
import re

import requests

from . import options as options_mod
from .base import (
    Adapter,
    Delivery,
    PermanentError,
    RetryableError,
    check_response,
    transport,
)
from .options import REQUIRED
from .options import checker as _checker

DEFAULT_URL = "https://api.datamint.io"
MIMETYPE = "image/png"
LOOKUP_LIMIT = 100



# -- options -------------------------------------------------------------------------------------

_text, _boolean = options_mod.text, options_mod.boolean
_seconds = _checker(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 3600,
                  "a number of seconds in (0, 3600)")
_tags = _checker(lambda v: isinstance(v, list) and all(isinstance(t, str) and t.strip() and "," not in t for t in v),
               "a list of non-empty strings without commas")


def _url(value):
    if not isinstance(value, str) or not re.match(r"https?://[^/\s]+", value):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


OPTIONS = {
    "url": (_url, DEFAULT_URL), "api_key": (_text, REQUIRED), "channel": (_text, None),
    "modality": (_text, "IO"), "tags": (_tags, []), "publish": (_boolean, False), "timeout": (_seconds, 30),
}


def parse_options(target: str, options: dict) -> dict:
    """Checked options with defaults; ValueError names the target and the key."""
    return options_mod.parse("datamint", target, options, OPTIONS)


# -- the request, from the delivery (pure) ---------------------------------------------------------

_INFO_KEYS = ("id", "createdOn", "width", "height", "bitsPerPixel", "pixelSizeX", "pixelSizeY")
_NESTED_KEYS = {"sensorInfo": ("brand", "family", "modelName", "serialNumber", "version"),
                "deviceInfo": ("modelName", "serialNumber", "interfaceType", "version"),
                "acquisitionInfo": ("binning", "rotation", "applyLut")}


def source_filepath(item: Delivery) -> str:
    return f"sensord/{item.filename}"


def metadata(item: Delivery) -> dict:
    """The JSON metadata part: what a reader of the resource needs to know about the image."""
    info = item.image_info
    image = {k: info[k] for k in _INFO_KEYS if info.get(k) is not None}
    for key, fields in _NESTED_KEYS.items():
        nested = info.get(key)
        if isinstance(nested, dict):
            image[key] = {k: nested[k] for k in fields if nested.get(k) is not None}
    return {"source": "sensord", "imageId": item.image_id, "imageInfo": image,
            "pixelHash": info.get("pixelHash"), "context": dict(item.context)}


def upload_parts(opts: dict, item: Delivery, data: bytes) -> list[tuple]:
    """The multipart parts of ``POST /resources``, in the order the Datamint client sends them."""
    parts = [("source", (None, "api")),
             ("resource", (item.filename, data, MIMETYPE)),
             ("source_filepath", (None, source_filepath(item))),
             ("mimetype", (None, MIMETYPE))]
    if opts["channel"] is not None:
        parts.append(("channel", (None, opts["channel"])))
    parts.append(("modality", (None, opts["modality"])))
    parts.append(("bypass_inbox", (None, "true" if opts["publish"] else "false")))
    if opts["tags"]:
        parts.append(("tags", (None, ",".join(opts["tags"]))))
    parts.append(("metadata", (None, json.dumps(metadata(item)), "application/json")))
    return parts


# -- the adapter ---------------------------------------------------------------------------------

class DatamintAdapter(Adapter):
    kind = "datamint"

    def __init__(self, *, name: str, options: dict, http: requests.Session | None = None):
        self.opts = parse_options(name, options)
        super().__init__(name=name, options=options, http=http)
        self.root = self.opts["url"]

    def deliver(self, item: Delivery) -> dict:
        uploaded = item.progress.get("uploaded")
        if isinstance(uploaded, dict) and uploaded.get("id"):     # uploaded before: nothing left to do
            return {**self._receipt(item, uploaded, duplicate=bool(uploaded.get("duplicate"))), "resumed": True}
        found = self.find(item)
        if found is not None:
            item.record("uploaded", {"id": str(found["id"]), "status": found.get("status"), "duplicate": True})
            return self._receipt(item, found, duplicate=True)
        try:
            data = item.png_path.read_bytes()
        except OSError as err:
            raise PermanentError(f"datamint: cannot read the image to deliver: {err}") from None
        response = self._send("POST", "/resources", "datamint upload", files=upload_parts(self.opts, item, data))
        body = self._json(response, "datamint upload")
        if isinstance(body, dict) and body.get("error"):
            raise PermanentError(f"datamint upload refused: {body['error']}")
        if not isinstance(body, dict) or not body.get("id"):
            raise PermanentError(f"datamint upload: no resource id in the answer: {response.text[:300]!r}")
        item.record("uploaded", {"id": str(body["id"]), "status": body.get("status"), "duplicate": False})
        return self._receipt(item, body, duplicate=False)

    def find(self, item: Delivery) -> dict | None:
        """The live resource named like ``item``, if one was stored by an earlier attempt."""
        params = {"filename": item.filename, "status": "", "offset": 0, "limit": LOOKUP_LIMIT}
        response = self._send("GET", "/resources", "datamint lookup", params=params)
        body = self._json(response, "datamint lookup")
        try:
            resources = body["data"][0]["resources"] if body["data"] else []
        except (KeyError, IndexError, TypeError):
            raise PermanentError(f"datamint lookup: unexpected answer: {response.text[:300]!r}") from None
        for resource in resources:      # the platform's filter may match parts of names: compare exactly
            if isinstance(resource, dict) and resource.get("filename") == item.filename \
                    and not resource.get("deleted") and resource.get("id"):
                return resource
        return None

    def _receipt(self, item: Delivery, resource: dict, *, duplicate: bool) -> dict:
        receipt = {"platform": "datamint", "id": str(resource["id"]), "filename": item.filename,
                   "source_filepath": source_filepath(item), "duplicate": duplicate}
        if resource.get("status"):
            receipt["status"] = resource["status"]
        return receipt

    def _json(self, response: requests.Response, what: str):
        try:
            return response.json()
        except ValueError:
            raise PermanentError(f"{what}: the answer is not JSON: {response.text[:300]!r}") from None

    def _send(self, method: str, path: str, what: str, **kwargs) -> requests.Response:
        def call():
            return self.http.request(method, self.root + path, headers={"apikey": self.opts["api_key"]},
                                     timeout=self.opts["timeout"], **kwargs)
        try:
            response = transport(call, what)
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as err:
            raise RetryableError(f"{what}: answer cut short: {err}") from None
        except requests.RequestException as err:
            raise PermanentError(f"{what}: {type(err).__name__}: {err}") from None
        check_response(response, what)
        return response


ADAPTER_CLASS = DatamintAdapter
