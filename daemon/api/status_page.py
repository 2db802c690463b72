"""The status page at ``/``: one page that renders the daemon's snapshot
and follows it over server-sent events.

    GET /                                   the page: status.html with the current snapshot in it
                                            (JS and CSS under /assets/)
    GET /api/sensord/v1/status              the snapshot (daemon/live/status_snapshot.py)
    GET /api/sensord/v1/status/subscribe    SSE: the snapshot at once, then each one that differs
    GET /view/{sid}/{iid}, GET /api/sensord/v1/sessions/{sid}/images/{iid}/jpeg
                                            a full image, windowed (api/image_view.py)

The page carries the snapshot it was served with (api/page_data.py), so its
tables are filled before the live feed's first event.

Like every endpoint it is behind the daemon's Basic auth: without
credentials ``/`` answers the 401 challenge and a browser asks for them.
"""
from __future__ import annotations

from importlib import resources

from flask import Blueprint, current_app, jsonify

from . import image_view, page_data, sse
from .errors import ApiError

bp = Blueprint("status_page", __name__, static_folder="static", static_url_path="/assets")

API = "/api/sensord/v1/status"


def _feed():
    return current_app.extensions["sensord"].status_feed


@bp.get("/")
def page():
    html = resources.files("sensord.daemon.api").joinpath("static", "status.html").read_text("utf-8")
    return page_data.page(page_data.fill(html, "snapshot", _feed().snapshot()))


@bp.get("/view/<sid>/<iid>")
def image_page(sid: str, iid: str):
    return image_view.view_page(sid, iid)


@bp.get("/api/sensord/v1/sessions/<sid>/images/<iid>/jpeg")
def image_jpeg(sid: str, iid: str):
    return image_view.jpeg(sid, iid)


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
