"""What the status page shows, as one JSON-serialisable dict.

Built from the services' own queries, cheap enough to build on every change:
the devices and their state, the live sessions, the latest images of those
sessions, the outbox's depth, its state per target and latest failures,
the MPPS queue's counts, and the worklist (its items, its error, and which
session is bound to it). Nothing in it changes with the clock alone (the
page counts the uptime from ``startedOn`` and a target's oldest pending age
from ``oldestPending``), so two snapshots differ only when something
happened.
"""
from __future__ import annotations

import socket
from urllib.parse import quote

from sensord.daemon.dsio.timefmt import iso
from sensord.daemon.version import VERSION

MAX_IMAGES = 8
MAX_FAILURES = 10
MAX_WORKLIST_ITEMS = 50
MODALITY = "/api/dsio/modality/v1"




def preview_url(session_id: str, image_id: str) -> str:
    return f"{MODALITY}/acquisition/{quote(session_id, safe='')}/images/{quote(image_id, safe='')}/preview"


def view_url(session_id: str, image_id: str) -> str:
    """The status page's view of the full image (api/status_page.py)."""
    return f"/view/{quote(session_id, safe='')}/{quote(image_id, safe='')}"


def devices(registry) -> list[dict]:
    out = []
    for info in registry.list():
        entry = registry.find(info["deviceId"])
        sensor = entry.device.sensor if entry is not None else None
        out.append({
            "deviceId": info["deviceId"], "name": info["name"], "modelName": info["modelName"],
            "interfaceType": info["interfaceType"], "iconUrl": info["iconUrl"],   # root-relative
            # The driver's last sensor state; None: idle (warm, unarmed).
            "status": info["status"], "state": entry.state if entry is not None else None,
            "sensor": sensor.model_name if sensor is not None else None,
            "battery": info["battery"]["percentRemaining"] if info["battery"]["hasBattery"] else None,
            "sessionId": entry.session_id if entry is not None else None,
        })
    return out


def sessions_and_images(manager) -> tuple[list[dict], list[dict]]:
    sessions, images = [], []
    for session in sorted(manager.list(), key=lambda s: s.created_on):
        status = manager.status(session)
        sessions.append({"sessionId": session.id, "deviceId": session.device_id,
                         "clientName": session.client_name, "createdOn": iso(session.created_on),
                         "state": status["state"], "ready": status["ready"],
                         "totalImages": status["totalImages"]})
        for image in list(session.images.values())[-MAX_IMAGES:]:
            images.append({"sessionId": session.id, "imageId": image.id,
                           "createdOn": image.image_info.get("createdOn"),
                           "previewUrl": preview_url(session.id, image.id),
                           "viewUrl": view_url(session.id, image.id)})
    images.sort(key=lambda i: i["createdOn"] or "", reverse=True)
    return sessions, images[:MAX_IMAGES]


def outbox(box, targets: dict) -> dict:
    """Counts, the latest failures, and per target (the configured ones in their
    order, then any other the outbox still holds entries for) its counts by state,
    oldest pending entry and last error."""
    failures = [{"id": e.id, "target": e.target, "imageId": e.image_id, "filter": e.filter,
                 "state": e.state, "attempts": e.attempts, "lastError": e.last_error,
                 "updatedOn": iso(e.updated)} for e in box.failures(MAX_FAILURES)]
    stats = box.by_target()
    per_target = []
    for name in [*targets, *sorted(set(stats) - set(targets))]:
        s = stats.get(name) or {"counts": {}, "oldestPending": None, "lastError": None}
        error = s["lastError"]
        per_target.append({
            "name": name, "kind": targets[name].kind if name in targets else None,
            "configured": name in targets, "counts": s["counts"],
            "oldestPending": None if s["oldestPending"] is None else iso(s["oldestPending"]),
            "lastError": None if error is None else {"message": error["message"], "at": iso(error["at"]),
                                                     "entryId": error["entryId"]}})
    return {"counts": box.counts(), "failures": failures, "targets": per_target}


def worklist(daemon, sessions: list[dict]) -> dict:
    """The worklist without its refresh time (it moves with the clock), and each session's binding
    added to its entry in ``sessions``."""
    source = daemon.worklist.to_json()
    bound = {b["sessionId"]: b for b in daemon.worklist_bindings.report(daemon.sessions.list())}
    for entry in sessions:
        b = bound.get(entry["sessionId"])
        entry["worklist"] = None if b is None else {
            "bound": b["bound"], "accessionNumber": b["accessionNumber"],
            "scheduledProcedureStepId": b["scheduledProcedureStepId"], "reason": b["reason"]}
    return {"configured": source["configured"], "peer": source["peer"], "error": source["error"],
            "answered": source["refreshedAt"] is not None,
            "count": len(source["items"]), "items": source["items"][:MAX_WORKLIST_ITEMS]}


def status_snapshot(daemon, *, started: float) -> dict:
    sessions, images = sessions_and_images(daemon.sessions)
    return {"service": "sensord", "version": VERSION, "host": socket.gethostname(),
            "startedOn": iso(started), "devices": devices(daemon.devices),
            "sessions": sessions, "images": images, "outbox": outbox(daemon.outbox, daemon.forwarder.targets),
            "mpps": None if daemon.mpps is None else {"counts": daemon.mpps.counts()},
            "worklist": worklist(daemon, sessions)}
