"""V7 Darwin, direct mode: the upload in steps, each recorded before the next.

``POST …/items/register_upload`` creates the item and answers an upload
id (recorded as ``upload``); ``GET …/items/uploads/{id}/sign`` gives a
signed URL, the bytes are PUT there without our API key (``put``);
``POST …/items/uploads/{id}/confirm`` completes it (``confirmed``). A
retry or a restart resumes from the recorded steps; a name that exists
with no recorded upload is adopted from the listing (``_adopt``). Separate
from the adapter (``v7``, which checks the image and chooses the mode)
because this is the one multi-step state of the V7 delivery; the module
docstring of ``v7`` tells the whole story.
"""
from __future__ import annotations

import logging

from .base import Delivery, PermanentError, RetryableError, check_response, transport
from .v7_client import ALREADY_EXISTS, FAILED, SLOT, UPLOADING, DarwinClient, registration_outcome

log = logging.getLogger("sensord.platforms.v7")


def deliver_direct(client: DarwinClient, item: Delivery, data: bytes, path: str, name: str) -> dict:
    """Register, sign, PUT and confirm ``data`` as ``name`` at ``path``, resuming from ``item.progress``."""
    payload = {"dataset_slug": client.opts["dataset_slug"],
               "items": [{"path": path, "name": name, "slots": [{"slot_name": SLOT, "file_name": name}]}]}
    what = f"v7 register_upload {name}"
    receipt = {"mode": "direct", "dataset": client.opts["dataset_slug"], "path": path, "name": name,
               "duplicate": False, "resumed": bool(item.progress)}
    for _ in range(2):          # a second round only after a stale item was deleted
        if "upload" not in item.progress:
            registered = registration_outcome(client.api("POST", "register_upload", what, json=payload),
                                              name=name, path=path, what=what)
            if registered is None:
                receipt.update(duplicate=True, reason=ALREADY_EXISTS)
                if not _adopt(client, item, name, path):
                    continue
            else:
                slots = [s for s in registered.get("slots") or [] if isinstance(s, dict) and s.get("upload_id")]
                if len(slots) != 1:
                    raise PermanentError(f"{what}: expected one upload id, got {registered.get('slots')!r}")
                item.record("upload", {"item_id": registered.get("id"), "upload_id": str(slots[0]["upload_id"])})
        if "confirmed" not in item.progress:
            _upload(client, item, data, name, path)
        try:
            done = client.listed_complete(name, path, receipt)
        except RetryableError:
            # Confirmed yet not complete: the next attempt confirms again
            # (or, for an item adopted from the listing, looks it up again).
            item.record("confirmed", None)
            if item.progress["upload"].get("upload_id") is None:
                item.record("upload", None)
            raise
        return {**done, "upload_id": item.progress["upload"].get("upload_id")}
    raise RetryableError(f"{what}: the item is still there after deleting it")


def _adopt(client: DarwinClient, item: Delivery, name: str, path: str) -> bool:
    """``name`` exists but its upload is unknown: record what the listing says.

    False when the item was stuck in ``uploading`` without a pending upload
    and was deleted, to be registered again.
    """
    found = client.find(name, path)
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
    client.delete(found)
    return False


def _upload(client: DarwinClient, item: Delivery, data: bytes, name: str, path: str) -> None:
    """Sign and PUT (unless recorded), then confirm; each step recorded before the next."""
    upload_id = item.progress["upload"]["upload_id"]
    if item.progress.get("put") != upload_id:
        signed = client.api("GET", f"uploads/{upload_id}/sign", f"v7 sign upload {upload_id}")
        url = signed.get("upload_url") if isinstance(signed, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise PermanentError(f"v7 sign upload {upload_id}: no upload_url in {str(signed)[:200]}")
        what = f"v7 PUT {name} to the signed URL"
        # The signed URL is its own credential: no ApiKey header goes to the storage host.
        response = transport(lambda: client.http.put(url, data=data, timeout=client.opts["timeout"]), what)
        check_response(response, what)
        item.record("put", upload_id)
    try:
        client.api("POST", f"uploads/{upload_id}/confirm", f"v7 confirm upload {upload_id}", json={})
    except PermanentError:
        found = client.find(name, path)
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
