"""The handlers that turn every failure into a small JSON body (never a
stack trace to the client): ServiceError (``daemon/errors.py``, raised by any
room with its status), werkzeug's HTTPException, and anything unexpected (500)."""
from __future__ import annotations

import errno
import logging
import uuid
from collections.abc import Mapping

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from sensord.daemon.errors import ServiceError

log = logging.getLogger("sensord.http")


class ApiError(ServiceError):
    """A ServiceError raised by a view, status first as a reader of HTTP
    expects: ``ApiError(404, "no such thing")``."""

    def __init__(self, status: int, message: str, *, headers: dict | None = None):
        super().__init__(message, status=status, headers=headers)


def error_body(status: int, message: str) -> dict:
    """The JSON error body; also what the server's front door (host/front_door.py)
    answers with before a request reaches Flask."""
    from werkzeug.http import HTTP_STATUS_CODES

    return {"status": status, "error": HTTP_STATUS_CODES.get(status, "Error"), "message": message}


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None):
    response = jsonify(error_body(status, message))
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(err: ServiceError):
        # 5xx (storage full, too many subscribers) is the operator's business too.
        log.log(logging.WARNING if err.status >= 500 else logging.INFO, "%s %s", err.status, err.message)
        return error_response(err.status, err.message, err.headers)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        # Routing (404/405) and werkzeug's own limits (413) land here.
        headers = {k: v for k, v in err.get_headers() if k.lower() not in ("content-type", "content-length")}
        return error_response(err.code or 500, err.description or err.name, headers)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        if isinstance(err, OSError) and err.errno in (errno.EMFILE, errno.ENFILE):
            # Out of file descriptors (a flood of connections): passing, not a fault.
            log.warning("503: out of file descriptors: %s", err)
            return error_response(503, "the daemon is short of file descriptors; try again in a moment",
                                  {"Retry-After": "1"})
        ref = uuid.uuid4().hex[:8]
        log.exception("internal error (ref %s)", ref)
        return error_response(500, f"internal error; the daemon log has the details (ref {ref})")
