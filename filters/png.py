"""16-bit grayscale PNG: header parsing, bounded decoding, fast encoding.

`read_header` is a pure parser of the first 33 bytes, so uploads can be
rejected (wrong format, too large) before any pixel is decompressed.

Decoding never trusts a number in the file beyond what the bytes prove: every
chunk length is checked against the bytes present and every CRC before any
pixel is inflated, and the pixel data is inflated into one buffer of exactly
the size the header declares (``height * (1 + 2 * width)`` for 16-bit gray:
a filter byte and the samples of each row). libdeflate does that in one
call that cannot write past the buffer (a stream that would is refused
there), 1.5-1.8x faster than ISA-L's streaming inflater on 2400x1708
radiographs; any stream it refuses, or that it took but that does not end
exactly where the IDAT data ends, goes through the bounded streaming
inflater (ISA-L), which says precisely what is wrong. A file whose data
inflates to more or less than declared, or that goes on after its zlib
stream or its IEND chunk, is corrupt. (OpenCV's decoder, used before,
allocated whatever a chunk's length field claimed: 4 GB for a 141-byte file.)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import cv2
import deflate
import numpy as np
from isal import isal_zlib

from . import _checks, png_scanlines, png_writer

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR = struct.Struct(">I4s")  # chunk length, chunk type
_IHDR_FIELDS = struct.Struct(">IIBBBBB")
_HEADER_END = len(SIGNATURE) + _IHDR.size + _IHDR_FIELDS.size + 4  # + CRC
_PNG_MAX_SIDE = 2**31 - 1  # the PNG specification's limit
_COLOR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}
_U32 = struct.Struct(">I")      # a chunk's length, its CRC
# Walking a file of empty chunks costs ~1 us each: this bounds that to a
# fraction of a second. It admits 1 KiB IDAT chunks in a 128 MiB file;
# encoders write 8 KiB (libpng) or more.
_MAX_CHUNKS = 2**17
# Per inflate call: compressed bytes given, inflated bytes allowed. The input
# slice keeps `unconsumed_tail` copies small; the output cap bounds what one
# call can add to the buffer of a file that inflates far beyond its header.
_INFLATE_IN = 1 << 16
_INFLATE_OUT = 1 << 20
_ANIMATION = (b"acTL", b"fcTL", b"fdAT")
# libdeflate's binding takes the output size as a C unsigned int.
_ONE_CALL_MAX = 2**31
# isal's stub declares its error class as an instance of Exception.
_InflateError = cast(type[Exception], isal_zlib.error)
# Adam7 passes: first column, first row, column step, row step.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


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


def read_header(data: bytes | memoryview) -> PngHeader:
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


def check_gray16(data: bytes | memoryview, *, max_width: int, max_height: int) -> PngHeader:
    """The header of a 16-bit grayscale PNG within the bounds, else the error `decode_gray16` raises.

    Reads the first 33 bytes only: what can be refused before any pixel
    is looked at (see `read_header` for the errors it adds).
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
    return header


def decode_gray16(data: bytes | memoryview, *, max_width: int, max_height: int) -> np.ndarray:
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
    return prove_gray16(data, max_width=max_width, max_height=max_height).pixels()


def prove_gray16(data: bytes | memoryview, *, max_width: int,
                 max_height: int) -> png_scanlines.Scanlines:
    """Prove a 16-bit grayscale PNG well formed; hold its pixels, row filters maybe still to undo.

    Everything `decode_gray16` checks is checked here: format and bounds,
    every chunk's length and CRC, the pixel data inflated to exactly the
    size the header declares, every row's filter type known. What may be
    left, undoing None, Sub and Up row filters in place, cannot fail:
    `Scanlines.pixels` does it on first use. Interlaced files and Average
    or Paeth rows are decoded here, as that takes memory of its own.

    Raises
    ------
    As `decode_gray16`.
    """
    header = check_gray16(data, max_width=max_width, max_height=max_height)
    view = memoryview(data).cast("B")
    first_idat, idat_count = _walk_chunks(view)
    raw = _inflate_idat(view, first_idat, idat_count, raw_size(header))
    if not header.interlace:
        top = int(raw[::1 + 2 * header.width].max())     # each row's filter type
        if top > 4:
            raise CorruptPngError(f"corrupt PNG: a row has the unknown filter type {top}")
        if top <= 2:
            return png_scanlines.Scanlines(raw, header.height, header.width)
    # Interlaced, or rows filtered with Average or Paeth: libpng's C loops
    # undo those far faster than numpy can. OpenCV gets the inflated data
    # back as stored (uncompressed) deflate blocks, a copy it need not
    # inflate again, in a PNG we wrote: it allocates no more than the
    # header declares.
    repacked = png_scanlines.stored_png(view[:_HEADER_END], raw)
    del raw
    pixels = cv2.imdecode(np.frombuffer(repacked, np.uint8), cv2.IMREAD_UNCHANGED)
    expected = (header.height, header.width)
    if pixels is None or pixels.dtype != np.uint16 or pixels.shape != expected:
        raise CorruptPngError("corrupt PNG: the pixel data cannot be decoded")
    return png_scanlines.Scanlines.decoded(pixels)


