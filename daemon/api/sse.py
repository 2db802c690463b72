"""Server-sent event streams over a Hub subscription, with heartbeats.

The heartbeat interval comes from the client's ``heartbeat`` query parameter
(milliseconds, 0 disables it) within bounds the API sets per stream. A
client that went away is noticed at the next write, or, with heartbeats off,
by asking waitress every second.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from flask import Response, request

from sensord.daemon.live.hub import CLOSED, Subscription

from .errors import ApiError

DISCONNECT_CHECK = 1.0


def heartbeat_ms(default: int, low: int, high: int) -> int:
    raw = request.args.get("heartbeat")
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"heartbeat must be a number of milliseconds, got {raw!r}") from None
    if value != 0 and not low <= value <= high:
        raise ApiError(400, f"heartbeat must be 0 (off) or from {low} to {high} ms, got {raw}")
    return int(value)


def format_event(event: str, data) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def stream(sub: Subscription, heartbeat: int, first: Sequence[tuple[str, object]] = (),
           transform: Callable[[object], object] | None = None) -> Response:
    """``transform`` rewrites each published event's data on its way out (the
    generator runs outside the request context: capture what it needs first)."""
    gone = request.environ.get("waitress.client_disconnected")

    def generate():
        try:
            # waitress sends the headers with the first body bytes: a comment
            # line goes out at once so the client knows it is subscribed.
            yield b": subscribed\n\n"
            for event, data in first:
                yield format_event(event, data)
            while True:
                timeout = heartbeat / 1000 if heartbeat else DISCONNECT_CHECK
                item = sub.get(timeout)
                if item is CLOSED:
                    return
                if item is None:
                    if heartbeat:
                        yield format_event("heartbeat", {"heartbeatTimeout": heartbeat})
                    elif gone is not None and gone():
                        return
                    continue
                event, data = item
                yield format_event(event, transform(data) if transform is not None else data)
        finally:
            sub.close()

    response = Response(generate(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response
