"""The vendor's .NET SDK clients as they look on the wire, byte for byte.

What is reproduced (a .NET Framework 4.8 HttpClient, which the SDK samples
target, with System.Net.Http.Formatting and Newtonsoft.Json defaults):

- Request headers: ``Authorization: Basic base64(utf8(user:password))`` as
  ``SetBasicAuthenticationHeader`` sets it, ``Host`` from the BaseAddress
  (``localhost:<port>``; we connect to the loopback address the test server
  binds), ``Connection: Keep-Alive`` on the first request of a connection.
  No User-Agent, Origin, Accept or Accept-Encoding: HttpClient adds none.
- ``PostAsJsonAsync`` / ``PutAsJsonAsync``: compact JSON, PascalCase names in
  C# declaration order, enums as integers, explicit nulls, ``float``/``double``
  with a fraction (``70.0``), UTF-8 without BOM, ``Content-Type:
  application/json; charset=utf-8``, ``Transfer-Encoding: chunked`` (the
  formatter cannot know the length) and ``Expect: 100-continue``.
- Bodies of known length (``StreamContent``, ``MultipartFormDataContent``):
  ``Content-Length`` and ``Expect: 100-continue``.
- ``PostAsync(uri, null)``: ``Content-Length: 0`` and nothing else.
- With ``Expect: 100-continue`` the body waits for the interim 100 or for a
  final answer (then it is never sent and the connection is dropped); like
  .NET it is sent anyway when the server stays silent past a timeout.
- Redirects are never followed: a test sees the 3xx itself.
- Relative URLs resolve against the BaseAddress (which ends in ``/``) as
  ``new Uri(base, relative)`` does.
- ``SdkSubscription`` reads an event stream as the SDK's
  ``*Subscription.WaitForMessages`` does: line by line (``\\n``, ``\\r`` or
  ``\\r\\n``); a line starting ``event: message`` or ``event: heartbeat``
  makes the *next* line the data line, whose JSON starts after the first
  ``data: `` (case-insensitive); every other line is skipped.

The C# types of the SDKs are mirrored as dataclasses (fields in declaration
order, annotated with the C# type) so the same description serializes a
request and checks that an answer would deserialize (`check_type`).
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import http.client
import json
import os
import queue
import select
import socket
import threading
import time
import typing
import uuid
from typing import Any, Optional
from urllib.parse import urljoin, urlsplit

# -- C# types ----------------------------------------------------------------
# ``Any`` stands for C# ``object`` (Context): any JSON value. ``float`` is a
# C# float or double, ``int`` an Int32.
# ``Optional[X]`` is a reference type or a ``Nullable<T>``: null allowed.
# Plain ``int``/``float``/``bool``/``datetime``/enum are non-nullable value
# types: Newtonsoft throws on null for them.


# Modality SDK (DSIO.Modality.Api.Sdk.Types.V1; identical at v1.0 and v1.0-beta)

class BinningMode(enum.IntEnum):
    Unbinned = 0
    Binned2X2 = 1


class DeviceStatus(enum.IntEnum):
    Available = 0
    InUse = 1
    Unavailable = 2
    Error = 3


class BatteryLevel(enum.IntEnum):
    Full = 0
    Good = 1
    Low = 2


class AcquisitionState(enum.IntEnum):
    Error = 0
    LowBattery = 1
    InsufficientStorage = 2
    NoHardware = 3
    NoSensor = 4
    Initializing = 5
    NoAcquisitionInfo = 6
    Ready = 7
    Reading = 8
    Processing = 9
    Storing = 10
    NewImage = 11


class EventAction(enum.IntEnum):
    added = 0
    removed = 1
    changed = 2


@dataclasses.dataclass
class BatteryInfo:
    HasBattery: bool = False
    PercentRemaining: float = 0.0
    Level: BatteryLevel = BatteryLevel.Full


@dataclasses.dataclass
class DeviceInfo:
    DeviceId: Optional[str] = None
    Name: Optional[str] = None
    IconUrl: Optional[str] = None
    HasSensor: bool = False
    Status: DeviceStatus = DeviceStatus.Available
    InterfaceType: Optional[str] = None
    ModelName: Optional[str] = None
    SerialNumber: Optional[str] = None
    Version: Optional[str] = None
    Battery: Optional[BatteryInfo] = None


@dataclasses.dataclass
class SensorInfo:
    ModelName: Optional[str] = None
    SerialNumber: Optional[str] = None
    Brand: Optional[str] = None
    Family: Optional[str] = None
    Size: int = 0
    Width: int = 0
    Height: int = 0
    SupportsBinning: bool = False
    Version: Optional[str] = None


@dataclasses.dataclass
class DeviceEventData:
    Action: EventAction = EventAction.added
    DeviceInfo: Optional[DeviceInfo] = None


@dataclasses.dataclass
class Heartbeat:
    HeartbeatTimeout: int = 0


@dataclasses.dataclass
class AcquisitionSessionInfo:
    DeviceId: Optional[str] = None
    ClientName: Optional[str] = None
    Context: Any = None


@dataclasses.dataclass
class AcquisitionSession:
    SessionId: Optional[str] = None
    DeviceId: Optional[str] = None
    ClientName: Optional[str] = None
    CreatedOn: _dt.datetime = None
    Context: Any = None


@dataclasses.dataclass
class AcquisitionStatus:
    Ready: bool = False
    State: AcquisitionState = AcquisitionState.Error
    LastImageId: Optional[str] = None
    TotalImages: int = 0


@dataclasses.dataclass
class AcquisitionInfo:
    Enable: bool = False
    Rotation: int = 0
    Binning: BinningMode = BinningMode.Unbinned
    ApplyLut: bool = True           # the SDK's initializer: true unless set
    Context: Any = None


@dataclasses.dataclass
class HashInfo:
    Alg: Optional[str] = None
    Hash: Optional[str] = None


@dataclasses.dataclass
class LutInfo:
    """The same six fields in both SDKs (modality and filters, every tag)."""
    Gamma: float = 0.0
    Slope: float = 0.0
    Offset: float = 0.0
    TotalGrays: int = 0
    MinimumGray: int = 0
    MaximumGray: int = 0


@dataclasses.dataclass
class ExposureInfo:
    Min: float = 0.0
    Max: float = 0.0
    Low: float = 0.0
    High: float = 0.0
    Optimum: float = 0.0
    Value: float = 0.0


@dataclasses.dataclass
class ImageInfo:
    Id: Optional[str] = None
    CreatedOn: _dt.datetime = None
    Width: int = 0
    Height: int = 0
    BitsPerPixel: int = 0
    BytesPerPixel: int = 0
    PixelSizeX: float = 0.0
    PixelSizeY: float = 0.0
    PreviewUrl: Optional[str] = None
    ImageUrl: Optional[str] = None
    PixelHash: Optional[HashInfo] = None
    DeviceInfo: Optional[DeviceInfo] = None
    SensorInfo: Optional[SensorInfo] = None
    AcquisitionInfo: Optional[AcquisitionInfo] = None
    LutInfo: Optional[LutInfo] = None
    ExposureInfo: Optional[ExposureInfo] = None


# Filters SDK v1.0 (DSIO.Filters.Api.Sdk.Types.V1 at tag v1.0). Names that
# clash with the modality types carry a ``Filters`` prefix here.

@dataclasses.dataclass
class FiltersAcquisitionInfo:
    Binning: BinningMode = BinningMode.Unbinned


@dataclasses.dataclass
class FiltersImageInfo:
    AcquisitionInfo: Optional[FiltersAcquisitionInfo] = None
    LutInfo: Optional[LutInfo] = None


@dataclasses.dataclass
class ModalitySession:
    SessionId: Optional[str] = None
    ImageId: Optional[str] = None


@dataclasses.dataclass
class ImageResource:
    Id: Optional[str] = None
    MediaType: Optional[str] = None
    Url: Optional[str] = None
    ModalitySession: Optional[ModalitySession] = None
    CreatedOn: _dt.datetime = None
    Expires: _dt.datetime = None
    ImageInfo: Optional[FiltersImageInfo] = None


class EnhancementModes(enum.IntEnum):       # SelectFilterParameters.EnhancementModes
    Smooth = 0
    EdgeLow = 1
    EdgeHigh = 2
    EdgePro = 3


class SupremeTaskNames(enum.IntEnum):       # SupremeFilterParameters.TaskNames
    General = 0
    Endodontic = 1
    Periodontic = 2
    Restorative = 3
    Hygiene = 4


class AETaskNames(enum.IntEnum):            # AEFilterParameters.TaskNames
    General = 0
    Endodontic = 1
    Periodontic = 2
    Restorative = 3


@dataclasses.dataclass
class SelectFilterParameters:
    EnhancementMode: EnhancementModes = EnhancementModes.Smooth


@dataclasses.dataclass
class SupremeFilterParameters:
    Task: SupremeTaskNames = SupremeTaskNames.General
    Sharpness: float = 0.0   # C# float


@dataclasses.dataclass
class AEFilterParameters:
    Task: AETaskNames = AETaskNames.General
    Sharpness: float = 0.0   # C# float


# Filters SDK v1.0-beta: one TaskName enum for Supreme and AE, nullable
# enums, an int Sharpness and a LutInfo in every filter body; its
# ImageResource has no ImageInfo.

class EnhancementMode(enum.IntEnum):
    Smooth = 0
    EdgeLow = 1
    EdgeHigh = 2
    EdgePro = 3


class TaskName(enum.IntEnum):
    General = 0
    Endodontic = 1
    Periodontic = 2
    Restorative = 3
    Hygiene = 4


@dataclasses.dataclass
class BetaImageResource:
    Id: Optional[str] = None
    MediaType: Optional[str] = None
    Url: Optional[str] = None
    ModalitySession: Optional[ModalitySession] = None
    CreatedOn: _dt.datetime = None
    Expires: _dt.datetime = None


@dataclasses.dataclass
class SelectFilterImageParam:
    EnhancementMode: Optional[EnhancementMode] = None
    LutInfo: Optional[LutInfo] = None


@dataclasses.dataclass
class SupremeFilterImageParam:
    Task: Optional[TaskName] = None
    BinningMode: Optional[BinningMode] = None
    Sharpness: int = 0
    LutInfo: Optional[LutInfo] = None


@dataclasses.dataclass
class OmegaFilterImageParam:              # what the beta's AeFilter posts
    Task: Optional[TaskName] = None
    Sharpness: int = 0
    LutInfo: Optional[LutInfo] = None


def lut_info(info: dict) -> LutInfo:
    """The SDK's LutInfo from a camelCase LutInfo dict (as tests/support/images.py has them)."""
    return LutInfo(Gamma=float(info["gamma"]), Slope=float(info["slope"]), Offset=float(info["offset"]),
                   TotalGrays=int(info["totalGrays"]), MinimumGray=int(info["minimumGray"]),
                   MaximumGray=int(info["maximumGray"]))


