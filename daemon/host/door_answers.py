"""The answers the front door gives itself, before a request reaches Flask:
the app's JSON error body (``api/errors.py``) and browser headers
(``api/response_headers.py``), in the shape waitress's error task renders;
for the door's refusals, and for waitress's own errors, which it would
otherwise answer in plain text."""
from __future__ import annotations

import errno
import json

from waitress.task import ErrorTask
from waitress.utilities import (
    BadRequest,
    Error,
    InternalServerError,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
)
from werkzeug.http import HTTP_STATUS_CODES

from sensord.daemon.api import response_headers
from sensord.daemon.api.errors import error_body
from sensord.daemon.errors import ServiceError

SHORT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Answer(Error):
    """An answer decided before the app runs, as one of waitress's errors
    (what its ErrorTask renders with ``to_response``), with the JSON error body."""

    def __init__(self, status: int, message: str, headers=None):
        super().__init__(message)
        self.code = status
        self.status, self.message, self.headers = status, message, dict(headers or {})

    @classmethod
    def of(cls, err: ServiceError) -> "Answer":
        return cls(err.status, err.message, err.headers)

    def to_response(self, ident=None):
        body = (json.dumps(error_body(self.status, self.message), separators=(",", ":")) + "\n").encode()
        # The same browser headers as every answer of the app (nosniff, CSP, ...).
        headers = [("Content-Type", "application/json"), *response_headers.HEADERS.items(),
                   *self.headers.items()]
        return f"{self.status} {HTTP_STATUS_CODES.get(self.status, 'Error')}", headers, body


def waitress_answer(error, max_upload_mb: int) -> Answer:
    """waitress's own error (plain text) as an Answer saying the same."""
    if isinstance(error, RequestEntityTooLarge):
        return Answer(413, f"the body is larger than the upload limit of {max_upload_mb} MiB "
                           "(server.max_upload_mb)")
    if isinstance(error, RequestHeaderFieldsTooLarge):
        return Answer(431, "the request's headers are too large")
    if isinstance(error, InternalServerError):
        return Answer(500, "internal error; the daemon log has the details")
    if isinstance(error, BadRequest):
        return Answer(400, f"malformed HTTP request: {error.body}")
    return Answer(error.code, str(error.body))


def os_answer(err: OSError) -> Answer:
    """A body that could not be buffered (waitress spools large ones to a file)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return Answer(507, "not enough storage to receive the body")
    if err.errno in SHORT_OF_DESCRIPTORS:
        return Answer(503, "the daemon is short of file descriptors; try again in a moment",
                      {"Retry-After": "1"})
    return Answer(500, "internal error receiving the body; the daemon log has the details")


class JsonErrorTask(ErrorTask):
    """waitress's error task, answering with the JSON error body."""

    def execute(self):
        error = self.request.error
        answer = error if isinstance(error, Answer) else \
            waitress_answer(error, self.channel.server.door.max_upload_mb)
        status, headers, body = answer.to_response()
        self.status = status
        self.response_headers.extend(headers)
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
