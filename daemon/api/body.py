"""Request bodies as JSON, whatever their declared type.

.NET's StringContent labels JSON text/plain unless told otherwise, so the
body is parsed as JSON regardless of Content-Type.

Every JSON body is bounded by ``images.max_info_kb``, the bound of an
ImageInfo: each one is an ImageInfo, or becomes part of one (a session's
context and AcquisitionInfo), or is smaller still (a filter call, a
forward request). It is read through `strict_json`, the one reader of
request JSON.
"""
from __future__ import annotations

from flask import current_app, request

from sensord.daemon.dsio import strict_json

from .errors import ApiError


def max_json_bytes() -> int:
    """The bound of a request's JSON (a body, or the imageInfo part of an upload)."""
    return current_app.extensions["sensord"].settings.images.max_info_kb << 10


def _bounded_body() -> bytes:
    # Content-Length, when sent, refuses before a byte is read; a chunked
    # body is read only up to one byte past the bound.
    limit = max_json_bytes()
    too_large = ApiError(413, f"a JSON body may be at most {limit >> 10} KiB (images.max_info_kb)")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0 and (chunk := request.stream.read(left)):
        chunks.append(chunk)
        left -= len(chunk)
    if left <= 0:
        raise too_large
    return b"".join(chunks)


def json_body(*, optional: bool = False):
    raw = _bounded_body()
    if not raw.strip():
        if optional:
            return None
        raise ApiError(400, "a JSON body is required")
    try:
        return strict_json.loads(raw, what="the body")
    except strict_json.JsonRefused as err:
        raise ApiError(400, str(err)) from None
