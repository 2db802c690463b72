"""16-bit grayscale PNG: header parsing, bounded decoding, fast encoding.

`read_header` is a pure parser of the first 33 bytes, so uploads can be
rejected (wrong format, too large) before any pixel is decompressed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from . import _checks

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR = struct.Struct(">I4s")  # chunk length, chunk type
_IHDR_FIELDS = struct.Struct(">IIBBBBB")
_HEADER_END = len(SIGNATURE) + _IHDR.size + _IHDR_FIELDS.size + 4  # + CRC
_PNG_MAX_SIDE = 2**31 - 1  # the PNG specification's limit
_COLOR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}


class PngError(ValueError):
    """The bytes are not an acceptable PNG (base class)."""


class NotPngError(PngError):
    """The bytes are not a PNG: bad signature, or no IHDR chunk first."""


class PngFormatError(PngError):
    """A valid PNG, but not 16-bit grayscale."""


class PngTooLargeError(PngError):
    """A valid PNG whose dimensions exceed the caller's bounds."""


class CorruptPngError(PngError):
    """A PNG that is truncated, fails a CRC, or cannot be decoded."""


@dataclass(frozen=True)
class PngHeader:
    """The IHDR fields of a PNG."""

    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int

    @property
    def color_name(self) -> str:
        return _COLOR_TYPES.get(self.color_type, f"unknown color type {self.color_type}")


def read_header(data: bytes) -> PngHeader:
    """Parse and check the signature and IHDR chunk of a PNG.

    Parameters
    ----------
    data : bytes-like
        The file's bytes (at least the first 33).

    Returns
    -------
    PngHeader

    Raises
    ------
    NotPngError
        Bad signature, or the first chunk is not a 13-byte IHDR.
    CorruptPngError
        Truncated header, IHDR CRC mismatch, or fields outside the PNG
        specification (zero or oversized dimensions, unknown compression,
        filter or interlace method).

    Notes
    -----
    Pure function on bytes; bit depth and color type are reported, not
    judged (see `decode_gray16`).
    """
    view = memoryview(data).cast("B")
    if bytes(view[:8]) != SIGNATURE[: min(8, len(view))] or len(view) == 0:
        raise NotPngError("not a PNG file: the 8-byte PNG signature is missing")
    if len(view) < _HEADER_END:
        raise CorruptPngError(f"truncated PNG: {len(view)} bytes, the header alone needs {_HEADER_END}")
    length, kind = _IHDR.unpack_from(view, 8)
    if kind != b"IHDR" or length != _IHDR_FIELDS.size:
        raise NotPngError("not a PNG file: the first chunk is not a 13-byte IHDR")
    fields = bytes(view[16:29])
    (crc,) = struct.unpack_from(">I", view, 29)
    if zlib.crc32(b"IHDR" + fields) != crc:
        raise CorruptPngError("corrupt PNG: the IHDR chunk fails its CRC check")
    width, height, depth, color, compression, filter_method, interlace = _IHDR_FIELDS.unpack(fields)
    if not (0 < width <= _PNG_MAX_SIDE and 0 < height <= _PNG_MAX_SIDE):
        raise CorruptPngError(f"corrupt PNG: invalid dimensions {width}x{height}")
    if compression != 0 or filter_method != 0 or interlace not in (0, 1):
        raise CorruptPngError(
            f"corrupt PNG: unknown compression ({compression}), filter ({filter_method}) "
            f"or interlace ({interlace}) method"
        )
    return PngHeader(width=width, height=height, bit_depth=depth, color_type=color, interlace=interlace)


def decode_gray16(data: bytes, *, max_width: int, max_height: int) -> np.ndarray:
    """Decode a 16-bit grayscale PNG, checking format and size first.

    Parameters
    ----------
    data : bytes-like
        The whole file.
    max_width, max_height : int
        Largest accepted dimensions, >= 1.

    Returns
    -------
    (height, width) ndarray of uint16

    Raises
    ------
    NotPngError, CorruptPngError
        As `read_header`, or when the pixel data cannot be decoded.
    PngFormatError
        Not 16-bit grayscale; the message names the depth and color type.
    PngTooLargeError
        Dimensions beyond the bounds; raised before decoding any pixel.

    Notes
    -----
    Dtype rule: 16-bit samples are returned as stored (big-endian in the
    file, native uint16 here); no scaling.
    """
    max_width = _checks.integer(max_width, name="max_width", low=1, high=_PNG_MAX_SIDE)
    max_height = _checks.integer(max_height, name="max_height", low=1, high=_PNG_MAX_SIDE)
    header = read_header(data)
    if header.bit_depth != 16 or header.color_type != 0:
        raise PngFormatError(
            f"PNG must be 16-bit grayscale, got {header.bit_depth}-bit {header.color_name}"
        )
    if header.width > max_width or header.height > max_height:
        raise PngTooLargeError(
            f"PNG is {header.width}x{header.height} pixels, the limit is {max_width}x{max_height}"
        )
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    expected = (header.height, header.width)
    if pixels is None or pixels.dtype != np.uint16 or pixels.shape != expected:
        raise CorruptPngError("corrupt PNG: the pixel data cannot be decoded")
    return pixels


def encode_gray16(image: np.ndarray, *, compression: int = 1) -> bytes:
    """Encode a 16-bit grayscale image as PNG, losslessly.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
    compression : int, optional
        zlib level 0 (stored) to 9 (smallest, slowest).

    Returns
    -------
    bytes

    Notes
    -----
    Dtype rule: uint16 in, 16-bit grayscale PNG out; decoding gives the
    same array. Level 1 (default) uses Huffman-only coding after the Up
    filter, the fastest good setting measured here: on a noisy 2400x1708
    phantom 78 ms for 5.5 MB, against 196 ms and 5.7 MB for level 1 with
    the default settings, 59 ms and 8.2 MB for level 0. Other levels use
    OpenCV's default strategy and filters.
    """
    image = _checks.gray16(image)
    level = _checks.integer(compression, name="compression", low=0, high=9)
    params = [cv2.IMWRITE_PNG_COMPRESSION, level]
    if level == 1:
        params += [
            cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
            cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
        ]
    ok, buf = cv2.imencode(".png", image, params)
    if not ok:  # pragma: no cover - OpenCV reports failure without a reason
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