def raw_size(header: PngHeader) -> int:
    """Bytes the pixel data of a 16-bit grayscale PNG inflates to.

    A filter byte and two bytes per sample for each row, or for each row of
    each of the seven Adam7 passes of an interlaced image.
    """
    if not header.interlace:
        return header.height * (1 + 2 * header.width)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        width = (header.width - x0 + dx - 1) // dx
        height = (header.height - y0 + dy - 1) // dy
        if width > 0 and height > 0:
            total += height * (1 + 2 * width)
    return total


_EMPTY_IEND = b"\0\0\0\0IEND\xaeB`\x82"


def _walk_chunks(view: memoryview) -> tuple[int, int]:
    """Check every chunk after the IHDR; return the offset of the first IDAT and how many follow.

    Each length must fit in the bytes present and each CRC must match
    before the next chunk is looked at, so nothing is inflated (nor
    allocated) for a file that lies about its own size. The IDAT chunks
    must form one run, IEND must end the file, a critical chunk we do not
    know is refused (as libpng does) and ancillary ones are skipped.
    """
    end = len(view)
    pos = _HEADER_END
    first = count = chunks = 0
    last = b"IHDR"
    while True:
        if end - pos < 12:
            raise CorruptPngError(f"truncated PNG: it ends at byte {end} without an IEND chunk")
        chunks += 1
        if chunks > _MAX_CHUNKS:
            raise CorruptPngError(f"corrupt PNG: more than {_MAX_CHUNKS} chunks")
        length, kind = _IHDR.unpack_from(view, pos)
        if length > end - pos - 12:
            raise CorruptPngError(f"corrupt PNG: the chunk at byte {pos} claims {length} bytes of data, "
                                  f"only {end - pos - 12} follow")
        (crc,) = _U32.unpack_from(view, pos + 8 + length)
        if not kind.isalpha():
            raise CorruptPngError(f"corrupt PNG: the chunk at byte {pos} has no valid type")
        if isal_zlib.crc32(view[pos + 4:pos + 8 + length]) != crc:
            raise CorruptPngError(f"corrupt PNG: the {kind.decode()} chunk at byte {pos} fails its CRC check")
        if kind == b"IDAT":
            if count and last != b"IDAT":
                raise CorruptPngError("corrupt PNG: its IDAT chunks are not consecutive")
            first = first if count else pos
            count += 1
        elif kind == b"IEND":
            pos += 12 + length
            # Orthanc 1.10 ends its PNGs with a second, empty IEND; libpng stops
            # at the first. Repeats of that exact chunk are harmless, so they are
            # passed over; any other byte after IEND is still refused.
            while view[pos:pos + 12] == _EMPTY_IEND:
                pos += 12
            break
        elif kind in _ANIMATION:
            raise PngFormatError("PNG must be a single 16-bit grayscale image, not an animation (APNG)")
        elif kind[0] < 0x61 and kind != b"PLTE":    # critical: upper case first letter
            raise CorruptPngError(f"corrupt PNG: unexpected critical chunk {kind.decode()} at byte {pos}")
        last = kind
        pos += 12 + length
    if count == 0:
        raise CorruptPngError("corrupt PNG: it has no IDAT chunk (no pixel data)")
    if pos != end:
        raise CorruptPngError(f"corrupt PNG: {end - pos} bytes follow its IEND chunk")
    return first, count


def _idat_data(view: memoryview, pos: int, count: int) -> Iterator[memoryview]:
    """The data of ``count`` consecutive chunks from ``pos``, already walked by `_walk_chunks`."""
    for _ in range(count):
        (length,) = _U32.unpack_from(view, pos)
        yield view[pos + 8:pos + 8 + length]
        pos += 12 + length


