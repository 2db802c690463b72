"""The health probes: ``GET /healthz`` and ``GET /readyz``.

    GET /healthz    alive: the process answers and its live checks pass
                    (what the systemd watchdog probes, host/health.py)
    GET /readyz     ready for work: every check (daemon/health_checks.py)

Each answers 200 when its checks pass and 503 when one fails, with a small
JSON body naming every check and its result::

    {"status": "ok", "checks": [{"name": "scheduler", "ok": true, "detail": "ok"}, ...]}

Who may call them: anyone who reaches the port, without credentials. A load
balancer's or a monitor's probe carries none, and the answers hold nothing
to protect (check names, "ok", a kind of failure, free MiB). The Host and
origin checks still come first (421, 403), so a web page cannot read them
through DNS rebinding either. Credentials sent anyway are not looked at:
a probe cannot lock a user out. ``open_to_all`` is what the front door asks
to let such a request in without credentials; ``roles.PUBLIC_BLUEPRINTS``
is the same decision once Flask has routed it. Since no credentials are
asked, no body is taken either (``body_refusal``, 413 from the headers):
an open door must not be one for megabytes.
"""
from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, current_app, jsonify

from sensord.daemon.errors import ServiceError

from .errors import ApiError

bp = Blueprint("health", __name__)

PATHS = frozenset({"/healthz", "/readyz"})


def open_to_all(method: str, path: str) -> bool:
    """Whether a request is a health probe (with or without the trailing slash
    that every route accepts), which needs no credentials."""
    if method.upper() not in ("GET", "HEAD"):
        return False
    return path in PATHS or (path.endswith("/") and path[:-1] in PATHS)


def body_refusal(headers: Mapping[str, str]) -> ServiceError | None:
    """413 for a probe that announces a body (waitress's header names: CONTENT_LENGTH...)."""
    if headers.get("CONTENT_LENGTH", "0").strip() not in ("", "0") or "TRANSFER_ENCODING" in headers:
        return ApiError(413, "a health probe takes no body")
    return None


def _answer(results):
    ok = all(r.ok for r in results)
    response = jsonify({"status": "ok" if ok else "failing", "checks": [r.to_json() for r in results]})
    response.status_code = 200 if ok else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/healthz")
def healthz():
    return _answer(current_app.extensions["sensord"].health.run(live_only=True))


@bp.get("/readyz")
def readyz():
    return _answer(current_app.extensions["sensord"].health.run())
