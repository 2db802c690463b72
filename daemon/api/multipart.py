"""multipart/form-data parsed into raw parts, kept apart from I/O.

Werkzeug's form parser decides by the presence of a filename whether a part
is a file or a text field, and decodes fields as text under a small memory
cap. The vendor's .NET SDK may send the PNG as a part without a filename,
so we use werkzeug's low-level decoder and keep every part as bytes.

A body already in memory (waitress holds it whole before the app runs)
takes `parse_body`: the common shape (CRLF line breaks, no preamble, each
delimiter found once with ``bytes.find``) is split in place, every part a
memoryview of the body, no byte copied: 0.2 ms for a 6.5 MiB upload where
werkzeug's decoder took 7-20 ms and three copies. Any other shape goes
through the decoder, so its answers, and its errors, stay werkzeug's.
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
        if len(self.chunks) == 1 and isinstance(self.chunks[0], memoryview):
            return bytes(self.chunks[0])        # a copy, for small parts (JSON); `view` has none
        if len(self.chunks) != 1:
            self.chunks[:] = [b"".join(self.chunks)]
        return self.chunks[0]

    @property
    def view(self) -> memoryview:
        """The part's bytes without a copy where they are a slice of the body."""
        if len(self.chunks) == 1 and isinstance(self.chunks[0], memoryview):
            return self.chunks[0]
        return memoryview(self.data)


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


_PIECE = 1 << 16    # what the decoder is fed at a time: it slows down on larger pieces


def parse_body(body: bytes | bytearray, boundary: bytes, *, max_parts: int = 16,
               part_limits: Mapping[str, int] | None = None) -> list[Part]:
    """`parse` for a body held whole in memory: the same parts, the same errors."""
    parts = _split(body, boundary, max_parts, part_limits or {})
    if parts is not None:
        return parts
    view = memoryview(body)
    return parse((bytes(view[i:i + _PIECE]) for i in range(0, len(view), _PIECE)), boundary,
                 max_parts=max_parts, part_limits=part_limits)


def _split(body: bytes | bytearray, boundary: bytes, max_parts: int,
           limits: Mapping[str, int]) -> list[Part] | None:
    """The parts of a body in the common shape, or None for the decoder to parse.

    Taken here only where the decoder would read the body the same way: it
    starts with the first delimiter line; each header block ends with an
    empty line and holds only CRLF line breaks, no folded line; each part
    ends at the first ``--boundary`` after its headers, which CRLF precedes
    and CRLF or the closing ``--`` follows.
    """
    dash = b"--" + boundary
    if not body.startswith(dash + b"\r\n"):
        return None
    whole = memoryview(body)
    parts: list[Part] = []
    pos = len(dash) + 2
    while True:
        head_end = body.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return None
        block = bytes(body[pos:head_end])
        crlf = block.count(b"\r\n")
        if block.count(b"\n") != crlf or block.count(b"\r") != crlf or block[:1] in (b" ", b"\t") \
                or b"\r\n " in block or b"\r\n\t" in block:
            return None
        try:
            lines = [line.strip(b" \t").decode() for line in block.split(b"\r\n")]
        except UnicodeDecodeError:
            return None
        headers = Headers([(name.strip(" \t"), value.strip(" \t"))
                           for name, _, value in (line.partition(":") for line in lines if line)])
        if "content-disposition" not in headers:
            return None
        extra = parse_options_header(headers["content-disposition"])[1]
        start = head_end + 4
        found = body.find(dash, start)
        if found < start + 2 or body[found - 2:found] != b"\r\n":
            return None
        after = body[found + len(dash):found + len(dash) + 2]
        if after not in (b"\r\n", b"--"):
            return None
        part = Part(extra.get("name") or "", extra.get("filename"), headers, [whole[start:found - 2]])
        parts.append(part)
        if len(parts) > max_parts:
            raise MultipartError(f"more than {max_parts} parts")
        limit = limits.get(part.name.lower())
        if limit is not None and found - 2 - start > limit:
            raise PartTooLarge(f"part {part.name!r} is larger than {limit >> 10} KiB")
        if after == b"--":
            return parts
        pos = found + len(dash) + 2
