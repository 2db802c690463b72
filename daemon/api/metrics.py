"""``GET /metrics``: the daemon's Prometheus metrics (daemon/metrics.py), and
the per-request timing behind its HTTP histogram.

For operators, and for users with the ``metrics`` role, which may read this
and nothing else (api/roles.py): Prometheus scrapes with Basic auth. The
answer is the Prometheus text format, or OpenMetrics when the scraper's
Accept header prefers it.

Each request the app answers is observed once its answer starts, labelled
with its URL rule (``/api/dsio/modality/v1/acquisition/<sid>``, never the
raw path, so ids do not become label values), its method and status.
Requests the front door answers from their headers alone (401, 421, ...)
are counted there (host/front_door.py).
"""
from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app, g, request

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    body, content_type = current_app.extensions["sensord"].metrics.render(request.headers.get("Accept"))
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


def install(app: Flask) -> None:
    """Time every request. Install it first: before_request hooks run in the
    order installed (so the clock starts before the origin and credential
    checks) and after_request hooks in reverse (so the final answer is seen)."""
    @app.before_request
    def _start_clock():
        g.sensord_started = time.monotonic()

    @app.after_request
    def _observe(response):
        started = g.pop("sensord_started", None)
        metrics = getattr(current_app.extensions["sensord"], "metrics", None)
        if started is not None and metrics is not None:
            rule = request.url_rule.rule if request.url_rule is not None else None
            metrics.observe_request(rule, request.method, response.status_code, time.monotonic() - started)
        return response
