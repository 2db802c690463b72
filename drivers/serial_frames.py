"""Serial wire format, version 1: one image as messages and back, no I/O.

``encode_image`` cuts a frame into EXPOSURE, CHUNKs and FRAME_END;
``FrameAssembler`` puts the CHUNKs of one exposure back together and checks
them against its FRAME_END. The messages themselves are
``serial_messages``, their bytes (``encode_*``, ``FrameDecoder``)
``serial_wire``; all are documented in ``SERIAL_PROTOCOL.md`` beside this
module.
"""
from __future__ import annotations

import zlib
from typing import Optional

import numpy as np

from .serial_messages import MAX_CHUNK_DATA, Chunk, ExposureStart, FrameEnd
from .serial_wire import encode_chunk, encode_exposure, encode_frame_end


def encode_image(frame_id: int, pixels: np.ndarray, *, binned: bool = False,
                 chunk_size: int = MAX_CHUNK_DATA) -> list[bytes]:
    """EXPOSURE, every CHUNK and FRAME_END for one image, as separate messages."""
    if pixels.ndim != 2:
        raise ValueError("pixels must be 2-D")
    if not 0 < chunk_size <= MAX_CHUNK_DATA:
        raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK_DATA}")
    raw = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    height, width = pixels.shape
    count = (len(raw) + chunk_size - 1) // chunk_size
    out = [encode_exposure(frame_id, width, height, binned=binned, chunk_count=count)]
    out += [encode_chunk(frame_id, i, i * chunk_size, raw[i * chunk_size:(i + 1) * chunk_size])
            for i in range(count)]
    out.append(encode_frame_end(frame_id, count, len(raw), zlib.crc32(raw)))
    return out


class FrameError(ValueError):
    """A frame was rejected; the message says why. No pixels come with it."""


class FrameAssembler:
    """Collects the CHUNKs of one exposure; ``finish`` returns the pixels or raises.

    Chunks must arrive exactly in order (seq 0, 1, 2, ... at contiguous
    offsets); their sizes are free, so a chunk may end inside a pixel. The
    first gap, duplicate or stray chunk marks the frame failed; later chunks
    are ignored, and ``finish`` raises FrameError with the first reason, so a
    half image can never come out. A whole frame with a sample at or above
    ``2**bits`` (the sensor's significant bits) is rejected too: the device
    is not sending what it described (wrong bit depth or byte order, memory
    damage before the CRC was computed).
    """

    def __init__(self, start: ExposureStart, *, bits: int = 16):
        if not 1 <= bits <= 16:
            raise ValueError(f"bits must be in 1..16, got {bits}")
        self.start = start
        self.bits = bits
        self._buf = bytearray(start.total_bytes)
        self._next_seq = 0
        self._next_off = 0
        self._crc = 0
        self.failure: Optional[str] = None

    @property
    def received_bytes(self) -> int:
        return self._next_off

    def _fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = why
            self._buf = bytearray()   # drop the partial pixels right away

    def add(self, chunk: Chunk) -> None:
        if self.failure is not None:
            return
        s, n = self.start, len(chunk.data)
        if chunk.frame_id != s.frame_id:
            self._fail(f"chunk of frame {chunk.frame_id} during frame {s.frame_id}")
        elif chunk.seq < self._next_seq:
            self._fail(f"duplicate chunk {chunk.seq}")
        elif chunk.seq > self._next_seq:
            self._fail(f"missing chunk {self._next_seq} (got {chunk.seq})")
        elif chunk.seq >= s.chunk_count:
            self._fail(f"chunk {chunk.seq} beyond the announced {s.chunk_count}")
        elif chunk.offset != self._next_off:
            self._fail(f"chunk {chunk.seq} at offset {chunk.offset}, expected {self._next_off}")
        elif self._next_off + n > s.total_bytes:
            self._fail(f"chunk {chunk.seq} overruns the frame")
        else:
            self._buf[self._next_off:self._next_off + n] = chunk.data
            self._crc = zlib.crc32(chunk.data, self._crc)
            self._next_seq += 1
            self._next_off += n

    def finish(self, end: FrameEnd) -> np.ndarray:
        """Pixels as a (height, width) uint16 array, or FrameError."""
        s = self.start
        if self.failure is not None:
            raise FrameError(self.failure)
        if end.frame_id != s.frame_id:
            raise FrameError(f"frame end of frame {end.frame_id} during frame {s.frame_id}")
        if self._next_seq != s.chunk_count or end.chunk_count != s.chunk_count:
            raise FrameError(f"got {self._next_seq} of {s.chunk_count} chunks")
        if self._next_off != s.total_bytes or end.total_bytes != s.total_bytes:
            raise FrameError(f"got {self._next_off} of {s.total_bytes} bytes")
        if self._crc != end.crc32:
            raise FrameError("frame CRC mismatch")
        pixels = np.frombuffer(self._buf, dtype="<u2").reshape(s.height, s.width)
        pixels = pixels.astype(np.uint16)   # native byte order, owns its memory
        if self.bits < 16:
            limit = 1 << self.bits
            over = pixels >= limit
            count = int(np.count_nonzero(over))
            if count:
                row, col = divmod(int(np.argmax(over)), s.width)
                raise FrameError(f"{count} pixel value(s) at or above 2^{self.bits} = {limit}, "
                                 f"first {int(pixels[row, col])} at row {row}, column {col}")
        return pixels

