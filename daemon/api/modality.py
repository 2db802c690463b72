"""The DSIO Modality API v1: devices, acquisition sessions, status, images."""
from __future__ import annotations

import functools
from importlib import resources

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from sensord.daemon.acquisition.devices import ICON_KINDS, sensor_json
from sensord.daemon.acquisition.sessions import Session, SessionNotFound
from sensord.daemon.dsio.acquisition_info import DEFAULT_INFO, parse_session_info

from . import roles, sse
from .body import json_body
from .errors import ApiError

bp = Blueprint("modality_api", __name__, url_prefix="/api/dsio/modality/v1")

# DeviceNotFound, SessionNotFound, DeviceInUse, Locked, InsufficientStorage and
# TooManySubscribers carry their own status (daemon/errors.py): no view maps them.


def _services():
    return current_app.extensions["sensord"]


def _session(sid: str) -> Session:
    """The session, if this request's user may see it; another's answers 404 as if absent."""
    session = _services().sessions.get(sid)
    if not roles.may_see(session.owner):
        raise SessionNotFound(f"no acquisition session {sid!r}")
    return session


def _fields(require_device: bool) -> dict:
    try:
        return parse_session_info(json_body(), require_device=require_device)
    except ValueError as err:
        raise ApiError(400, str(err)) from None


@bp.get("")
def root():
    return jsonify({"service": "sensord", "api": "dsio-modality", "version": "1.0"})


# -- devices -----------------------------------------------------------------
def _absolute_icon(device: dict, root: str) -> dict:
    """DeviceInfo with its root-relative iconUrl made absolute under ``root``
    (the URL root of the request, as the spec's example URL is absolute)."""
    path = device.get("iconUrl")
    if isinstance(path, str) and path.startswith("/"):
        return {**device, "iconUrl": root.rstrip("/") + path}
    return device


@bp.get("/devices")
def devices():
    return jsonify([_absolute_icon(d, request.url_root) for d in _services().devices.list()])


@bp.get("/devices/subscribe")
def devices_subscribe():
    heartbeat = sse.heartbeat_ms(20000, 1000, 60000)
    root = request.url_root

    def absolute(data):
        if isinstance(data, dict) and isinstance(data.get("deviceInfo"), dict):
            return {**data, "deviceInfo": _absolute_icon(data["deviceInfo"], root)}
        return data

    return sse.stream(_services().devices.hub.subscribe(), heartbeat, transform=absolute)


@bp.get("/devices/<device_id>")
def device(device_id: str):
    return jsonify(_absolute_icon(_services().devices.info(device_id), request.url_root))


@functools.cache
def _icon(kind: str) -> bytes:
    return resources.files("sensord.daemon.api").joinpath("device_icons", f"{kind}.png").read_bytes()


@bp.get("/icons/<kind>.png")
def device_icon(kind: str):
    """A device's icon, one per interface type (daemon/api/device_icons/); not in the spec."""
    if kind not in ICON_KINDS:
        raise ApiError(404, f"no device icon {kind!r} (known: {', '.join(ICON_KINDS)})")
    response = Response(_icon(kind), mimetype="image/png")
    response.headers["Cache-Control"] = "max-age=86400"
    return response


@bp.get("/devices/<device_id>/sensor")
def device_sensor(device_id: str):
    info = sensor_json(_services().devices.entry(device_id).device)
    if info is None:    # the spec: an empty response when no sensor is connected
        return Response(b"", status=200, mimetype="application/json")
    return jsonify(info)


# -- sessions ----------------------------------------------------------------
@bp.post("/acquisition")
def create_session():
    session = _services().sessions.create(_fields(require_device=True), owner=roles.current_user() or "")
    response = jsonify(session.to_json())
    response.status_code = 201
    response.headers["Location"] = url_for("modality_api.get_session", sid=session.id, _external=True)
    return response


@bp.get("/acquisition")
def list_sessions():
    sessions = _services().sessions.list(request.args.get("deviceId") or None)
    return jsonify([s.to_json() for s in sessions if roles.may_see(s.owner)])


@bp.get("/acquisition/<sid>")
def get_session(sid: str):
    return jsonify(_session(sid).to_json())


@bp.put("/acquisition/<sid>")
def update_session(sid: str):
    session = _session(sid)
    return jsonify(_services().sessions.update(session, _fields(require_device=False)).to_json())


@bp.delete("/acquisition/<sid>")
def delete_session(sid: str):
    _services().sessions.delete(_session(sid))
    return Response(status=200)


@bp.get("/acquisition/<sid>/status")
def status(sid: str):
    return jsonify(_services().sessions.status(_session(sid)))


@bp.get("/acquisition/<sid>/status/subscribe")
def status_subscribe(sid: str):
    session = _session(sid)
    heartbeat = sse.heartbeat_ms(1000, 1000, 10000)
    try:
        sub = session.hub.subscribe()
    except LookupError:
        raise ApiError(404, f"no acquisition session {sid!r}") from None
    # The current status first, so a client never waits for a change to learn it.
    return sse.stream(sub, heartbeat, first=[("message", _services().sessions.status(session))])


@bp.get("/acquisition/<sid>/info")
def get_info(sid: str):
    return jsonify(_session(sid).info or DEFAULT_INFO)


@bp.put("/acquisition/<sid>/info")
def put_info(sid: str):
    session = _session(sid)
    body = json_body()
    try:
        return jsonify(_services().sessions.set_info(session, body))
    except ValueError as err:
        raise ApiError(400, str(err)) from None


# -- images ------------------------------------------------------------------
def _image(sid: str, iid: str):
    image = _session(sid).images.get(iid)
    if image is None:
        raise ApiError(404, f"no image {iid!r} in session {sid!r}")
    return image


def image_json(image) -> dict:
    ids = {"sid": image.session_id, "iid": image.id}
    info = image.image_info
    if isinstance(info.get("deviceInfo"), dict):
        info = {**info, "deviceInfo": _absolute_icon(info["deviceInfo"], request.url_root)}
    return {**info,
            "previewUrl": url_for("modality_api.image_preview", **ids, _external=True),
            "imageUrl": url_for("modality_api.image_media", **ids, _external=True)}


@bp.get("/acquisition/<sid>/images")
def images(sid: str):
    return jsonify([image_json(i) for i in list(_session(sid).images.values())])


@bp.get("/acquisition/<sid>/images/<iid>")
def image(sid: str, iid: str):
    return jsonify(image_json(_image(sid, iid)))


def _file(data: bytes | None, mimetype: str, sid: str, iid: str) -> Response:
    if data is None:     # the session ended between the lookup and the read
        raise ApiError(404, f"no image {iid!r} in session {sid!r}")
    return Response(data, mimetype=mimetype)


@bp.get("/acquisition/<sid>/images/<iid>/media")
def image_media(sid: str, iid: str):
    return _file(_image(sid, iid).media(), "image/png", sid, iid)


@bp.get("/acquisition/<sid>/images/<iid>/preview")
def image_preview(sid: str, iid: str):
    return _file(_image(sid, iid).preview(), "image/jpeg", sid, iid)