# -- Newtonsoft.Json, default settings ----------------------------------------

def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _unoptional(tp):
    """(inner type, nullable) of an annotation."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def to_newtonsoft(value: Any, tp: Any = Any) -> Any:
    """A Python value of a mirrored C# type as Newtonsoft would serialize it (a JSON-ready tree)."""
    if value is None:
        return None
    if dataclasses.is_dataclass(value):
        hints = _hints(type(value))
        return {f.name: to_newtonsoft(getattr(value, f.name), hints[f.name])
                for f in dataclasses.fields(value)}
    inner, _ = _unoptional(tp)
    if isinstance(value, enum.IntEnum):
        return int(value)
    if isinstance(value, bool):
        return value
    if inner is float:
        return float(value)     # C# float/double: Newtonsoft writes 70.0, never 70
    if isinstance(value, (_dt.datetime,)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: to_newtonsoft(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_newtonsoft(v) for v in value]
    return value


def newtonsoft_json(value: Any) -> bytes:
    """Formatting.None: no whitespace; UTF-8 without a BOM; non-ASCII kept as is."""
    return json.dumps(to_newtonsoft(value), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _field(obj: dict, name: str):
    """Newtonsoft matches a property name exactly first, then without regard to case."""
    if name in obj:
        return True, obj[name]
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return True, value
    return False, None


# Properties the service leaves out when it has no value, because the spec
# types them as non-nullable objects or strings; Newtonsoft reads an absent
# property as null, which is what these mean (no image yet, no map applied,
# not from a modality session).
ABSENT_MEANS_NULL = {("AcquisitionStatus", "LastImageId"), ("ImageInfo", "LutInfo"),
                     ("ImageResource", "ModalitySession"), ("BetaImageResource", "ModalitySession")}


def check_type(value: Any, tp: Any, where: str = "$", *, require_all: bool = True) -> None:
    """Assert that ``value`` (parsed JSON) would deserialize into the C# type ``tp``.

    Newtonsoft itself leaves a missing property at its default; with
    ``require_all`` (the default) every property of the C# type must be
    present, so a client never silently reads a default the service did not
    mean. A null where C# has a value type fails, as it does in Newtonsoft.
    """
    inner, nullable = _unoptional(tp)
    if value is None:
        assert nullable or inner is Any, f"{where}: null for a non-nullable {getattr(inner, '__name__', inner)}"
        return
    if inner is Any:
        return
    origin = typing.get_origin(inner)
    if origin in (list, typing.List):
        assert isinstance(value, list), f"{where}: expected a JSON array, got {value!r}"
        (item,) = typing.get_args(inner)
        for i, v in enumerate(value):
            check_type(v, item, f"{where}[{i}]", require_all=require_all)
        return
    if dataclasses.is_dataclass(inner):
        assert isinstance(value, dict), f"{where}: expected a {inner.__name__} object, got {value!r}"
        hints = _hints(inner)
        for f in dataclasses.fields(inner):
            present, v = _field(value, f.name)
            if not present:
                assert not require_all or (inner.__name__, f.name) in ABSENT_MEANS_NULL, \
                    f"{where}: {inner.__name__}.{f.name} is missing from {sorted(value)}"
                continue
            check_type(v, hints[f.name], f"{where}.{f.name}", require_all=require_all)
        return
    if isinstance(inner, type) and issubclass(inner, enum.IntEnum):
        if isinstance(value, bool):
            raise AssertionError(f"{where}: {value!r} is not a {inner.__name__}")
        if isinstance(value, int):
            assert value in {m.value for m in inner}, f"{where}: {value} is not a {inner.__name__}"
            return
        assert isinstance(value, str) and value.lower() in {m.name.lower() for m in inner}, \
            f"{where}: {value!r} is not a {inner.__name__} ({', '.join(m.name for m in inner)})"
        return
    if inner is bool:
        assert isinstance(value, bool), f"{where}: expected true/false, got {value!r}"
    elif inner is int:
        assert isinstance(value, int) and not isinstance(value, bool) and -2**31 <= value < 2**31, \
            f"{where}: expected an Int32, got {value!r}"
    elif inner is float:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), \
            f"{where}: expected a number, got {value!r}"
    elif inner is str:
        assert isinstance(value, str), f"{where}: expected a string, got {value!r}"
    elif inner is _dt.datetime:
        assert isinstance(value, str), f"{where}: expected an ISO 8601 date-time, got {value!r}"
        try:
            _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise AssertionError(f"{where}: {value!r} is not an ISO 8601 date-time") from None
    else:
        raise TypeError(f"check_type: no rule for {inner!r}")


def read_as(response: "Response", tp: Any, **kwargs) -> Any:
    """``response.Content.ReadAsAsync<T>()``: a JSON media type and a body that fits ``tp``.

    Returns the parsed JSON (None for an empty body, as ReadAsAsync gives default(T)).
    """
    media = response.media_type
    # Only the JSON formatter's media types are readable (else UnsupportedMediaTypeException).
    assert media in ("application/json", "text/json"), f"ReadAsAsync cannot read {media!r}: {response.body[:200]!r}"
    if not response.body:
        return None
    value = json.loads(response.body.decode(response.charset or "utf-8"))
    check_type(value, tp, **kwargs)
    return value


# -- the wire -----------------------------------------------------------------

@dataclasses.dataclass
class Response:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes
    interim: list = dataclasses.field(default_factory=list)   # 1xx statuses seen
    body_sent: bool = True

    @property
    def media_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def charset(self) -> str | None:
        return self.headers.get_content_charset()

    @property
    def is_success(self) -> bool:
        """HttpResponseMessage.IsSuccessStatusCode (what EnsureSuccessStatusCode demands)."""
        return 200 <= self.status <= 299

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.media_type} {self.body[:300]!r}>"


