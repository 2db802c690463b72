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

This module is the adapter, its image checks and external mode; the
options are ``v7_options``, the HTTP client and the listing ``v7_client``,
direct mode's steps ``v7_upload``.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from sensord.daemon.dsio.imageinfo import lut_from_info
from sensord.daemon.durable import write_atomic
from sensord.filters import png as pngcodec
from sensord.filters.pixel_hash import ALGORITHMS as HASH_ALGS
from sensord.filters.pixel_hash import pixel_hash
from sensord.filters.thumbnail import jpeg_preview

from .base import Adapter, Delivery, PermanentError, RetryableError
from .v7_client import ALREADY_EXISTS, SLOT, DarwinClient, registration_outcome
from .v7_options import item_path, parse_options
from .v7_upload import deliver_direct

log = logging.getLogger("sensord.platforms.v7")

MAX_SIDE = 65535
# Our thumbnail must be a separate, small file: Darwin warns that using the
# original as its thumbnail breaks some browsers. Its own thumbnails fit here.
THUMBNAIL_BOX = (356, 200)      # width, height
THUMBNAIL_QUALITY = 60
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


# -- pure helpers -----------------------------------------------------------

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
        self.client = DarwinClient(self.opts, self.http)

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
        check_pixels(self._decode(data, "the image file"), item.image_info, "the image file")
        return deliver_direct(self.client, item, data, path, name)

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
            return self.client.listed_complete(name, path, {**receipt, **item.progress["registered"]})
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
        registered = registration_outcome(self.client.api("POST", "register_existing", what, json=payload),
                                          name=name, path=path, what=what)
        answer = {"duplicate": True, "reason": ALREADY_EXISTS} if registered is None \
            else {"duplicate": False, "item_id": registered.get("id")}
        item.record("registered", answer)
        return self.client.listed_complete(name, path, {**receipt, **answer})

ADAPTER_CLASS = V7Adapter
