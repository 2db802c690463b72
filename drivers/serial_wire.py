"""Serial sensor wire format, version 1: pure functions on bytes, no I/O.

The layout is documented in ``SERIAL_PROTOCOL.md`` beside this module. This
module builds messages (``encode_*``) and turns an arbitrary byte stream back
into messages (``FrameDecoder``); cutting an image into messages and putting
it back together is ``serial_frames``. Nothing here touches a port or a
clock, so every failure mode can be tested on plain bytes.
"""
from __future__ import annotations

import binascii
import enum
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Optional, Union

SYNC = b"\xA5\x5A"
VERSION = 1
HEADER = struct.Struct("<2sBBBHH")   # sync, version, type, tag, length, header CRC
TRAILER = struct.Struct("<I")        # CRC-32 of header[2:] + payload
MAX_CHUNK_DATA = 4096
CHUNK_HEAD = struct.Struct("<HHI")   # frame_id, seq, offset
MAX_PAYLOAD = CHUNK_HEAD.size + MAX_CHUNK_DATA
MAX_SIDE = 16384                     # sanity bound on announced frame sizes
NO_BATTERY = 0xFF


class T(enum.IntEnum):
    """Message types: host requests below 0x80, device messages from 0x80."""
    IDENTIFY = 0x01
    GET_STATUS = 0x02
    ARM = 0x03
    DISARM = 0x04
    IDENT = 0x81
    STATUS = 0x82
    ACK = 0x83
    EXPOSURE = 0x84
    CHUNK = 0x85
    FRAME_END = 0x86
    ERROR = 0x87


class DeviceState(enum.IntEnum):
    NO_SENSOR = 0
    INITIALIZING = 1
    IDLE = 2          # sensor present, not armed
    ARMED = 3
    READING = 4
    ERROR = 5


class ErrorCode(enum.IntEnum):
    OK = 0
    BAD_REQUEST = 1
    NO_SENSOR = 2
    BUSY = 3
    LOW_BATTERY = 4
    BINNING_UNSUPPORTED = 5
    SENSOR_FAULT = 6
    READOUT_ABORTED = 7


def code_name(code: int) -> str:
    """Readable name of an error code, also for codes this version does not know."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"code 0x{code:02x}"


# ---------------------------------------------------------------- messages
# One frozen dataclass per type. ``tag`` is last everywhere; FMT is the struct
# layout of the payload for messages made only of fixed-size fields.

@dataclass(frozen=True)
class Identify:
    tag: int = 0
    TYPE, FMT = T.IDENTIFY, "<"


@dataclass(frozen=True)
class GetStatus:
    tag: int = 0
    TYPE, FMT = T.GET_STATUS, "<"


@dataclass(frozen=True)
class Arm:
    binning: bool = False
    tag: int = 0
    TYPE, FMT = T.ARM, "<?"


@dataclass(frozen=True)
class Disarm:
    tag: int = 0
    TYPE, FMT = T.DISARM, "<"


@dataclass(frozen=True)
class Status:
    state: int                        # DeviceState value (unknown values kept)
    battery: Optional[int]            # percent, None when not battery powered
    battery_low: bool = False         # the device's own judgement
    tag: int = 0
    TYPE, FMT = T.STATUS, "<BB?"


@dataclass(frozen=True)
class Ack:
    request: int                      # type of the acknowledged request
    result: int                       # ErrorCode; 0 means done
    tag: int = 0
    TYPE, FMT = T.ACK, "<BB"


@dataclass(frozen=True)
class ExposureStart:
    frame_id: int
    width: int
    height: int
    binned: bool
    chunk_count: int
    total_bytes: int
    tag: int = 0
    TYPE, FMT = T.EXPOSURE, "<HHH?HI"


@dataclass(frozen=True)
class FrameEnd:
    frame_id: int
    chunk_count: int
    total_bytes: int
    crc32: int                        # CRC-32 of all pixel bytes of the frame
    tag: int = 0
    TYPE, FMT = T.FRAME_END, "<HHII"


@dataclass(frozen=True)
class SensorDesc:
    model: str
    serial: str
    brand: str
    family: str
    size: int
    width: int
    height: int
    bits: int
    supports_binning: bool
    pixel_pitch_nm: int
    firmware: str


@dataclass(frozen=True)
class Ident:
    model: str
    serial: str
    firmware: str
    battery_powered: bool
    sensor: Optional[SensorDesc]      # None: no sensor attached
    protocol: int = VERSION
    tag: int = 0
    TYPE, FMT = T.IDENT, None


@dataclass(frozen=True)
class Chunk:
    frame_id: int
    seq: int
    offset: int
    data: bytes
    tag: int = 0
    TYPE, FMT = T.CHUNK, None


@dataclass(frozen=True)
class ErrorMsg:
    code: int
    request: int = 0                  # type of the request it answers, 0 if none
    text: str = ""
    tag: int = 0
    TYPE, FMT = T.ERROR, None


Message = Union[Identify, GetStatus, Arm, Disarm, Status, Ack, ExposureStart,
                FrameEnd, Ident, Chunk, ErrorMsg]
_BY_TYPE: dict[int, type[Message]] = {
    cls.TYPE: cls for cls in (Identify, GetStatus, Arm, Disarm, Status, Ack,
                              ExposureStart, FrameEnd, Ident, Chunk, ErrorMsg)}


# ---------------------------------------------------------------- encoding

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


def _str(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"string longer than 255 bytes: {s[:20]!r}...")
    return bytes([len(raw)]) + raw


def _pack(msg: Message) -> bytes:
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


def encode(msg: Message) -> bytes:
    """Bytes on the wire for any message object."""
    return encode_frame(msg.TYPE, _pack(msg), msg.tag)


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


# ---------------------------------------------------------------- decoding

class _Malformed(Exception):
    """A payload whose CRC was right but whose content is not v1 (internal)."""


def _check(ok: bool, why: str) -> None:
    if not ok:
        raise _Malformed(why)


def _strings(payload: bytes, pos: int, n: int) -> tuple[list[str], int]:
    out = []
    for _ in range(n):
        end = pos + 1 + payload[pos]          # IndexError past the end: malformed
        _check(end <= len(payload), "string runs past the payload")
        out.append(payload[pos + 1:end].decode("utf-8"))   # UnicodeDecodeError: malformed
        pos = end
    return out, pos


def _parse(mtype: int, tag: int, payload: bytes) -> Message:
    """Payload to message. Trailing bytes are ignored, so v1 readers accept
    fields a later minor revision appends. Raises on malformed content."""
    cls = _BY_TYPE.get(mtype)
    if cls is None:
        raise _Malformed(f"unknown type 0x{mtype:02x}")
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
                out.append(_parse(mtype, tag, payload))
                self.messages += 1
            except (_Malformed, struct.error, IndexError, UnicodeDecodeError):
                self.bad_payloads += 1

    def counters(self) -> dict:
        return {f: getattr(self, f) for f in ("messages", "garbage_bytes", "header_errors",
                                                "oversize", "crc_errors", "bad_payloads", "truncated")}
