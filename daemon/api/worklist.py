"""The worklist as sensord sees it, for operators (a client gets 403, api/roles.py).

    GET /api/sensord/v1/worklist    {"configured", "peer", "refreshedAt", "error", "items",
                                     "sessions": [{"sessionId", "bound", "accessionNumber",
                                                   "scheduledProcedureStepId", "reason"}]}

``items`` are the scheduled steps of the last answer (kept while the
worklist does not answer, ``error`` says why); ``sessions`` says for each
live session whether it is bound to one of them, and if not, why not.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

bp = Blueprint("worklist_api", __name__, url_prefix="/api/sensord/v1")


@bp.get("/worklist")
def worklist():
    services = current_app.extensions["sensord"]
    body = services.worklist.to_json()
    body["sessions"] = services.worklist_bindings.report(services.sessions.list())
    return jsonify(body)
