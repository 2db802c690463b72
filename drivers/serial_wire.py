"""Serial sensor wire format, version 1: framing, CRCs and the stream decoder, no I/O.

The layout is documented in ``SERIAL_PROTOCOL.md`` beside this module. This
module wraps messages in sync, header and CRCs (``encode``, ``encode_*``)
and turns an arbitrary byte stream back into messages (``FrameDecoder``).
The messages are ``serial_messages``, their payload layout
``serial_payload``; cutting an image into messages and putting it back
together is ``serial_frames``. Nothing here touches a port or a clock, so
every failure mode can be tested on plain bytes.
"""
from __future__ import annotations

import binascii
import struct
import zlib
from typing import Optional

from .serial_messages import (
    MAX_PAYLOAD,
    VERSION,
    Ack,
    Arm,
    Chunk,
    Disarm,
    ErrorMsg,
    ExposureStart,
    FrameEnd,
    GetStatus,
    Ident,
    Identify,
    Message,
    SensorDesc,
    Status,
)
from .serial_payload import Malformed, pack, parse

SYNC = b"\xA5\x5A"
HEADER = struct.Struct("<2sBBBHH")   # sync, version, type, tag, length, header CRC
TRAILER = struct.Struct("<I")        # CRC-32 of header[2:] + payload


def _header_crc(ver_type_tag_len: bytes) -> int:
    # CRC-16/CCITT-FALSE; binascii.crc_hqx runs in C.
    return binascii.crc_hqx(ver_type_tag_len, 0xFFFF)


def encode_frame(mtype: int, payload: bytes = b"", tag: int = 0) -> bytes:
    """Wrap ``payload`` in sync, header, header CRC and CRC-32 trailer."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    head = struct.pack("<BBBH", VERSION, mtype, tag & 0xFF, len(payload))
    body = head + struct.pack("<H", _header_crc(head)) + payload
    return SYNC + body + TRAILER.pack(zlib.crc32(body))


def encode(msg: Message) -> bytes:
    """Bytes on the wire for any message object."""
    return encode_frame(msg.TYPE, pack(msg), msg.tag)


# One builder per message type, keyword ``tag`` last (0: unsolicited).
def encode_identify(*, tag=0): return encode(Identify(tag))
def encode_get_status(*, tag=0): return encode(GetStatus(tag))
def encode_arm(binning=False, *, tag=0): return encode(Arm(binning, tag))
def encode_disarm(*, tag=0): return encode(Disarm(tag))
def encode_ack(request, result=0, *, tag=0): return encode(Ack(request, result, tag))
def encode_error(code, request=0, text="", *, tag=0): return encode(ErrorMsg(code, request, text, tag))
def encode_chunk(frame_id, seq, offset, data, *, tag=0): return encode(Chunk(frame_id, seq, offset, bytes(data), tag))


def encode_status(state: int, battery: Optional[int], battery_low: bool = False, *, tag: int = 0) -> bytes:
    return encode(Status(state, battery, battery_low, tag))


def encode_ident(model: str, serial: str, firmware: str, *, battery_powered: bool,
                 sensor: Optional[SensorDesc], tag: int = 0) -> bytes:
    return encode(Ident(model, serial, firmware, battery_powered, sensor, tag=tag))


def encode_exposure(frame_id: int, width: int, height: int, *, binned: bool,
                    chunk_count: int, tag: int = 0) -> bytes:
    return encode(ExposureStart(frame_id, width, height, binned, chunk_count, width * height * 2, tag))


def encode_frame_end(frame_id: int, chunk_count: int, total_bytes: int, crc32: int, *, tag: int = 0) -> bytes:
    return encode(FrameEnd(frame_id, chunk_count, total_bytes, crc32, tag))


class FrameDecoder:
    """Streaming decoder: feed it whatever the port returned, get whole messages.

    It never raises on input. A candidate message is accepted only if its
    header CRC, version, length bound and CRC-32 all check; on any failure the
    decoder skips one byte and scans for the next sync, so a message right
    after damaged bytes is still found. Counters say what was thrown away.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.messages = 0
        self.garbage_bytes = 0     # bytes skipped while looking for a message
        self.header_errors = 0     # sync found but header CRC or version wrong
        self.oversize = 0          # header fine but length above MAX_PAYLOAD
        self.crc_errors = 0        # CRC-32 of a whole message wrong
        self.bad_payloads = 0      # CRC right, content not understood
        self.truncated = 0         # incomplete message given up by drop_stalled()

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        return self._drain()

    def drop_stalled(self) -> list[Message]:
        """The line went quiet: give up the incomplete message at the head.

        A damaged length field can make the head claim bytes that never come;
        without this, good messages already buffered behind it would wait
        forever. Call it when no byte arrived for a while.
        """
        out: list[Message] = []
        while self._buf:
            if self._buf.startswith(SYNC) and len(self._buf) >= HEADER.size:
                self.truncated += 1
            self._skip(1)
            out += self._drain()
        return out

    def reset(self) -> None:
        self._buf.clear()

    def _skip(self, n: int) -> None:
        del self._buf[:n]
        self.garbage_bytes += n

    def _drain(self) -> list[Message]:
        out: list[Message] = []
        buf = self._buf
        while True:
            i = buf.find(SYNC)
            if i < 0:
                # Keep a trailing first sync byte: its partner may be in the next read.
                keep = 1 if buf[-1:] == SYNC[:1] else 0
                self._skip(len(buf) - keep)
                return out
            if i:
                self._skip(i)
            if len(buf) < HEADER.size:
                return out
            _, ver, mtype, tag, length, hcrc = HEADER.unpack_from(buf)
            if _header_crc(bytes(buf[2:7])) != hcrc or ver != VERSION:
                self.header_errors += 1
                self._skip(1)
                continue
            if length > MAX_PAYLOAD:
                self.oversize += 1
                self._skip(1)
                continue
            end = HEADER.size + length
            if len(buf) < end + TRAILER.size:
                return out
            (crc,) = TRAILER.unpack_from(buf, end)
            if zlib.crc32(buf[2:end]) != crc:
                self.crc_errors += 1
                self._skip(1)
                continue
            payload = bytes(buf[HEADER.size:end])
            del buf[:end + TRAILER.size]
            try:
                out.append(parse(mtype, tag, payload))
                self.messages += 1
            except (Malformed, struct.error, IndexError, UnicodeDecodeError):
                self.bad_payloads += 1

    def counters(self) -> dict:
        return {f: getattr(self, f) for f in ("messages", "garbage_bytes", "header_errors",
                                                "oversize", "crc_errors", "bad_payloads", "truncated")}
