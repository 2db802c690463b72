"""Serial sensor wire format, version 1: the message catalogue, no I/O.

Every message the host and the device exchange, as one frozen dataclass per
type, with the numbers they carry (types, device states, error codes) and
the size bounds the protocol sets. Separate from ``serial_payload`` (these
objects as payload bytes and back) and ``serial_wire`` (framing, CRCs, the
stream decoder) because this is what the driver and the tests talk in: they
handle messages, not bytes. The layout is ``SERIAL_PROTOCOL.md``.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Optional, Union

VERSION = 1                          # the header's version byte, IDENT's protocol
MAX_CHUNK_DATA = 4096
CHUNK_HEAD = struct.Struct("<HHI")   # frame_id, seq, offset
MAX_PAYLOAD = CHUNK_HEAD.size + MAX_CHUNK_DATA   # a full CHUNK is the largest message
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
BY_TYPE: dict[int, type[Message]] = {
    cls.TYPE: cls for cls in (Identify, GetStatus, Arm, Disarm, Status, Ack,
                              ExposureStart, FrameEnd, Ident, Chunk, ErrorMsg)}
