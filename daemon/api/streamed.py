"""Answers with a large body (images), handed to the server without a copy.

A ``Response(data)`` is one iterable item that waitress copies into its
output buffer (6.5 MiB for a 2400x1708 PNG) before sending it from there.
Wrapped as a file (``wsgi.file_wrapper``), the same bytes, or the file on
disk, are sent from where they are, read a socket buffer at a time.

Bytes in memory are read as views (`_Shared`): waitress reads up to a socket
buffer (4 MiB on loopback) each time it may send, then sends what the socket
takes; a copy per read cost 4-5 ms on a 6.5 MiB PNG.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from flask import Response, request
from werkzeug.wsgi import wrap_file

BLOCK = 1 << 18     # read per step where the server has no file wrapper of its own


def bytes_response(data: bytes, mimetype: str) -> Response:
    """``data`` as the body, sent from where it is."""
    return _wrapped(_Shared(data), len(data), mimetype)


class _Shared:
    """``data`` as a read-only seekable file whose large reads are views of it.

    Reads of `BLOCK` bytes or fewer are bytes: a WSGI body, when iterated
    (by a server without a file wrapper, or through a middleware), must be.
    Only waitress's file wrapper asks for more, and it sends what it reads.
    """

    def __init__(self, data: bytes):
        self._view = memoryview(data)
        self._pos = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes | memoryview:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        piece = self._view[self._pos:end]
        self._pos = max(self._pos, end)
        return piece if size is not None and size > BLOCK else piece.tobytes()

    def close(self) -> None:
        self._view = memoryview(b"")    # (views handed out stay valid: they hold the bytes)


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
