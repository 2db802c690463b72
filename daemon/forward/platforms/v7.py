"""V7 Darwin: register images as dataset items, from the customer's bucket or uploaded.

Two modes, chosen by the ``mode`` option:

external
    The clinic has registered a storage bucket with Darwin, mounted here at
    ``storage_folder``. The 16-bit PNG is written there at its storage key
    (``{storage_prefix}/{image_id}.png``), read back and checked against the
    image's pixel hash, then ``POST …/items/register_existing`` lists it in
    the dataset. With ``readonly`` storage Darwin cannot write its own
    thumbnail, so a 356x200 JPEG goes to ``{storage_prefix}/thumbnails/`` and
    the payload carries its key and the image's width and height.
direct
    ``POST …/items/register_upload`` creates the item and answers an upload
    id; ``GET …/items/uploads/{id}/sign`` gives a signed URL; the bytes are
    PUT there (without our API key); ``POST …/items/uploads/{id}/confirm``
    completes it. The local PNG is checked against the pixel hash first.

De-identification: ``deidentify`` (default true), ``deidentify_dates`` and
``pseudonym_key`` are read by the forwarder (`forward.deidentify`): the
context, hence the ``path`` template's ``{patientId}``, carries a keyed
pseudonym instead of the patient's id, and no name or birth date.

Idempotency: the item's name is ``{image_id}.png`` and its folder comes from
the delivery's context, both the same on every attempt. Darwin keeps names
unique per folder, so a retry after a lost answer is refused per item as
``ALREADY_EXISTS``, which we report as a delivery (``"duplicate": true``).

Every step's result is recorded in the outbox entry (``item.record``)
before the next step: direct mode records ``upload`` (item and upload id,
from register_upload), ``put`` (the upload id whose bytes were PUT) and
``confirmed``; external mode records ``registered``. A retry or a restart
resumes from them. An existing name only proves that registration
happened, not that the bytes arrived: with no recorded upload the item is
looked up (darwin-py's listing: the dataset's numeric id from
``GET /api/datasets``, then ``GET …/items?dataset_ids[]=…&item_names[]=…``)
and, still ``uploading``, finished with its pending upload id, or deleted
and registered again when it has none. An entry is delivered only when the
listing shows the item past ``uploading`` (``processing``, ``new`` …);
``error`` is permanent.
"""
from __future__ import annotations

import logging
import os
import re
import string
import threading
from pathlib import Path
from typing import Any

import numpy as np

from sensord.daemon.dsio.imageinfo import lut_from_info
from sensord.daemon.durable import write_atomic
from sensord.filters import png as pngcodec
from sensord.filters.pixel_hash import ALGORITHMS as HASH_ALGS
from sensord.filters.pixel_hash import pixel_hash
from sensord.filters.thumbnail import jpeg_preview

from .base import (
    Adapter,
    Delivery,
    PermanentError,
    RetryableError,
    check_response,
    transport,
)

log = logging.getLogger("sensord.platforms.v7")

DEFAULT_URL = "https://darwin.v7labs.com/api/v2"
DEFAULT_PATH = "/sensord/{patientId}"
ALREADY_EXISTS = "ALREADY_EXISTS"
SLOT = "0"                      # single-image items have one slot; V7's docs name it "0"
MAX_SIDE = 65535
# Our thumbnail must be a separate, small file: Darwin warns that using the
# original as its thumbnail breaks some browsers. Its own thumbnails fit here.
THUMBNAIL_BOX = (356, 200)      # width, height
THUMBNAIL_QUALITY = 60
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


UPLOADING, FAILED = "uploading", "error"      # item statuses: not complete; V7 failed it
MAX_PAGES = 100


_COMMON = {"url", "team_slug", "api_key", "dataset_slug", "mode", "path", "timeout"}
_EXTERNAL = {"storage_name", "storage_folder", "storage_prefix", "readonly"}


# -- options ----------------------------------------------------------------