class DotNetHttpClient:
    """One ``HttpClient`` with a BaseAddress and a Basic Authorization default header.

    ``base_url`` is where the test server really is (``http://127.0.0.1:port/api/.../v1/``);
    the Host header names ``localhost`` as the SDK's BaseAddress does.
    """

    CONTINUE_TIMEOUT = 2.0     # .NET waits 350 ms; generous for a loaded test machine

    def __init__(self, base_url: str, user: str, password: str, *, host: str | None = None,
                 timeout: float = 30.0):
        assert base_url.endswith("/"), "a BaseAddress path ends in '/' or relative URLs lose its last segment"
        self.base_url = base_url
        parts = urlsplit(base_url)
        self.address, self.port = parts.hostname, parts.port or 80
        self.host = host or f"localhost:{self.port}"
        self.timeout = timeout
        token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
        self.authorization = f"Basic {token}"
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        # (head, body as framed on the wire) of every request, for tests that check the bytes.
        self.requests: list[tuple[bytes, bytes]] = []

    # The SDK's calls map onto these.
    def path_of(self, relative: str) -> str:
        """``new Uri(BaseAddress, relative)``, as the request target."""
        url = urljoin(self.base_url, relative)
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def get(self, relative: str) -> Response:
        return self.send("GET", relative)

    def delete(self, relative: str) -> Response:
        return self.send("DELETE", relative)

    def post_as_json(self, relative: str, value: Any) -> Response:
        return self.send("POST", relative, json_body=newtonsoft_json(value))

    def put_as_json(self, relative: str, value: Any) -> Response:
        return self.send("PUT", relative, json_body=newtonsoft_json(value))

    def post_empty(self, relative: str) -> Response:
        """``PostAsync(uri, null)``."""
        return self.send("POST", relative, content_length_zero=True)

    def post_content(self, relative: str, body: bytes, content_type: str) -> Response:
        """``PostAsync`` with a ``StreamContent`` (a seekable stream: its length is known)."""
        return self.send("POST", relative, body=body, content_type=content_type)

    def post_multipart(self, relative: str, parts: list[tuple[str, str, bytes]],
                       boundary: str | None = None) -> Response:
        """``PostAsync`` with a ``MultipartFormDataContent``; parts are (name, content type, data)."""
        body, content_type = multipart_form_data(parts, boundary)
        return self.send("POST", relative, body=body, content_type=content_type)

    def last_request(self) -> tuple[dict, bytes]:
        """The last request's headers (name -> value, in order) and its body without chunk framing."""
        head, body = self.requests[-1]
        lines = head.decode().split("\r\n")[1:-2]
        headers = dict(line.split(": ", 1) for line in lines)
        if headers.get("Transfer-Encoding") == "chunked":
            body = unchunk(body)
        return headers, body

    # -- one request ----------------------------------------------------------
    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        if self._conn is None or self._conn.sock is None:
            if self._conn is not None:
                self._conn.close()
            self._conn = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
            self._conn.connect()
            return self._conn, True
        return self._conn, False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(self, method: str, relative: str, *, json_body: bytes | None = None,
             body: bytes | None = None, content_type: str | None = None,
             content_length_zero: bool = False) -> Response:
        with self._lock:
            conn, fresh = self._connection()
            args = (method, relative, json_body, body, content_type, content_length_zero)
            try:
                return self._send(conn, fresh, *args)
            except (ConnectionError, http.client.BadStatusLine):
                if fresh:
                    raise
                # A kept-alive connection the server had closed: .NET retries once on a new one.
                self.close()
                conn, fresh = self._connection()
                return self._send(conn, fresh, *args)

    def _send(self, conn, fresh, method, relative, json_body, body, content_type, content_length_zero):
        headers: list[tuple[str, str]] = [("Authorization", self.authorization)]
        payload = None
        if json_body is not None:
            headers.append(("Content-Type", "application/json; charset=utf-8"))
        elif content_type is not None:
            headers.append(("Content-Type", content_type))
        headers.append(("Host", self.host))
        if json_body is not None:
            headers += [("Transfer-Encoding", "chunked"), ("Expect", "100-continue")]
            payload = f"{len(json_body):X}\r\n".encode() + json_body + b"\r\n0\r\n\r\n"
        elif body is not None:
            headers += [("Content-Length", str(len(body)))]
            if body:
                headers.append(("Expect", "100-continue"))
            payload = body
        elif content_length_zero:
            headers.append(("Content-Length", "0"))
        if fresh:
            headers.append(("Connection", "Keep-Alive"))

        target = self.path_of(relative)
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for key, value in headers:
            conn.putheader(key, value)
        head = (f"{method} {target} HTTP/1.1\r\n".encode()
                + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n")
        self.requests.append((head, payload or b""))
        conn.endheaders()

        interim: list[int] = []
        body_sent = True
        if payload:
            if ("Expect", "100-continue") in headers:
                answer = self._await_continue(conn.sock)
                if answer is not None:
                    interim.append(answer)
                    conn.send(payload)
                elif self._final_waiting(conn.sock):
                    body_sent = False       # answered before the body: never send it
                else:
                    conn.send(payload)      # silent server: .NET sends the body after its timeout
            else:
                conn.send(payload)
        response = conn.getresponse()
        data = response.read()
        result = Response(response.status, response.reason, response.headers, data, interim, body_sent)
        if not body_sent or response.will_close:
            self.close()
        return result

    def _await_continue(self, sock: socket.socket) -> int | None:
        """Consume an interim ``HTTP/1.x 100`` response if one arrives in time; its status, or None."""
        deadline = time.monotonic() + self.CONTINUE_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([sock], [], [], left)
            if not readable:
                return None
            peek = sock.recv(4096, socket.MSG_PEEK)
            if not peek:
                return None
            if not peek.startswith((b"HTTP/1.1 100", b"HTTP/1.0 100")):
                return None         # a final answer: leave it for getresponse()
            end = peek.find(b"\r\n\r\n")
            if end < 0:
                time.sleep(0.005)   # the rest of the interim head is on its way
                continue
            need = end + 4
            while need:
                need -= len(sock.recv(need))
            return 100

    @staticmethod
    def _final_waiting(sock: socket.socket) -> bool:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and bool(sock.recv(1, socket.MSG_PEEK))

    # -- subscriptions ----------------------------------------------------------
    def subscribe(self, relative: str, types: dict[str, Any] | None = None) -> "SdkSubscription":
        """``GetStreamAsync`` on a dedicated HttpClient with the same BaseAddress and Authorization."""
        return SdkSubscription(self, relative, types or {})


def unchunk(data: bytes) -> bytes:
    out, rest = bytearray(), data
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        rest = rest[size + 2:]


def multipart_form_data(parts: list[tuple[str, str, bytes]], boundary: str | None = None) -> tuple[bytes, str]:
    """A MultipartFormDataContent body and its Content-Type header.

    The boundary is a GUID, quoted in the header; each part carries the
    Content-Type its HttpContent had, then ``Content-Disposition: form-data;
    name=<name>`` with the name unquoted (as ``Add(content, name)`` writes it).
    """
    boundary = boundary or str(uuid.uuid4())
    out = bytearray(f"--{boundary}\r\n".encode())
    for index, (name, content_type, data) in enumerate(parts):
        if index:
            out += f"\r\n--{boundary}\r\n".encode()
        out += f"Content-Type: {content_type}\r\n".encode()
        out += f"Content-Disposition: form-data; name={name}\r\n\r\n".encode()
        out += data
    out += f"\r\n--{boundary}--\r\n".encode()
    return bytes(out), f'multipart/form-data; boundary="{boundary}"'


STRING_CONTENT = "text/plain; charset=utf-8"    # what ``new StringContent(text)`` declares


class SdkSubscription:
    """An SDK subscription: the stream opened, a thread reading it as WaitForMessages does.

    ``status`` is the HTTP status (GetStreamAsync throws unless it is 2xx);
    ``events`` receives (``"message"`` | ``"heartbeat"``, parsed JSON). Each
    data object is checked with `check_type` against ``types[kind]`` when
    given; a failure is queued as (``"error"``, AssertionError), as the SDK
    would raise OnError.
    """

    def __init__(self, client: DotNetHttpClient, relative: str, types: dict[str, Any]):
        self.types = types
        self.lines: list[str] = []          # every line read, for failure messages
        self.events: queue.Queue = queue.Queue()
        self.ended = threading.Event()
        self._conn = http.client.HTTPConnection(client.address, client.port, timeout=client.timeout)
        self._conn.connect()
        # http.client hands the socket to the response (Connection: close) and
        # drops its own reference; a duplicate lets close() shut the stream down.
        self._sock = socket.socket(fileno=os.dup(self._conn.sock.fileno()))
        target = client.path_of(relative)
        self._conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        for key, value in (("Authorization", client.authorization), ("Host", client.host),
                           ("Connection", "Keep-Alive")):
            self._conn.putheader(key, value)
        self._conn.endheaders()
        self._response = self._conn.getresponse()
        self.status = self._response.status
        self.headers = self._response.headers
        if 200 <= self.status <= 299:
            self.body = b""
            threading.Thread(target=self._read, name="sdk-subscription", daemon=True).start()
        else:
            self.body = self._response.read()
            self.ended.set()

    def _lines(self):
        """StreamReader.ReadLine: a line ends at \\n, \\r or \\r\\n; None at the end of the stream."""
        buf = b""
        first = True
        while True:
            cut = -1
            for i, byte in enumerate(buf):
                if byte in (0x0A, 0x0D):
                    cut = i
                    break
            if cut >= 0 and not (buf[cut] == 0x0D and cut == len(buf) - 1):
                line, rest = buf[:cut], buf[cut + 1:]
                if buf[cut] == 0x0D and rest.startswith(b"\n"):
                    rest = rest[1:]
                buf = rest
                text = line.decode("utf-8-sig" if first else "utf-8", errors="replace")
                first = False
                self.lines.append(text)
                yield text
                continue
            more = self._response.read1(65536)
            if not more:
                if buf:
                    text = buf.decode("utf-8", errors="replace")
                    self.lines.append(text)
                    yield text
                return
            buf += more

    def _read(self):
        try:
            lines = self._lines()
            for line in lines:
                if not line:
                    continue
                if line.startswith("event: message"):
                    kind = "message"
                elif line.startswith("event: heartbeat"):
                    kind = "heartbeat"
                else:
                    continue
                data_line = next(lines, None)
                if data_line is None:
                    break
                at = data_line.lower().find("data: ")
                if at < 0:
                    continue        # the SDK drops the event silently
                try:
                    value = json.loads(data_line[at + len("data: "):])
                    if kind in self.types:
                        check_type(value, self.types[kind], f"{kind} event")
                except (ValueError, AssertionError) as err:
                    self.events.put(("error", err))
                    continue
                self.events.put((kind, value))
        except Exception:
            pass    # the connection was closed under us
        finally:
            self.ended.set()
            self.events.put(("<end>", None))

    def next(self, timeout: float = 5.0, *, heartbeats: bool = False):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event within {timeout} s; lines so far: {self.lines[-20:]}")
            try:
                kind, value = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if kind == "error":
                raise AssertionError(f"the SDK could not read an event: {value}")
            if kind == "heartbeat" and not heartbeats:
                continue
            return kind, value

    def until(self, predicate, timeout: float = 10.0, *, heartbeats: bool = False) -> list:
        """Events up to and including the first (kind, data) that satisfies ``predicate``."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            kind, value = self.next(max(deadline - time.monotonic(), 0.001), heartbeats=heartbeats)
            if kind == "<end>":
                raise AssertionError(f"the stream ended before the awaited event; saw {seen}")
            seen.append((kind, value))
            if predicate(kind, value):
                return seen

    def close(self) -> None:
        """``Stop()``: the SDK closes the stream; the server sees the client leave."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self.ended.wait(5)
        self._response.close()
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