def _inflate_idat(view: memoryview, first: int, count: int, size: int) -> np.ndarray:
    """The pixel data of the IDAT chunks, inflated into exactly ``size`` bytes.

    libdeflate's one call is given a buffer of ``size`` bytes and fails
    rather than write past it. It takes a stream that ends before the IDAT
    data does (it checks the Adler-32 where the stream ends, not where the
    data ends), so the last four bytes of the data must be the checksum of
    what came out; a stream merely followed by bytes that repeat that
    checksum gives the same pixels either way. Anything else goes through
    `_inflate` for the precise error (or for a stream only it can read).
    """
    if size < _ONE_CALL_MAX:
        pieces = list(_idat_data(view, first, count))
        # Encoders write one IDAT chunk (ours) or many of 8-64 KiB (libpng):
        # those are joined, a copy of the compressed bytes only.
        stream = pieces[0] if count == 1 else b"".join(pieces)
        del pieces
        try:
            out: bytearray | None = deflate.zlib_decompress(stream, size)
        except deflate.DeflateError:
            out = None
        if out is not None and len(out) == size and stream[-4:] == _U32.pack(deflate.adler32(out)):
            return np.frombuffer(out, np.uint8)
        del out, stream
    return _inflate(_idat_data(view, first, count), size)


def _inflate(pieces: Iterator[memoryview], size: int) -> np.ndarray:
    """Inflate the zlib stream split over ``pieces`` into exactly ``size`` bytes.

    The inflater gets at most `_INFLATE_IN` bytes of input and room for at most
    `_INFLATE_OUT` bytes of output per call, never beyond ``size``, so what
    is held at once is the buffer plus one call's output, however the file
    lies. Once the buffer is full, a single byte more of output proves the
    stream inflates to more than declared.
    """
    raw = np.empty(size, np.uint8)
    out = raw.data
    filled = 0
    inflater = isal_zlib.decompressobj()
    try:
        for piece in pieces:
            for start in range(0, len(piece), _INFLATE_IN):
                tail: bytes | memoryview = piece[start:start + _INFLATE_IN]
                while tail:
                    if inflater.eof:
                        raise CorruptPngError("corrupt PNG: data follows the end of its compressed pixel data")
                    room = size - filled
                    got = inflater.decompress(tail, min(room, _INFLATE_OUT) or 1)
                    if len(got) > room:
                        raise CorruptPngError(f"corrupt PNG: its pixel data inflates to more than the "
                                              f"{size} bytes its header declares")
                    out[filled:filled + len(got)] = got
                    filled += len(got)
                    if not got and len(inflater.unconsumed_tail) == len(tail):
                        raise CorruptPngError("corrupt PNG: the pixel data cannot be decoded (inflate stalled)")
                    tail = inflater.unconsumed_tail
    except _InflateError as err:
        raise CorruptPngError(f"corrupt PNG: the pixel data cannot be decoded (inflate: {err})") from None
    if filled < size:
        raise CorruptPngError(f"corrupt PNG: its pixel data inflates to {filled} bytes, its header "
                              f"declares {size}")
    if not inflater.eof:
        raise CorruptPngError("corrupt PNG: its compressed pixel data is cut off before its end")
    if inflater.unused_data:
        raise CorruptPngError("corrupt PNG: data follows the end of its compressed pixel data")
    return raw


def encode_gray16(image: np.ndarray, *, compression: int = 1) -> bytes:
    """Encode a 16-bit grayscale image as PNG, losslessly.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
    compression : int, optional
        zlib's scale, 0 (stored) to 9, kept from when OpenCV (zlib) wrote
        the PNGs; mapped onto ISA-L's levels as `png_writer.write` says.

    Returns
    -------
    bytes

    Notes
    -----
    Dtype rule: uint16 in, 16-bit grayscale PNG out; decoding gives the
    same array. Written by `filters.png_writer` (Up filter, ISA-L): on the
    2400x1708 simulated radiographs level 1 (default) was 4.5-6x faster
    than OpenCV's fastest setting in the same run (``python -m bench
    png16``) and came out 0.7-2 % smaller. Levels 2-9 cost more time for
    at most 0.1 % less on such images; 0 stores the rows (8.2 MB).
    """
    image = _checks.gray16(image)
    level = _checks.integer(compression, name="compression", low=0, high=9)
    return png_writer.write(image, level=level)
