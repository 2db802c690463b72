"""multipart/form-data parsed into raw parts, kept apart from I/O.

Werkzeug's form parser decides by the presence of a filename whether a part
is a file or a text field, and decodes fields as text under a small memory
cap. The vendor's .NET SDK may send the PNG as a part without a filename,
so we use werkzeug's low-level decoder and keep every part as bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
)

from sensord.daemon.errors import ServiceError


class MultipartError(ServiceError, ValueError):
    """The body is not well-formed multipart; the message says where."""
    status = 400


class PartTooLarge(MultipartError):
    """A part is bigger than its bound (``part_limits``); found as it arrives."""
    status = 413


@dataclass
class Part:
    name: str
    filename: str | None
    headers: Headers
    chunks: list = field(default_factory=list, repr=False)

    @property
    def content_type(self) -> str:
        return parse_options_header(self.headers.get("content-type", ""))[0].lower()

    @property
    def data(self) -> bytes:
        if len(self.chunks) != 1:
            self.chunks[:] = [b"".join(self.chunks)]
        return self.chunks[0]


def boundary_of(content_type: str) -> bytes:
    mimetype, options = parse_options_header(content_type or "")
    if mimetype.lower() != "multipart/form-data":
        raise MultipartError(f"expected multipart/form-data, got {mimetype or 'no Content-Type'}")
    boundary = options.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise MultipartError("multipart/form-data without a usable boundary parameter")
    return boundary.encode("latin-1")


def parse(chunks: Iterable[bytes], boundary: bytes, *, max_parts: int = 16,
          part_limits: Mapping[str, int] | None = None) -> list[Part]:
    """Split a multipart body, given as byte chunks, into its parts.

    ``part_limits`` maps a part name (lower case; names match without regard
    to case) to its largest size in bytes: PartTooLarge as soon as such a
    part grows past it, before the rest of it is kept.
    """
    decoder = MultipartDecoder(boundary, max_parts=max_parts)
    limits = part_limits or {}
    parts: list[Part] = []
    current: Part | None = None
    size = 0
    done = False

    def drain() -> None:
        nonlocal current, done, size
        while True:
            try:
                event = decoder.next_event()
            except RequestEntityTooLarge:
                raise MultipartError(f"more than {max_parts} parts") from None
            except ValueError as err:
                raise MultipartError(f"malformed multipart body: {err}") from None
            if isinstance(event, NeedData):
                return
            if isinstance(event, (Field, File)):
                current = Part(event.name or "", getattr(event, "filename", None), event.headers)
                parts.append(current)
                size = 0
            elif isinstance(event, Data):
                if current is None:
                    raise MultipartError("malformed multipart body: data outside a part")
                if event.data:
                    size += len(event.data)
                    limit = limits.get(current.name.lower())
                    if limit is not None and size > limit:
                        raise PartTooLarge(f"part {current.name!r} is larger than {limit >> 10} KiB")
                    current.chunks.append(event.data)
            elif isinstance(event, Epilogue):
                done = True
                return

    for chunk in chunks:
        decoder.receive_data(chunk)
        drain()
    decoder.receive_data(None)
    drain()
    if not done:
        raise MultipartError("multipart body ends before its closing boundary")
    return parts
