"""Answers with a large body (images), handed to the server without a copy.

A ``Response(data)`` is one iterable item that waitress copies into its
output buffer (6.5 MiB for a 2400x1708 PNG) before sending it from there.
Wrapped as a file (``wsgi.file_wrapper``), the same bytes, or the file on
disk, are sent from where they are, read a socket buffer at a time.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from flask import Response, request
from werkzeug.wsgi import wrap_file

BLOCK = 1 << 18     # read per step where the server has no file wrapper of its own


def bytes_response(data: bytes, mimetype: str) -> Response:
    """``data`` as the body (BytesIO shares the bytes until written: no copy)."""
    return _wrapped(io.BytesIO(data), len(data), mimetype)


def file_response(path: Path, mimetype: str) -> Response | None:
    """The file at ``path`` as the body, or None if it is gone.

    Opened before the answer is built: a file removed after that is still
    sent whole (its data lives until the last descriptor is closed).
    """
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(file.fileno()).st_size
        return _wrapped(file, size, mimetype)
    except BaseException:
        file.close()
        raise


def _wrapped(file, size: int, mimetype: str) -> Response:
    response = Response(wrap_file(request.environ, file, BLOCK), mimetype=mimetype, direct_passthrough=True)
    response.content_length = size
    return response
