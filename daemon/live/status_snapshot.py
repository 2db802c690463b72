"""What the status page shows, as one JSON-serialisable dict.

Built from the services' own queries, cheap enough to build on every change:
the devices and their state, the live sessions, the latest images of those
sessions, and the outbox's depth and latest failures. Nothing in it changes
with the clock alone (the page counts the uptime from ``startedOn``), so two
snapshots differ only when something happened.
"""
from __future__ import annotations

import importlib.metadata
import socket
from urllib.parse import quote

from sensord.daemon.dsio.timefmt import iso

MAX_IMAGES = 8
MAX_FAILURES = 10
MODALITY = "/api/dsio/modality/v1"


def _version() -> str:
    try:
        return importlib.metadata.version("sensord")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version()


def preview_url(session_id: str, image_id: str) -> str:
    return f"{MODALITY}/acquisition/{quote(session_id, safe='')}/images/{quote(image_id, safe='')}/preview"


def devices(registry) -> list[dict]:
    out = []
    for info in registry.list():
        entry = registry.find(info["deviceId"])
        sensor = entry.device.sensor if entry is not None else None
        out.append({
            "deviceId": info["deviceId"], "name": info["name"], "modelName": info["modelName"],
            "status": info["status"], "state": entry.state if entry is not None else None,
            "sensor": sensor.model_name if sensor is not None else None,
            "battery": (info["battery"] or {}).get("percentRemaining"),
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
                           "previewUrl": preview_url(session.id, image.id)})
    images.sort(key=lambda i: i["createdOn"] or "", reverse=True)
    return sessions, images[:MAX_IMAGES]


def outbox(box) -> dict:
    failures = [{"id": e.id, "target": e.target, "imageId": e.image_id, "filter": e.filter,
                 "state": e.state, "attempts": e.attempts, "lastError": e.last_error,
                 "updatedOn": iso(e.updated)} for e in box.failures(MAX_FAILURES)]
    return {"counts": box.counts(), "failures": failures}


def status_snapshot(daemon, *, started: float) -> dict:
    sessions, images = sessions_and_images(daemon.sessions)
    return {"service": "sensord", "version": VERSION, "host": socket.gethostname(),
            "startedOn": iso(started), "devices": devices(daemon.devices),
            "sessions": sessions, "images": images, "outbox": outbox(daemon.outbox)}