def _text(options: dict, key: str, default: str | None = None) -> str:
    value = options.get(key, default)
    if value is None:
        raise ValueError(f"v7: option {key!r} is required")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"v7: option {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _path_fields(template: str) -> list[str]:
    """The context keys a ``path`` template uses; ValueError (naming ``path``) if it is not one."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"v7: option 'path' is not a valid template ({err}): {template!r}") from None
    fields = []
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(f"v7: option 'path' may only use plain {{contextKey}} fields, got {{{field}}}"
                             f" in {template!r}")
        fields.append(field)
    return fields


def parse_options(options: dict) -> dict:
    """Check the target's options and fill in defaults; ValueError names the offending key."""
    mode = _text(options, "mode")
    if mode not in ("external", "direct"):
        raise ValueError(f"v7: option 'mode' must be 'external' or 'direct', got {mode!r}")
    allowed = _COMMON | (_EXTERNAL if mode == "external" else set())
    for key in options:
        if key not in allowed:
            where = " (external mode only)" if key in _EXTERNAL else ""
            raise ValueError(f"v7: unknown option {key!r}{where}; known: {', '.join(sorted(allowed))}")
    url = _text(options, "url", DEFAULT_URL).rstrip("/")
    if not re.match(r"https?://[^/\s]+", url):
        raise ValueError(f"v7: option 'url' must be an http(s) URL, got {url!r}")
    timeout = options.get("timeout", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise ValueError(f"v7: option 'timeout' must be a number of seconds in (0, 3600], got {timeout!r}")
    path = _text(options, "path", DEFAULT_PATH)
    opts = {"url": url, "mode": mode, "timeout": float(timeout), "path": path,
            "path_fields": _path_fields(path)}
    for key in ("team_slug", "api_key", "dataset_slug"):
        opts[key] = slug = _text(options, key)
        if key != "api_key" and "/" in slug:
            raise ValueError(f"v7: option {key!r} must be a slug without '/', got {slug!r}")
    if mode == "external":
        opts["storage_name"] = _text(options, "storage_name")
        folder = _text(options, "storage_folder")
        if not os.path.isabs(folder):
            raise ValueError(f"v7: option 'storage_folder' must be an absolute path, got {folder!r}")
        opts["storage_folder"] = Path(folder)
        prefix = options.get("storage_prefix", "sensord")
        parts = prefix.strip("/").split("/") if isinstance(prefix, str) and prefix.strip("/") else []
        if not isinstance(prefix, str) or "\\" in prefix or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"v7: option 'storage_prefix' must be a relative key prefix like 'sensord/xrays', "
                             f"got {prefix!r}")
        opts["storage_prefix"] = prefix.strip("/")
        readonly = options.get("readonly", False)
        if not isinstance(readonly, bool):
            raise ValueError(f"v7: option 'readonly' must be true or false, got {readonly!r}")
        opts["readonly"] = readonly
    return opts


# -- pure helpers -----------------------------------------------------------

def item_path(template: str, fields: list[str], context: dict) -> str:
    """The dataset folder for an image: ``template`` filled from ``context``.

    A value's own slashes become ``_`` (one patient, one folder); the result
    starts with ``/`` and has no empty segments.
    """
    values = {}
    for field in fields:
        value = context.get(field)
        if value is None or not str(value).strip():
            raise PermanentError(f"v7: the context has no {field!r}, which the 'path' option needs")
        text = re.sub(r"[/\\]", "_", str(value).strip())
        values[field] = "_" if text in (".", "..") else text
    segments = [s for s in template.format(**values).split("/") if s]
    return "/" + "/".join(segments)


def check_pixels(pixels: np.ndarray, image_info: dict, where: str) -> None:
    """PermanentError unless ``pixels`` hash to ``image_info["pixelHash"]`` (when there is one)."""
    expected = image_info.get("pixelHash")
    if not expected:
        return
    alg = str(expected.get("alg", "")).upper()
    if alg not in HASH_ALGS:
        raise PermanentError(f"v7: pixelHash algorithm {expected.get('alg')!r} is not MD5 or SHA256")
    actual = pixel_hash(pixels, alg=alg)["hash"]
    if actual != str(expected.get("hash", "")).lower():
        raise PermanentError(f"v7: the pixels of {where} hash to {alg} {actual}, "
                             f"the image's pixelHash says {expected.get('hash')}")


