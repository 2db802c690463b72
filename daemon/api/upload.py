"""POST /images: from a multipart request to ImageInfo, PNG bytes and pixels.

Checks run cheapest first: the multipart shape (with the imageInfo part's
size bounded as it arrives), one part of each kind, the JSON, the PNG
signature and header (depth, color type, dimensions), and only then the
pixel decode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flask import Request

from sensord.daemon.dsio import strict_json
from sensord.daemon.dsio.imageinfo import parse_image_info
from sensord.daemon.store.pixel_budget import PixelBudget, decode_png
from sensord.filters import png

from . import multipart
from .errors import ApiError

INFO_NAMES = ("imageinfo", "info")
MEDIA_NAMES = ("imagemedia", "media", "image", "file")
CHUNK = 1 << 20


@dataclass
class Upload:
    image_info: dict
    media: bytes
    pixels: np.ndarray


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


def read_upload(request: Request, *, max_width: int, max_height: int, max_info_bytes: int,
                budget: PixelBudget | None = None) -> Upload:
    if request.mimetype == "image/png":
        # The vendor's beta SDK posts the PNG as the whole body, without an
        # ImageInfo: the same checks and limits, an empty ImageInfo.
        return _checked(parse_image_info({}), b"".join(_chunks(request)), "the body", "image/png",
                        max_width=max_width, max_height=max_height, budget=budget)
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "POST /images takes multipart/form-data (or a bare image/png body), "
                            f"not {request.mimetype or 'an untyped body'}")
    # A MultipartError is a 400 that says where the body went wrong.
    boundary = multipart.boundary_of(request.headers.get("Content-Type", ""))
    # An oversized imageInfo is a 413 as it arrives, before it is kept or parsed.
    parts = multipart.parse(_chunks(request), boundary,
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
    return _checked(info, media_part.data, "part 'imageMedia'", media_part.content_type,
                    max_width=max_width, max_height=max_height, budget=budget)


def _checked(info: dict, data: bytes, where: str, declared: str | None, *,
             max_width: int, max_height: int, budget: PixelBudget | None = None) -> Upload:
    """The upload once its PNG is proved a 16-bit gray image within bounds."""
    if not data:
        raise ApiError(400, f"{where} is empty")
    try:
        # The decode reserves its working memory from the pixel budget (503 when busy).
        pixels = decode_png(budget, data, max_width=max_width, max_height=max_height)
    except png.NotPngError as err:
        raise ApiError(415, f"imageMedia must be a 16-bit grayscale PNG ({declared or 'no declared type'}: {err})") from None
    except png.PngFormatError as err:
        raise ApiError(415, f"imageMedia must be a 16-bit grayscale PNG: {err}") from None
    except png.PngTooLargeError as err:
        raise ApiError(413, str(err)) from None
    except png.PngError as err:
        raise ApiError(400, f"imageMedia is not a readable PNG: {err}") from None
    return Upload(info, data, pixels)
