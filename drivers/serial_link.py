"""The port of the ``serial://`` driver: opening, reading, polling, reconnecting.

``PortLink`` is a mixin of ``serial_port.SerialDriver``: the body of its
reader thread. It opens the port (exclusively) and asks the device who it
is, feeds what it reads to the decoder and each message to the session
(``serial_session``), polls STATUS when idle, and treats a port error or a
silent line as the cable gone: the partial frame is dropped, NoHardware
reported, the port reopened every ``retry_interval``, and the device
``removed`` once its port path stays away for ``removal_grace``. Separate
from the driver (API, requests) and the session (what the messages mean)
because this is what follows the cable, not the protocol; the state it
uses is the driver's, set up in its ``__init__``.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Optional

import serial

from . import serial_messages as m
from . import serial_wire as w
from .base import Device, DeviceEvent, Emit, SensorState
from .serial_frames import FrameAssembler

log = logging.getLogger("sensord.drivers.serial_port")    # one logger for the whole driver

PORT_ERRORS = (serial.SerialException, OSError)


class PortLink:
    """The reader thread of ``SerialDriver``: the only owner of its open port."""

    # The driver's state (serial_port.SerialDriver.__init__ says what guards what).
    path: str
    cfg: dict
    emit: Emit
    stats: dict
    _lock: threading.Lock
    _write_lock: threading.Lock
    _stop: threading.Event
    _first_attempt: threading.Event
    _device: Optional[Device]
    _listed: bool
    _up: bool
    _port: Optional[serial.Serial]
    _decoder: w.FrameDecoder
    _probe: Optional[dict]
    _probe_deadline: float
    _frame: Optional[FrameAssembler]
    _last_rx: float
    _last_poll: float
    _next_open: float
    _gone_since: Optional[float]

    if TYPE_CHECKING:
        def _send(self, msg) -> None: ...                   # serial_port.SerialDriver
        def _fail_pending(self, why: str) -> None: ...     # serial_port.SerialDriver
        def _handle(self, msg, now: float) -> None: ...    # serial_session.DeviceSession
        def _emit_state(self, state: SensorState, detail: str) -> None: ...   # serial_session

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._port is None:
                    self._try_open()
                else:
                    self._pump()
            except Exception as e:   # a bug (ours or in emit) must not end the thread
                log.exception("serial driver %s", self.path)
                self._link_lost(f"driver error: {e!r}")
        self._close_port()
        self._fail_pending("driver closed")
        self._first_attempt.set()

    def _try_open(self) -> None:
        now = time.monotonic()
        if now < self._next_open:
            self._stop.wait(min(self._next_open - now, 0.05))
            return
        self._next_open = now + self.cfg["retry_interval"]
        if not os.path.exists(self.path):
            self._gone_since = self._gone_since or now
            if self._listed and now - self._gone_since >= self.cfg["removal_grace"]:
                with self._lock:
                    device, self._listed, self._device = self._device, False, None
                if device is not None:      # listed implies a device
                    self.emit(DeviceEvent("removed", device))
            self._first_attempt.set()
            return
        self._gone_since = None
        try:
            port = serial.Serial(self.path, int(self.cfg["baudrate"]), timeout=self.cfg["read_timeout"],
                                 write_timeout=self.cfg["ack_timeout"], exclusive=True)
        except (*PORT_ERRORS, ValueError) as e:
            log.debug("cannot open %s: %s", self.path, e)
            self._first_attempt.set()
            return
        with self._write_lock:
            self._port = port
        self._decoder.reset()
        self._probe = {}
        self._probe_deadline = self._last_rx = now
        self._probe_deadline += self.cfg["identify_timeout"]
        self._send(m.Identify())
        self._send(m.GetStatus())

    def _pump(self) -> None:
        port = self._port
        if port is None:        # _run pumps an open port only
            return
        try:
            waiting = port.in_waiting
            data = port.read(min(max(1, waiting), 1 << 16))
        except PORT_ERRORS as e:
            self._link_lost(f"port error: {e}")
            return
        now = time.monotonic()
        if data:
            self._last_rx = now
            messages = self._decoder.feed(data)
        elif self._decoder.pending and now - self._last_rx > self.cfg["stall_timeout"]:
            messages = self._decoder.drop_stalled()
        else:
            messages = []
        for msg in messages:
            if self._port is None:
                return
            self._handle(msg, now)
        if self._port is not None:
            self._check_timers(now)

    def _check_timers(self, now: float) -> None:
        if self._probe is not None:
            if now > self._probe_deadline:
                log.debug("no identification from %s", self.path)
                self._close_port()
                self._first_attempt.set()
            return
        silent = now - self._last_rx
        if silent > self.cfg["silence_timeout"] and (self._frame or self.cfg["poll_interval"] > 0):
            where = "while reading a frame" if self._frame else "from the device"
            self._link_lost(f"no data for {silent:.1f} s {where}")
        elif not self._frame and self.cfg["poll_interval"] > 0 \
                and now - self._last_poll >= self.cfg["poll_interval"]:
            self._last_poll = now
            self._send(m.GetStatus())

    def _close_port(self) -> None:
        with self._write_lock:
            port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except PORT_ERRORS:
                pass
        self._probe = None
        self._frame = None   # a partial frame never survives its link
        self._next_open = time.monotonic() + self.cfg["retry_interval"]

    def _link_lost(self, why: str) -> None:
        log.info("serial link %s lost: %s", self.path, why)
        was_up = self._up
        if self._frame is not None:
            self.stats["frames_rejected"] += 1
        self._close_port()
        with self._lock:
            self._up = False
        self._fail_pending(f"disconnected ({why})")
        if was_up:
            self.stats["link_losses"] += 1
            self._emit_state(SensorState.NO_HARDWARE, why)
