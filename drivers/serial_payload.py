"""Serial sensor wire format, version 1: a message as payload bytes and back, no I/O.

``pack`` lays a message object (``serial_messages``) out as the payload of
its frame; ``parse`` reads a payload back, raising ``Malformed`` for
content that is not version 1. Separate from ``serial_wire`` (sync, header,
CRCs and the stream decoder around the payload) so each field's layout is
in one place, beside the other fields and away from the framing.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import fields

from .serial_messages import (
    BY_TYPE,
    CHUNK_HEAD,
    MAX_CHUNK_DATA,
    MAX_PAYLOAD,
    MAX_SIDE,
    NO_BATTERY,
    Chunk,
    ErrorMsg,
    ExposureStart,
    Ident,
    Message,
    SensorDesc,
    Status,
)


def _str(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"string longer than 255 bytes: {s[:20]!r}...")
    return bytes([len(raw)]) + raw


def pack(msg: Message) -> bytes:
    if isinstance(msg, Status):
        return struct.pack(msg.FMT, msg.state, NO_BATTERY if msg.battery is None else msg.battery,
                           msg.battery_low)
    if msg.FMT is not None:
        return struct.pack(msg.FMT, *[getattr(msg, f.name) for f in fields(msg)][:-1])
    if isinstance(msg, Chunk):
        return CHUNK_HEAD.pack(msg.frame_id, msg.seq, msg.offset) + bytes(msg.data)
    if isinstance(msg, ErrorMsg):
        return struct.pack("<HB", msg.code, msg.request) + msg.text.encode("utf-8")[:MAX_PAYLOAD - 3]
    flags = (1 if msg.sensor else 0) | (2 if msg.battery_powered else 0)
    out = bytes([msg.protocol, flags]) + _str(msg.model) + _str(msg.serial) + _str(msg.firmware)
    s = msg.sensor
    if s is not None:
        out += (_str(s.model) + _str(s.serial) + _str(s.brand) + _str(s.family)
                + struct.pack("<BHHB?I", s.size, s.width, s.height, s.bits, s.supports_binning,
                              s.pixel_pitch_nm) + _str(s.firmware))
    return out


class Malformed(Exception):
    """A payload whose CRC was right but whose content is not v1 (the decoder counts it)."""


def _check(ok: bool, why: str) -> None:
    if not ok:
        raise Malformed(why)


def _strings(payload: bytes, pos: int, n: int) -> tuple[list[str], int]:
    out = []
    for _ in range(n):
        end = pos + 1 + payload[pos]          # IndexError past the end: malformed
        _check(end <= len(payload), "string runs past the payload")
        out.append(payload[pos + 1:end].decode("utf-8"))   # UnicodeDecodeError: malformed
        pos = end
    return out, pos


def parse(mtype: int, tag: int, payload: bytes) -> Message:
    """Payload to message. Trailing bytes are ignored, so v1 readers accept
    fields a later minor revision appends. Raises on malformed content."""
    cls = BY_TYPE.get(mtype)
    if cls is None:
        raise Malformed(f"unknown type 0x{mtype:02x}")
    if cls.FMT is not None:
        values = struct.unpack_from(cls.FMT, payload)
        if cls is Status:
            _check(values[1] <= 100 or values[1] == NO_BATTERY, f"battery {values[1]}%")
            values = (values[0], None if values[1] == NO_BATTERY else values[1], values[2])
        # The fields come from the table's format, not a fixed signature.
        construct: Callable[..., Message] = cls
        msg = construct(*values, tag=tag)
        if isinstance(msg, ExposureStart):      # i.e. cls is ExposureStart
            _check(0 < msg.width <= MAX_SIDE and 0 < msg.height <= MAX_SIDE
                   and msg.total_bytes == msg.width * msg.height * 2
                   and 0 < msg.chunk_count and msg.chunk_count * MAX_CHUNK_DATA >= msg.total_bytes,
                   "inconsistent frame geometry")
        return msg
    if cls is Chunk:
        _check(len(payload) > CHUNK_HEAD.size, "empty chunk")
        frame_id, seq, offset = CHUNK_HEAD.unpack_from(payload)
        return Chunk(frame_id, seq, offset, payload[CHUNK_HEAD.size:], tag=tag)
    if cls is ErrorMsg:
        code, request = struct.unpack_from("<HB", payload)
        return ErrorMsg(code, request, payload[3:].decode("utf-8", "replace"), tag=tag)
    protocol, flags = struct.unpack_from("<BB", payload)
    (model, serial, firmware), pos = _strings(payload, 2, 3)
    sensor = None
    if flags & 1:
        (s_model, s_serial, brand, family), pos = _strings(payload, pos, 4)
        size, width, height, bits, binning, pitch = struct.unpack_from("<BHHB?I", payload, pos)
        _check(0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE and 0 < bits <= 16,
               "implausible sensor geometry")
        (firmware_s,), _ = _strings(payload, pos + 11, 1)
        sensor = SensorDesc(s_model, s_serial, brand, family, size, width, height, bits,
                            binning, pitch, firmware_s)
    return Ident(model, serial, firmware, bool(flags & 2), sensor, protocol, tag=tag)

