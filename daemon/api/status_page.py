"""The status page at ``/``: one static page that renders the daemon's
snapshot and follows it over server-sent events.

    GET /                                   the page (static HTML, JS and CSS under /assets/)
    GET /api/sensord/v1/status              the snapshot (daemon/status_snapshot.py)
    GET /api/sensord/v1/status/subscribe    SSE: the snapshot at once, then each one that differs

Like every endpoint it is behind the daemon's Basic auth: without
credentials ``/`` answers the 401 challenge and a browser asks for them.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from . import sse
from .errors import ApiError

bp = Blueprint("status_page", __name__, static_folder="static", static_url_path="/assets")

API = "/api/sensord/v1/status"


def _feed():
    return current_app.extensions["sensord"].status_feed


@bp.get("/")
def page():
    response = bp.send_static_file("status.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get(API)
def snapshot():
    return jsonify(_feed().snapshot())


@bp.get(API + "/subscribe")
def subscribe():
    heartbeat = sse.heartbeat_ms(20000, 1000, 60000)
    feed = _feed()
    try:
        sub = feed.hub.subscribe()
    except LookupError:
        raise ApiError(503, "the daemon is stopping", headers={"Retry-After": "5"}) from None
    # Subscribed first, then the current snapshot: no change falls in between.
    try:
        first = [("status", feed.snapshot())]
    except BaseException:
        sub.close()
        raise
    return sse.stream(sub, heartbeat, first=first)
