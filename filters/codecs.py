"""Output encodings of a 16-bit image, chosen by media type."""

from __future__ import annotations

import io

import cv2
import numpy as np

from . import _checks, tiff
from .display import to_8bit
from .lut import Lut
from .png import encode_gray16

# The first is the default when a client accepts anything.
MEDIA_TYPES = ("image/png", "image/tiff", "image/jpeg", "image/gif")


def encode(
    image: np.ndarray,
    *,
    media_type: str,
    lut: Lut | None = None,
    png_compression: int = 1,
    jpeg_quality: int = 90,
) -> bytes:
    """Encode an image in one of `MEDIA_TYPES`.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
    media_type : {"image/png", "image/tiff", "image/jpeg", "image/gif"}
        Matched case-insensitively, without parameters.
    lut : Lut, optional
        The LUT the image is mapped with; sets the 8-bit window of JPEG and
        GIF (see `filters.display.to_8bit`). Ignored by PNG and TIFF.
    png_compression : int, optional
        zlib level 0..9 for PNG (see `filters.png.encode_gray16`).
    jpeg_quality : int, optional
        JPEG quality 1..100.

    Returns
    -------
    bytes

    Notes
    -----
    Dtype rule: PNG and TIFF keep 16-bit grayscale and are lossless (decoding
    gives the same array back). JPEG and GIF are 8-bit grayscale, windowed by
    `filters.display.to_8bit`; JPEG is lossy, GIF exact for those 8 bits.
    TIFF is uncompressed (`filters.tiff`): OpenCV took 2.5 ms for 8.2 MB
    on a 2400x1708 phantom, against 70 ms for LZW, which only saved a
    quarter of the size.
    """
    if not isinstance(media_type, str) or media_type.strip().lower() not in MEDIA_TYPES:
        raise ValueError(f"media_type must be one of {', '.join(MEDIA_TYPES)}; got {media_type!r}")
    kind = media_type.strip().lower()
    image = _checks.gray16(image)
    png_level = _checks.integer(png_compression, name="png_compression", low=0, high=9)
    quality = _checks.integer(jpeg_quality, name="jpeg_quality", low=1, high=100)
    if kind == "image/png":
        return encode_gray16(image, compression=png_level)
    if kind == "image/tiff":
        return tiff.encode_gray16(image)
    gray8 = to_8bit(image, lut=lut)
    if kind == "image/jpeg":
        return _cv2_encode(".jpg", gray8, [cv2.IMWRITE_JPEG_QUALITY, quality])
    from PIL import Image       # GIF only: Pillow costs the daemon ~2 MB from its start
    out = io.BytesIO()
    Image.fromarray(gray8).save(out, format="GIF")  # mode "L": a gray palette
    return out.getvalue()


def _cv2_encode(ext: str, image: np.ndarray, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:  # pragma: no cover - OpenCV reports failure without a reason
        raise RuntimeError(f"{ext} encoding failed")
    return buf.tobytes()
