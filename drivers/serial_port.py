"""Driver for one sensor interface on a serial port: ``serial:///dev/ttyUSB0``.

This module is the driver's face: its API, its state, and the requests
(``arm``/``disarm``) matched to their ACKs by tag. Its reader thread is
``serial_link`` (opening, reading, polling, reconnecting the port) and
``serial_session`` (what each message means: identification, states,
frames), both mixins of ``SerialDriver`` sharing the state set up here.
The wire format is ``serial_messages``, ``serial_payload``, ``serial_wire``
and ``serial_frames``, options and the Device/state mapping
``serial_device`` (SERIAL_PROTOCOL.md, which also tables every event this
driver reports). One reader thread owns the port: it reads, decodes,
assembles frames, runs the timers and is the only caller of ``emit``, so
events keep wire order. ``arm``/``disarm`` write a request on the caller's
thread and wait for the reader to hand over the ACK with the same tag.

A port error, or no byte for ``silence_timeout`` (mid-frame, or while idle
as STATUS is polled every ``poll_interval``), means the cable is gone: the
partial frame is dropped, NoHardware reported, and the port reopened every
``retry_interval``; ``removal_grace`` without the port path: ``removed``.
"""
from __future__ import annotations

import glob
import logging
import os
import stat
import threading
from dataclasses import dataclass, replace
from typing import Optional

import serial

from . import serial_messages as m
from . import serial_wire as w
from .base import Device, Driver, DriverError
from .serial_device import parse_options, parse_url
from .serial_frames import FrameAssembler
from .serial_link import PORT_ERRORS, PortLink
from .serial_session import DeviceSession

__all__ = ["DRIVER_CLASS", "SerialDriver", "list_ports"]

log = logging.getLogger(__name__)


def list_ports(pattern: str = "/dev/ttyUSB*") -> list[str]:
    """Existing character-device paths matching ``pattern`` (symlinks followed)."""
    out = []
    for path in sorted(glob.glob(pattern)):
        try:
            if stat.S_ISCHR(os.stat(path).st_mode):
                out.append(path)
        except OSError:
            pass   # vanished or dangling link
    return out


@dataclass
class Pending:
    """A request waiting for its ACK (or ERROR) from the reader thread."""
    request: int
    event: threading.Event
    reply: Optional[m.Ack | m.ErrorMsg] = None
    error: Optional[str] = None


class SerialDriver(PortLink, DeviceSession, Driver):
    """One device on one serial port; see the module docstring."""

    def __init__(self, url: str, *, emit, options: Optional[dict] = None):
        super().__init__(url, emit=emit, options=options)
        self.path, url_options = parse_url(url)
        self.cfg = parse_options({**url_options, **self.options})
        self._lock = threading.Lock()          # _device, _listed, _up, _pending, _tag
        self._write_lock = threading.Lock()    # _port writes and close
        self._stop = threading.Event()
        self._first_attempt = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._device: Optional[Device] = None
        self._listed = False                   # "added" sent, "removed" not yet
        self._up = False
        self._pending: dict[int, Pending] = {}
        self._tag = 0
        # Below: reader thread only.
        self._port: Optional[serial.Serial] = None
        self._decoder = w.FrameDecoder()
        self._probe: Optional[dict] = None     # replies gathered while identifying
        self._probe_deadline = 0.0
        self._status: Optional[m.Status] = None
        self._frame: Optional[FrameAssembler] = None
        self._read_started = 0.0
        self._last_state: Optional[tuple] = None   # last (state, detail) emitted
        self._state_owed = False               # an ARM was acknowledged: report the next state
        self._last_rx = self._last_poll = self._next_open = 0.0
        self._gone_since: Optional[float] = None
        self.stats = {"frames": 0, "frames_rejected": 0, "link_losses": 0}

    # ------------------------------------------------------------ public API

    def start(self) -> None:
        if self._stop.is_set():
            raise DriverError("driver is closed")
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"serial {self.path}", daemon=True)
        self._thread.start()
        # Let devices() be meaningful on return, without failing start on a missing sensor.
        self._first_attempt.wait(self.cfg["identify_timeout"] + 1.0)

    def close(self) -> None:
        self._stop.set()
        port = self._port
        if port is not None:
            try:
                port.cancel_read()   # wake the reader now rather than at its read timeout
            except Exception:
                pass
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self._fail_pending("driver closed")

    def devices(self) -> list[Device]:
        with self._lock:
            return [self._device] if self._listed and self._device else []

    def arm(self, device_id: str, *, binning: bool = False) -> None:
        """Arm for one exposure; Ready (or what blocks it) follows as a StateEvent.

        As in sim://, binning on a sensor without it is ignored: frames come unbinned.
        """
        device = self._connected(device_id)
        binning = bool(binning) and device.sensor is not None and device.sensor.supports_binning
        self._request(m.Arm(binning), "arm")

    def disarm(self, device_id: str) -> None:
        self._connected(device_id)
        self._request(m.Disarm(), "disarm")

    def decoder_counters(self) -> dict:
        return self._decoder.counters()

    # ------------------------------------------------------------ requests

    def _connected(self, device_id: str) -> Device:
        with self._lock:
            device = self._device if self._listed else None
            if device is None or device.device_id != device_id:
                raise DriverError(f"unknown device {device_id!r} on {self.path}")
            if not self._up:
                raise DriverError(f"device {device_id} is not connected")
            return device

    def _request(self, msg, what: str) -> m.Ack:
        with self._lock:
            if not self._up:
                raise DriverError(f"{what}: device on {self.path} is not connected")
            tag = self._new_tag()
            pending = self._pending[tag] = Pending(msg.TYPE, threading.Event())
        try:
            if not self._write(w.encode(replace(msg, tag=tag))):
                raise DriverError(f"{what}: write to {self.path} failed")
            if not pending.event.wait(self.cfg["ack_timeout"]):
                raise DriverError(f"{what}: no acknowledgement within {self.cfg['ack_timeout']} s")
            if pending.error:
                raise DriverError(f"{what}: {pending.error}")
            reply = pending.reply
            if reply is None:       # the event is set with a reply or an error
                raise DriverError(f"{what}: no reply")
            if isinstance(reply, m.ErrorMsg):
                raise DriverError(f"{what} refused: {m.code_name(reply.code)} {reply.text}".rstrip())
            if reply.result != m.ErrorCode.OK:
                raise DriverError(f"{what} refused: {m.code_name(reply.result)}")
            return reply
        finally:
            with self._lock:
                self._pending.pop(tag, None)

    def _new_tag(self) -> int:
        # Tags 1..255 match replies to requests; 0 marks unsolicited messages.
        for _ in range(255):
            self._tag = self._tag % 255 + 1
            if self._tag not in self._pending:
                return self._tag
        raise DriverError("too many requests in flight")

    def _write(self, data: bytes) -> bool:
        with self._write_lock:
            port = self._port
            if port is None:
                return False
            try:
                port.write(data)
                return True
            except PORT_ERRORS as e:
                log.debug("write to %s failed: %s", self.path, e)
                return False   # the reader thread notices the loss on its next read

    def _send(self, msg) -> None:
        with self._lock:
            tag = self._new_tag()
        self._write(w.encode(replace(msg, tag=tag)))

    def _fail_pending(self, why: str) -> None:
        with self._lock:
            for p in self._pending.values():
                p.error = why
                p.event.set()



DRIVER_CLASS = SerialDriver
