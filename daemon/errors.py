"""The one error type that carries its HTTP status.

A room below the API (the store, sessions, devices, the event hub) raises a
subclass of ``ServiceError`` that names its status as a class attribute; it
knows nothing of Flask. ``daemon/api/errors.py`` has the single handler that
turns any of them into the JSON error body, so no view translates them one
by one. Outside a request (CLI, reload, delivery) they are plain exceptions
whose text is the message.
"""
from __future__ import annotations

from collections.abc import Mapping


class ServiceError(Exception):
    """An error a client can act on: an HTTP status and a sentence saying what was wrong.

    Subclasses set ``status`` (and ``headers``, e.g. Retry-After) once; a
    caller may still override either for one raise.
    """

    status: int = 500
    headers: Mapping[str, str] = {}

    def __init__(self, message: str, *, status: int | None = None,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        # A copy per instance: the class attribute is shared by every raise.
        self.headers = {**type(self).headers, **(headers or {})}
