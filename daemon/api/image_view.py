"""The status page's view of a full session image, windowed on the server.

    GET /view/{sid}/{iid}                                  the view (HTML; view.js draws it)
    GET /api/sensord/v1/sessions/{sid}/images/{iid}/jpeg   the image as a JPEG:
        ?center=C&width=W   the window in the image's grays (both, or neither:
                            the image's own, as the view starts with)
        &size=N             its longer side at most N pixels (64..4096, default 2048)

Neither DSIO API has this: the Modality API's preview is a small thumbnail
and the Filters API's JPEG output is windowed by the image's LUT only. The
routes live on the status page's blueprint, so they are the operator's
(an operator may read every session's images; api/roles.py).

The work is bounded like a filter call: the longer side by ``size``, the
memory by the pixel budget (a decode reserves its own; the shrink, window
and encode reserve theirs here: a wait, then 503, or 413 if it never fits).
"""
from __future__ import annotations

import math
from importlib import resources
from urllib.parse import quote

import numpy as np
from flask import Response, current_app, request

from sensord.daemon.dsio.imageinfo import lut_from_info
from sensord.filters import footprint
from sensord.filters.display import center_width, display_window
from sensord.filters.thumbnail import fit_inside, jpeg_preview

from . import page_data
from .errors import ApiError

DEFAULT_SIZE = 2048
MIN_SIZE, MAX_SIZE = 64, 4096
# The shrunk copy (2 B/px) and its 8-bit window (1 B/px) while it is encoded.
VIEW_PER_PIXEL = footprint.PIXELS_PER_PIXEL + 1 + footprint.ENCODE_PER_PIXEL


def jpeg_url(session_id: str, image_id: str) -> str:
    return f"/api/sensord/v1/sessions/{quote(session_id, safe='')}/images/{quote(image_id, safe='')}/jpeg"


def _services():
    return current_app.extensions["sensord"]


def _image(sid: str, iid: str):
    image = _services().sessions.get(sid).images.get(iid)     # SessionNotFound: 404
    if image is None:
        raise ApiError(404, f"no image {iid!r} in session {sid!r}")
    return image


def _pixels(image, sid: str, iid: str) -> np.ndarray:
    pixels = image.pixels()          # from the pixel cache, or one decode within the budget
    if pixels is None:               # the session ended between the lookup and the read
        raise ApiError(404, f"no image {iid!r} in session {sid!r}")
    return pixels


def _lut(image):
    try:
        return lut_from_info(image.image_info)
    except ValueError:
        return None                  # our own images always carry a usable map; else window linearly


def _number(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ApiError(400, f"{name} must be a finite number, got {raw!r}")
    return value


def _size() -> int:
    raw = request.args.get("size")
    if raw is None:
        return DEFAULT_SIZE
    if not raw.isdigit() or not MIN_SIZE <= int(raw) <= MAX_SIZE:
        raise ApiError(400, f"size must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}, got {raw!r}")
    return int(raw)


def _window() -> tuple[float, float] | None:
    center, width = _number("center"), _number("width")
    unknown = set(request.args) - {"center", "width", "size"}
    if unknown:
        raise ApiError(400, f"unknown parameter(s) {', '.join(sorted(unknown))} (known: center, width, size)")
    if (center is None) != (width is None):
        raise ApiError(400, "give the window's center and width together, or neither")
    if center is None or width is None:
        return None
    try:
        return center_width(center, width)
    except ValueError as err:
        raise ApiError(400, str(err)) from None


def jpeg(sid: str, iid: str) -> Response:
    window, size = _window(), _size()        # bad parameters cost nothing
    image = _image(sid, iid)
    pixels = _pixels(image, sid, iid)
    height, width = pixels.shape
    out_w, out_h = fit_inside(width, height, box=(size, size))
    need = footprint.PIXELS_PER_PIXEL * width * height + VIEW_PER_PIXEL * out_w * out_h + footprint.FIXED_BYTES
    services = _services()
    with services.pixel_budget.reserve(need, what=f"a {out_w}x{out_h} view of a {width}x{height} image"):
        if window is None:           # the full image's, not the shrunk copy's: as the view's sliders say
            window = display_window(pixels, lut=_lut(image))
        data = jpeg_preview(pixels, lut=None, box=(size, size), window=window,
                            quality=services.settings.images.jpeg_quality)
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, max-age=3600"    # a session image never changes
    return response


def _gray_top(value: float) -> int:
    """The top of the sliders' gray range: the next 2**n - 1 at or above ``value``
    (4095 for a 12-bit sensor's grays)."""
    return min(65535, (1 << max(8, math.ceil(math.log2(max(value, 1.0) + 1)))) - 1)


def view_data(sid: str, iid: str) -> dict:
    """What the view page starts with (its data block)."""
    image = _image(sid, iid)
    session = _services().sessions.get(sid)
    pixels = _pixels(image, sid, iid)
    height, width = pixels.shape
    lo, hi = display_window(pixels, lut=_lut(image))
    top = _gray_top(max(float(pixels.max()), hi))
    return {"sessionId": sid, "imageId": iid, "clientName": session.client_name,
            "createdOn": image.image_info.get("createdOn"), "width": width, "height": height,
            "lutApplied": _lut(image) is not None, "jpegUrl": jpeg_url(sid, iid),
            "size": DEFAULT_SIZE, "window": {"center": (lo + hi) / 2, "width": hi - lo}, "grayMax": top}


def view_page(sid: str, iid: str) -> Response:
    html = resources.files("sensord.daemon.api").joinpath("static", "view.html").read_text("utf-8")
    return page_data.page(page_data.fill(html, "image", view_data(sid, iid)))
