"""Forwarding endpoints: queue an image for a target, and the outbox (image entries and
MPPS messages) for operators."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from sensord.daemon.dsio.timefmt import iso
from sensord.daemon.forward import filter_spec

from .body import json_body
from .errors import ApiError

bp = Blueprint("forward_api", __name__, url_prefix="/api/sensord/v1")

STATES = ("pending", "committing", "delivered", "dead")


def _services():
    return current_app.extensions["sensord"]


@bp.post("/forward")
def forward():
    """Queue an uploaded resource (resourceId) or a session image (sessionId +
    imageId) for a target, raw or through a filter; 202 once it is durable."""
    services = _services()
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    unknown = set(body) - {"target", "resourceId", "sessionId", "imageId", "filter", "context"}
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    target = body.get("target")
    # A list or an object is no name (and would not even hash for the lookup).
    if not isinstance(target, str) or target not in services.forwarder.targets:
        raise ApiError(400, f"no target {target!r} (configured: {', '.join(services.forwarder.targets) or 'none'})")
    try:
        spec = str(filter_spec.parse(body.get("filter", "raw")))   # stored canonical
    except ValueError as err:
        raise ApiError(400, str(err)) from None
    context = body.get("context") or {}
    if not isinstance(context, dict):
        raise ApiError(400, "context must be an object")
    if body.get("resourceId"):
        res = services.store.get(str(body["resourceId"]))
        if res is None:
            raise ApiError(404, f"no image resource {body['resourceId']!r}")
        if res.linked:
            body = {**body, **res.modality_session}
        else:
            acq_context = (res.image_info.get("acquisitionInfo") or {}).get("context") or {}
            # The Filters spec's ImageInfo has no createdOn: the resource's own creation time stands in.
            info = res.image_info if res.image_info.get("createdOn") else \
                {**res.image_info, "createdOn": iso(res.created_on)}
            try:
                # Hard-linked into the outbox: the resource may expire before delivery.
                ids = services.forwarding.queue([(target, spec)], image_id=res.id, image_info=info,
                                                context={**acq_context, **context},
                                                png_path=services.store.media_path(res))
            except FileNotFoundError:
                raise ApiError(410, "the media of this resource is no longer on disk") from None
            return _queued(ids)
    image = services.sessions.find(str(body.get("sessionId")), str(body.get("imageId")))
    if image is None:
        raise ApiError(404, "no such image: give a live resourceId, or a live sessionId and imageId")
    session = services.sessions.get(image.session_id)
    acq_context = (image.image_info.get("acquisitionInfo") or {}).get("context") or {}
    ids = services.forwarding.queue([(target, spec)], image_id=image.id, image_info=image.image_info,
                                    context=services.forwarding.session_context(
                                        session.id, {**session.context, **acq_context, **context}),
                                    png_path=image.png_path)
    return _queued(ids)


def _queued(ids):
    response = jsonify({"entries": ids, "queued": bool(ids)})
    response.status_code = 202
    return response


@bp.get("/outbox")
def outbox():
    state = request.args.get("state") or None
    if state is not None and state not in STATES:
        raise ApiError(400, f"state must be one of {', '.join(STATES)}")
    services = _services()
    box = services.outbox
    return jsonify({"counts": box.counts(), "entries": [e.to_json() for e in box.list(state)],
                    "mpps": _mpps(services.mpps, state)})


def _mpps(mpps, state: str | None) -> dict:
    """The MPPS messages (latest first) and their counts; empty without [mpps] host."""
    if mpps is None:
        return {"configured": False, "counts": {}, "messages": []}
    return {"configured": True, "counts": mpps.counts(),
            "messages": mpps.messages(states=(state,) if state else ())}


@bp.post("/outbox/<row_id:entry_id>/retry")
def retry(entry_id: int):
    services = _services()
    entry = services.outbox.get(entry_id)
    if entry is None:
        raise ApiError(404, f"no outbox entry {entry_id}")
    if entry.state == "delivered":
        raise ApiError(409, f"entry {entry_id} was delivered already")
    if not services.outbox.retry(entry_id):
        raise ApiError(409, f"entry {entry_id} is being delivered right now")
    services.forwarder.tick()
    return jsonify(services.outbox.get(entry_id).to_json())


@bp.delete("/outbox/<row_id:entry_id>")
def drop(entry_id: int):
    services = _services()
    if services.outbox.get(entry_id) is None:
        raise ApiError(404, f"no outbox entry {entry_id}")
    if not services.outbox.drop(entry_id):
        raise ApiError(409, f"entry {entry_id} is being delivered right now")
    return Response(status=204)


def _mpps_service():
    mpps = _services().mpps
    if mpps is None:
        raise ApiError(404, "MPPS is not configured ([mpps] host is empty)")
    return mpps


@bp.post("/outbox/mpps/<row_id:message_id>/retry")
def retry_mpps(message_id: int):
    """A dead or waiting MPPS message: pending again, due now, with a fresh attempt count."""
    outcome, message = _mpps_service().retry(message_id)
    if outcome == "unknown":
        raise ApiError(404, f"no MPPS message {message_id}")
    if outcome == "delivered":
        raise ApiError(409, f"MPPS message {message_id} was delivered already")
    if outcome == "held":
        raise ApiError(409, f"MPPS message {message_id} is held behind its session's dead N-CREATE: retry that one")
    return jsonify(message)


@bp.delete("/outbox/mpps/<row_id:message_id>")
def drop_mpps(message_id: int):
    """Drop a dead MPPS message; a dead N-CREATE takes its session's held N-SET with it."""
    outcome, dropped = _mpps_service().drop(message_id)
    if outcome == "unknown":
        raise ApiError(404, f"no MPPS message {message_id}")
    if outcome != "dropped":
        raise ApiError(409, f"MPPS message {message_id} is not dead: only a dead message may be dropped")
    also = [m["id"] for m in dropped if m["id"] != message_id]
    note = f"dropped MPPS message {message_id}"
    if also:
        note += (f" and its session's N-SET {', '.join(map(str, also))}: a step never created"
                 " takes no N-SET, and none will be sent for it")
    return jsonify({"dropped": dropped, "message": note})