def registration_outcome(body, *, name: str, path: str, what: str) -> dict | None:
    """Read a register_* answer for our one item.

    Returns the registered item, None when it was refused only because it is
    already there, and raises PermanentError for any other refusal (every
    blocked item and its slots' reasons named) or an answer without it.
    """
    if not isinstance(body, dict) or not isinstance(body.get("items", []), list) \
            or not isinstance(body.get("blocked_items", []), list):
        raise PermanentError(f"{what}: unexpected answer {str(body)[:200]}")
    items, blocked = body.get("items", []), body.get("blocked_items", [])
    if blocked:
        described, only_exists = [], True
        for entry in blocked:
            entry = entry if isinstance(entry, dict) else {}
            slots = [s for s in entry.get("slots") or [] if isinstance(s, dict)]
            reasons = [(s.get("slot_name", "?"), s.get("reason") or "no reason") for s in slots] \
                or [("-", entry.get("reason") or "no reason")]
            mine = entry.get("name") == name and (entry.get("path") or "/") == path
            only_exists &= mine and all(str(r).upper() == ALREADY_EXISTS for _, r in reasons)
            described.append(f"{entry.get('name')!r} at {entry.get('path')!r}: "
                             + ", ".join(f"slot {s} {r}" for s, r in reasons))
        if only_exists:
            return None
        raise PermanentError(f"{what}: {len(blocked)} item(s) blocked: " + "; ".join(described))
    for item in items:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    raise PermanentError(f"{what}: the answer lists neither {name!r} nor a blocked item: {str(body)[:200]}")


def thumbnail(pixels: np.ndarray, image_info: dict) -> bytes:
    """The JPEG Darwin shows for an image, windowed by its LUT when it has one.

    A lutInfo that describes no usable map only costs the thumbnail its
    window: the image is still worth registering, so the automatic one is used.
    """
    try:
        lut = lut_from_info(image_info)
    except ValueError as err:
        log.warning("v7: thumbnail with the automatic window: %s", err)
        lut = None
    return jpeg_preview(pixels, lut=lut, box=THUMBNAIL_BOX, quality=THUMBNAIL_QUALITY)


# -- bucket files -----------------------------------------------------------

def put_object(root: Path, key: str, data: bytes, *, check=None):
    """Write ``data`` at ``root/key`` durably; ``check`` sees the bytes as read
    back from the mount, and if it raises nothing appears at the key."""
    target = root / key
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(target, data, check=check)


# -- the adapter ------------------------------------------------------------

