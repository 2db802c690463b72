"""POST /images: from a request to ImageInfo and the PNG's bytes, proved on demand.

Checks run cheapest first: the multipart shape, one part of each kind, the
JSON, the PNG signature and header (depth, color type, dimensions: 415 or
413 before anything is stored). What a 201 further rests on, that the PNG
is well formed, is `Upload.prove`, run while the store writes the bytes
(`ResourceStore.create`'s ``proof``: both wait with the GIL released, so
on two cores they overlap).

The proof is a bounded inflate (`png.prove_gray16`): every chunk length and
CRC, then the pixel data inflated, in one libdeflate call that cannot
write past it, into a buffer of exactly the size the header declares, and
every row's filter type checked. Undoing the row filters (None, Sub, Up)
cannot fail after that, so it is left to the first filter call (the pixel
cache holds the inflated rows: `Scanlines`): 8-10 ms of a 2400x1708
upload, 15-20 % of what it took. The inflated rows are kept rather than
dropped because inflating is the expensive part (20-30 ms there): dropping
them would make the first filter call inflate the file again.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from flask import Request

from sensord.daemon.dsio import strict_json
from sensord.daemon.dsio.imageinfo import parse_image_info
from sensord.daemon.store.pixel_budget import PixelBudget, prove_png
from sensord.filters import png
from sensord.filters.png_scanlines import Scanlines

from . import multipart
from .errors import ApiError

INFO_NAMES = ("imageinfo", "info")
MEDIA_NAMES = ("imagemedia", "media", "image", "file")
CHUNK = 1 << 20


@dataclass
class Upload:
    image_info: dict
    media: memoryview
    declared: str | None
    max_width: int
    max_height: int
    budget: PixelBudget | None = None
    _proved: Scanlines | None = field(default=None, repr=False)

    def prove(self) -> Scanlines:
        """The PNG proved well formed (once), its pixels held; a PNG error is a 4xx."""
        if self._proved is None:
            try:
                # The proof reserves its working memory from the pixel budget (503 when busy).
                self._proved = prove_png(self.budget, self.media, max_width=self.max_width,
                                         max_height=self.max_height)
            except png.PngError as err:
                raise _png_error(err, self.declared) from None
        return self._proved


def _png_error(err: png.PngError, declared: str | None) -> ApiError:
    if isinstance(err, png.NotPngError):
        return ApiError(415, f"imageMedia must be a 16-bit grayscale PNG ({declared or 'no declared type'}: {err})")
    if isinstance(err, png.PngFormatError):
        return ApiError(415, f"imageMedia must be a 16-bit grayscale PNG: {err}")
    if isinstance(err, png.PngTooLargeError):
        return ApiError(413, str(err))
    return ApiError(400, f"imageMedia is not a readable PNG: {err}")


def _pick(parts: list[multipart.Part], names: tuple[str, ...], label: str) -> multipart.Part | None:
    found = [part for part in parts if part.name.lower() in names]
    if len(found) > 1:
        # Taking the first or the last would be a silent guess at what the client meant.
        raise ApiError(400, f"more than one {label!r} part ({', '.join(repr(p.name) for p in found)}); "
                            "send exactly one")
    return found[0] if found else None


def _chunks(request: Request):
    stream = request.stream
    while chunk := stream.read(CHUNK):
        yield chunk


def _body(request: Request) -> bytes | bytearray:
    """The whole body (bounded by server.max_upload_mb), in one buffer the parts are views of.

    waitress holds a body of up to ``inbuf_overflow`` bytes in a BytesIO
    before the app runs; its ``getvalue()`` hands over that very buffer
    (CPython shares it rather than copying while nothing else holds a view
    of it). Any other input (a larger body spooled to a file, a chunked
    one) is read, once, into a buffer of its own.
    """
    length = request.content_length
    if length is None:
        return b"".join(_chunks(request))
    limit = request.max_content_length
    source = request.environ.get("wsgi.input")
    if isinstance(source, io.BytesIO) and (limit is None or length <= limit):
        held = source.getvalue()
        if len(held) == length:
            return held
    body = bytearray(length)
    view, got = memoryview(body), 0
    stream = cast(io.RawIOBase, request.stream)     # werkzeug's LimitedStream: typed IO[bytes], has readinto
    while got < length:
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    view.release()
    del body[got:]          # (a body cut short is then malformed, which the parser says)
    return body


def read_upload(request: Request, *, max_width: int, max_height: int, max_info_bytes: int,
                budget: PixelBudget | None = None) -> Upload:
    if request.mimetype == "image/png":
        # The vendor's beta SDK posts the PNG as the whole body, without an
        # ImageInfo: the same checks and limits, an empty ImageInfo.
        return _checked(parse_image_info({}), memoryview(_body(request)), "the body", "image/png",
                        max_width=max_width, max_height=max_height, budget=budget)
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "POST /images takes multipart/form-data (or a bare image/png body), "
                            f"not {request.mimetype or 'an untyped body'}")
    # A MultipartError is a 400 that says where the body went wrong.
    boundary = multipart.boundary_of(request.headers.get("Content-Type", ""))
    # An oversized imageInfo is a 413 as it arrives, before it is kept or parsed.
    parts = multipart.parse_body(_body(request), boundary,
                                 part_limits=dict.fromkeys(INFO_NAMES, max_info_bytes))

    info_part = _pick(parts, INFO_NAMES, "imageInfo")
    if info_part is None:
        raise ApiError(400, "missing part 'imageInfo' (the ImageInfo JSON)")
    media_part = _pick(parts, MEDIA_NAMES, "imageMedia")
    if media_part is None:
        others = [p for p in parts if p is not info_part]
        if len(others) != 1:
            raise ApiError(400, "missing part 'imageMedia' (the 16-bit grayscale PNG)")
        media_part = others[0]

    try:
        raw = strict_json.loads(info_part.data, what="imageInfo")
    except strict_json.JsonRefused as err:
        raise ApiError(400, str(err)) from None
    try:
        # The SDK's UploadImage writes a null ImageInfo as the text `null`: no ImageInfo.
        info = parse_image_info({} if raw is None else raw)
    except ValueError as err:
        raise ApiError(400, str(err)) from None
    return _checked(info, media_part.view, "part 'imageMedia'", media_part.content_type,
                    max_width=max_width, max_height=max_height, budget=budget)


def _checked(info: dict, data: memoryview, where: str, declared: str | None, *,
             max_width: int, max_height: int, budget: PixelBudget | None = None) -> Upload:
    """The upload once its PNG header says a 16-bit gray image within bounds (the pixels: `Upload.decode`)."""
    if not len(data):
        raise ApiError(400, f"{where} is empty")
    try:
        png.check_gray16(data, max_width=max_width, max_height=max_height)
    except png.PngError as err:
        raise _png_error(err, declared) from None
    return Upload(info, data, declared, max_width, max_height, budget)
