"""PNG scanlines of 16-bit gray images: row filters undone, or repacked for OpenCV.

`filters.png` inflates a file's pixel data (within what its header declares)
into one buffer of scanlines: per row a filter-type byte, then the row's
big-endian samples, each byte stored as its difference from a prediction.
Undoing None, Sub and Up rows is a few numpy passes per row, done here in
place. Average and Paeth predict from the byte just reconstructed to the
left, which numpy cannot vectorize; for those, the scanlines are repacked
uncompressed into a PNG for OpenCV (libpng's C loops), so nothing is
inflated twice.

`Scanlines` holds a proved file's None, Sub and Up rows until their pixels
are first asked for: an upload is proved (inflated to exactly its declared
size) and stored without that last pass, 15-20 % of a decode, which the
first filter call then does, once, in place.
"""

from __future__ import annotations

import struct
import sys
import threading
import zlib

import numpy as np

_HEADER_END = 33                # signature and IHDR chunk
_LENGTH_TYPE = struct.Struct(">I4s")
_U32 = struct.Struct(">I")
# Stored deflate blocks: final flag, length, its complement; at most 64 KiB each.
_STORED = struct.Struct("<BHH")
_STORED_BLOCK = 65535
_STORED_PER_IDAT = 16
_IEND = b"\0\0\0\0IEND\xaeB`\x82"


def stored_png(head: memoryview, raw: np.ndarray) -> bytearray:
    """A PNG with the signature and IHDR ``head`` whose pixel data is ``raw``, stored.

    The zlib stream holds ``raw`` in stored deflate blocks (no compression),
    `_STORED_PER_IDAT` blocks to an IDAT chunk; it is written straight into
    the one buffer returned.
    """
    size = raw.size
    blocks = -(-size // _STORED_BLOCK)
    chunks = -(-blocks // _STORED_PER_IDAT)
    out = bytearray(_HEADER_END + (2 + size + 5 * blocks + 4) + 12 * chunks + len(_IEND))
    out[:_HEADER_END] = head
    src = raw.data
    pos = _HEADER_END
    for c in range(chunks):
        start, pos = pos, pos + 8
        if c == 0:
            out[pos:pos + 2] = b"\x78\x01"     # deflate, 32 KiB window, no dictionary
            pos += 2
        for b in range(c * _STORED_PER_IDAT, min(blocks, (c + 1) * _STORED_PER_IDAT)):
            lo = b * _STORED_BLOCK
            n = min(_STORED_BLOCK, size - lo)
            _STORED.pack_into(out, pos, b == blocks - 1, n, n ^ 0xFFFF)
            out[pos + 5:pos + 5 + n] = src[lo:lo + n]
            pos += 5 + n
        if c == chunks - 1:
            _U32.pack_into(out, pos, zlib.adler32(src))
            pos += 4
        _LENGTH_TYPE.pack_into(out, start, pos - start - 8, b"IDAT")
        _U32.pack_into(out, pos, zlib.crc32(memoryview(out)[start + 4:pos]))
        pos += 4
    out[pos:] = _IEND
    return out


def unfilter(raw: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """Undo the row filters in ``raw`` and drop the filter bytes, in place.

    Returns the (height, width) native uint16 samples, a view of ``raw``'s
    memory (so a decode holds one buffer, not two), or None when a row
    uses Average or Paeth: those depend on the reconstructed left neighbour
    byte by byte and have no fast numpy form.

    Row r's samples move left by r + 1 bytes, over bytes already consumed;
    row r - 1, complete by then, sits where Up needs it. A filter type
    beyond 4 is a ValueError.
    """
    stride, n = 1 + 2 * width, 2 * width
    kinds = raw[::stride]
    top = int(kinds.max())
    if top > 4:
        raise ValueError(f"a row has the unknown filter type {top}")
    if top > 2:
        return None
    add = np.add
    for r, kind in enumerate(kinds.tolist()):
        src = raw[r * stride + 1:(r + 1) * stride]
        dst = raw[r * n:(r + 1) * n]
        if kind == 2 and r:         # Up: plus the row above, byte by byte, modulo 256
            add(src, raw[(r - 1) * n:r * n], out=dst)
        elif kind == 1:             # Sub: plus the sample to the left (2 bytes back)
            pairs = src.reshape(width, 2)
            add.accumulate(pairs, axis=0, out=pairs)
            dst[:] = src
        else:                       # None (or Up on the first row, whose row above is zeros)
            dst[:] = src
    pixels = raw[:height * n].view(np.uint16).reshape(height, width)
    if sys.byteorder == "little":   # PNG samples are big-endian
        pixels.byteswap(inplace=True)
    return pixels


class Scanlines:
    """A 16-bit gray image's pixels, proved whole, maybe with their row filters still to undo.

    ``raw`` holds None, Sub and Up rows only (`filters.png.prove_gray16`
    decodes any other kind at once), so undoing them cannot fail.
    `pixels` does it on first call, in place and under a lock (two
    callers never undo the same rows twice), and returns the same array
    on every call.
    """

    def __init__(self, raw: np.ndarray, height: int, width: int):
        self.height, self.width = height, width
        self.nbytes = raw.nbytes        # the same memory before and after
        self._raw: np.ndarray | None = raw
        self._pixels: np.ndarray | None = None
        self._lock = threading.Lock()

    @classmethod
    def decoded(cls, pixels: np.ndarray) -> "Scanlines":
        """Pixels already decoded, held the same way."""
        held = cls(pixels, *pixels.shape)
        held._raw, held._pixels = None, pixels
        return held

    def pixels(self) -> np.ndarray:
        with self._lock:
            if self._pixels is None:
                assert self._raw is not None
                pixels = unfilter(self._raw, self.height, self.width)
                if pixels is None:
                    raise ValueError("Scanlines holds only None, Sub and Up rows")
                self._pixels, self._raw = pixels, None
            return self._pixels