class V7Adapter(Adapter):
    kind = "v7"

    def __init__(self, *, name: str, options: dict, http=None):
        self.opts = parse_options(options)          # before the session is made: nothing to close
        super().__init__(name=name, options=options, http=http)
        self._dataset_id: Any = None        # the dataset's numeric id, for the item listing
        self._lock = threading.Lock()

    # -- HTTP -----------------------------------------------------------
    def _api(self, method: str, endpoint: str, what: str, **kwargs):
        url = f"{self.opts['url']}/teams/{self.opts['team_slug']}/items/{endpoint}".rstrip("/")
        return self._call(method, url, what, **kwargs)

    def _call(self, method: str, url: str, what: str, **kwargs):
        headers = {"Authorization": f"ApiKey {self.opts['api_key']}", "Accept": "application/json"}
        response = transport(lambda: self.http.request(method, url, headers=headers,
                                                       timeout=self.opts["timeout"], **kwargs), what)
        check_response(response, what)
        try:
            return response.json()
        except ValueError:
            raise RetryableError(f"{what}: HTTP {response.status_code} answer is not JSON: "
                                 f"{response.text[:200]!r}") from None

    # -- delivery -------------------------------------------------------
    def deliver(self, item: Delivery) -> dict:
        if not _SAFE_ID.fullmatch(item.image_id):
            raise PermanentError(f"v7: image id {item.image_id!r} cannot name a file")
        try:
            data = item.png_path.read_bytes()
        except FileNotFoundError:
            raise PermanentError(f"v7: the image file {item.png_path} is gone") from None
        path = item_path(self.opts["path"], self.opts["path_fields"], item.context)
        name = f"{item.image_id}.png"
        if self.opts["mode"] == "external":
            return self._external(item, data, path, name)
        return self._direct(item, data, path, name)

    def _decode(self, data: bytes, where: str) -> np.ndarray:
        try:
            return pngcodec.decode_gray16(data, max_width=MAX_SIDE, max_height=MAX_SIDE)
        except pngcodec.PngError as err:
            raise PermanentError(f"v7: {where} is not a usable 16-bit PNG: {err}") from None

    def _external(self, item: Delivery, data: bytes, path: str, name: str) -> dict:
        opts = self.opts
        root, prefix = opts["storage_folder"], opts["storage_prefix"]
        key = f"{prefix}/{name}" if prefix else name
        thumb_key = f"{prefix}/thumbnails/{item.image_id}.jpg" if prefix else f"thumbnails/{item.image_id}.jpg"
        receipt = {"mode": "external", "dataset": opts["dataset_slug"], "path": path, "name": name,
                   "storage_key": key}
        if opts["readonly"]:
            receipt["thumbnail_key"] = thumb_key
        if "registered" in item.progress:           # registered before: only the lookup is left
            return self._listed_complete(item, name, path, {**receipt, **item.progress["registered"]})
        if not root.is_dir():
            raise RetryableError(f"v7: storage_folder {root} is not there (bucket not mounted?)")

        def verify(written: bytes) -> np.ndarray:
            pixels = self._decode(written, f"bucket object {key}")
            check_pixels(pixels, item.image_info, f"bucket object {key}")
            return pixels

        try:
            pixels = put_object(root, key, data, check=verify)
            if opts["readonly"]:
                put_object(root, thumb_key, thumbnail(pixels, item.image_info))
        except PermissionError as err:
            raise PermanentError(f"v7: cannot write to the bucket folder: {err}") from None
        except OSError as err:
            raise RetryableError(f"v7: writing to the bucket folder failed: {err}") from None
        height, width = pixels.shape
        slot = {"type": "image", "slot_name": SLOT, "storage_key": key, "file_name": name,
                "width": int(width), "height": int(height)}
        if opts["readonly"]:
            slot["storage_thumbnail_key"] = thumb_key
        payload = {"items": [{"path": path, "name": name, "slots": [slot]}],
                   "dataset_slug": opts["dataset_slug"], "storage_slug": opts["storage_name"]}
        what = f"v7 register_existing {name}"
        registered = registration_outcome(self._api("POST", "register_existing", what, json=payload),
                                          name=name, path=path, what=what)
        answer = {"duplicate": True, "reason": ALREADY_EXISTS} if registered is None \
            else {"duplicate": False, "item_id": registered.get("id")}
        item.record("registered", answer)
        return self._listed_complete(item, name, path, {**receipt, **answer})

    def _listed_complete(self, item: Delivery, name: str, path: str, receipt: dict) -> dict:
        """The receipt once the listing shows the item complete; else the outbox's error."""
        found = self._find(name, path)
        status = found.get("status") if found else None
        if found is None:
            raise RetryableError(f"v7: {name} at {path} is registered but not listed (yet)")
        if status == FAILED:
            raise PermanentError(f"v7: Darwin failed item {found.get('id')} ({name} at {path}): status error")
        if status == UPLOADING:
            raise RetryableError(f"v7: {name} at {path} is still uploading")
        return {**receipt, "item_id": found.get("id"), "status": status}

    # -- the item listing -------------------------------------------------
    def _dataset_numeric_id(self) -> Any:
        with self._lock:
            if self._dataset_id is not None:
                return self._dataset_id
        root = re.sub(r"/v2$", "", self.opts["url"])
        what = "v7 list datasets"
        body = self._call("GET", f"{root}/datasets", what)
        for dataset in body if isinstance(body, list) else []:
            if isinstance(dataset, dict) and dataset.get("slug") == self.opts["dataset_slug"]:
                with self._lock:
                    self._dataset_id = dataset.get("id")
                return dataset.get("id")
        raise PermanentError(f"{what}: no dataset {self.opts['dataset_slug']!r} in the team")

    def _find(self, name: str, path: str) -> dict | None:
        """The dataset's item ``name`` at ``path`` as the listing shows it, or None."""
        params: dict[str, Any] = {"dataset_ids[]": [self._dataset_numeric_id()], "item_names[]": [name],
                                  "page[size]": 500}
        what = f"v7 list items {name}"
        for _ in range(MAX_PAGES):
            body = self._api("GET", "", what, params=params)
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise RetryableError(f"{what}: unexpected answer {str(body)[:200]}")
            for found in body["items"]:
                if isinstance(found, dict) and found.get("name") == name and (found.get("path") or "/") == path:
                    return found
            following = (body.get("page") or {}).get("next")
            if not following:
                return None
            params["page[from]"] = following
        raise RetryableError(f"{what}: more than {MAX_PAGES} pages")

    def _delete(self, found: dict) -> None:
        what = f"v7 delete item {found.get('id')}"
        self._api("DELETE", "", what, json={"filters": {"item_ids": [found.get("id")],
                                                         "dataset_ids": [self._dataset_numeric_id()]}})

    def _direct(self, item: Delivery, data: bytes, path: str, name: str) -> dict:
        check_pixels(self._decode(data, "the image file"), item.image_info, "the image file")
        payload = {"dataset_slug": self.opts["dataset_slug"],
                   "items": [{"path": path, "name": name, "slots": [{"slot_name": SLOT, "file_name": name}]}]}
        what = f"v7 register_upload {name}"
        receipt = {"mode": "direct", "dataset": self.opts["dataset_slug"], "path": path, "name": name,
                   "duplicate": False, "resumed": bool(item.progress)}
        for _ in range(2):          # a second round only after a stale item was deleted
            if "upload" not in item.progress:
                registered = registration_outcome(self._api("POST", "register_upload", what, json=payload),
                                                  name=name, path=path, what=what)
                if registered is None:
                    receipt.update(duplicate=True, reason=ALREADY_EXISTS)
                    if not self._adopt(item, name, path):
                        continue
                else:
                    slots = [s for s in registered.get("slots") or [] if isinstance(s, dict) and s.get("upload_id")]
                    if len(slots) != 1:
                        raise PermanentError(f"{what}: expected one upload id, got {registered.get('slots')!r}")
                    item.record("upload", {"item_id": registered.get("id"), "upload_id": str(slots[0]["upload_id"])})
            if "confirmed" not in item.progress:
                self._upload(item, data, name, path)
            try:
                done = self._listed_complete(item, name, path, receipt)
            except RetryableError:
                # Confirmed yet not complete: the next attempt confirms again
                # (or, for an item adopted from the listing, looks it up again).
                item.record("confirmed", None)
                if item.progress["upload"].get("upload_id") is None:
                    item.record("upload", None)
                raise
            return {**done, "upload_id": item.progress["upload"].get("upload_id")}
        raise RetryableError(f"{what}: the item is still there after deleting it")

    def _adopt(self, item: Delivery, name: str, path: str) -> bool:
        """``name`` exists but its upload is unknown: record what the listing says.

        False when the item was stuck in ``uploading`` without a pending upload
        and was deleted, to be registered again.
        """
        found = self._find(name, path)
        if found is None:
            raise RetryableError(f"v7: {name} at {path} exists but is not listed (yet)")
        status = found.get("status")
        if status == FAILED:
            raise PermanentError(f"v7: Darwin failed item {found.get('id')} ({name} at {path}): status error")
        if status != UPLOADING:
            item.record("upload", {"item_id": found.get("id"), "upload_id": None})
            item.record("confirmed", "listed")
            return True
        pending = [str(u.get("upload_id") or u.get("id")) for u in found.get("uploads") or []
                   if isinstance(u, dict) and (u.get("upload_id") or u.get("id"))]
        if len(pending) == 1:
            log.info("v7: %s at %s is uploading; finishing its upload %s", name, path, pending[0])
            item.record("upload", {"item_id": found.get("id"), "upload_id": pending[0]})
            return True
        log.warning("v7: %s at %s is stuck uploading with %d pending uploads; deleting it to register it "
                    "again", name, path, len(pending))
        self._delete(found)
        return False

    def _upload(self, item: Delivery, data: bytes, name: str, path: str) -> None:
        """Sign and PUT (unless recorded), then confirm; each step recorded before the next."""
        upload_id = item.progress["upload"]["upload_id"]
        if item.progress.get("put") != upload_id:
            signed = self._api("GET", f"uploads/{upload_id}/sign", f"v7 sign upload {upload_id}")
            url = signed.get("upload_url") if isinstance(signed, dict) else None
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise PermanentError(f"v7 sign upload {upload_id}: no upload_url in {str(signed)[:200]}")
            what = f"v7 PUT {name} to the signed URL"
            # The signed URL is its own credential: no ApiKey header goes to the storage host.
            response = transport(lambda: self.http.put(url, data=data, timeout=self.opts["timeout"]), what)
            check_response(response, what)
            item.record("put", upload_id)
        try:
            self._api("POST", f"uploads/{upload_id}/confirm", f"v7 confirm upload {upload_id}", json={})
        except PermanentError:
            found = self._find(name, path)
            if found is None:                   # deleted meanwhile: start over
                for step in ("put", "upload"):
                    item.record(step, None)
                raise RetryableError(f"v7: {name} at {path} vanished before its upload was confirmed") from None
            if found.get("status") == UPLOADING:      # the bytes did not arrive: PUT them again
                item.record("put", None)
                raise RetryableError(f"v7: confirm upload {upload_id} refused while {name} is uploading; "
                                     "its bytes go again") from None
            # confirmed already (an earlier confirm's answer was lost)
        item.record("confirmed", upload_id)

ADAPTER_CLASS = V7Adapter
