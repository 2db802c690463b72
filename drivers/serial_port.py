"""Driver for one sensor interface on a serial port: ``serial:///dev/ttyUSB0``.

It only moves bytes and keeps link state; the wire format is ``serial_wire``
and ``serial_frames``, options and the Device/state mapping ``serial_device``
(SERIAL_PROTOCOL.md, which also tables every event this driver reports).
One reader thread owns the port: it reads, decodes, assembles frames, runs
the timers and is the only caller of ``emit``, so events keep wire order.
``arm``/``disarm`` write a request on the caller's thread and wait for the
reader to hand over the ACK with the same tag.

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
import time
from dataclasses import dataclass, replace
from typing import Optional

import serial

from . import serial_wire as w
from .base import (
    Device,
    DeviceEvent,
    Driver,
    DriverError,
    FrameEvent,
    SensorState,
    StateEvent,
)
from .serial_device import (
    IDLE_STATE,
    battery_percent,
    device_from,
    parse_options,
    parse_url,
    status_state,
)
from .serial_frames import FrameAssembler, FrameError

__all__ = ["DRIVER_CLASS", "SerialDriver", "list_ports", "parse_url"]

log = logging.getLogger(__name__)

_PORT_ERRORS = (serial.SerialException, OSError)


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
class _Pending:
    request: int
    event: threading.Event
    reply: Optional[w.Ack | w.ErrorMsg] = None
    error: Optional[str] = None


class SerialDriver(Driver):
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
        self._pending: dict[int, _Pending] = {}
        self._tag = 0
        # Below: reader thread only.
        self._port: Optional[serial.Serial] = None
        self._decoder = w.FrameDecoder()
        self._probe: Optional[dict] = None     # replies gathered while identifying
        self._probe_deadline = 0.0
        self._status: Optional[w.Status] = None
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
        self._request(w.Arm(binning), "arm")

    def disarm(self, device_id: str) -> None:
        self._connected(device_id)
        self._request(w.Disarm(), "disarm")

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

    def _request(self, msg, what: str) -> w.Ack:
        with self._lock:
            if not self._up:
                raise DriverError(f"{what}: device on {self.path} is not connected")
            tag = self._new_tag()
            pending = self._pending[tag] = _Pending(msg.TYPE, threading.Event())
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
            if isinstance(reply, w.ErrorMsg):
                raise DriverError(f"{what} refused: {w.code_name(reply.code)} {reply.text}".rstrip())
            if reply.result != w.ErrorCode.OK:
                raise DriverError(f"{what} refused: {w.code_name(reply.result)}")
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
            except _PORT_ERRORS as e:
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

    # ------------------------------------------------------------ reader thread

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
        except (*_PORT_ERRORS, ValueError) as e:
            log.debug("cannot open %s: %s", self.path, e)
            self._first_attempt.set()
            return
        with self._write_lock:
            self._port = port
        self._decoder.reset()
        self._probe = {}
        self._probe_deadline = self._last_rx = now
        self._probe_deadline += self.cfg["identify_timeout"]
        self._send(w.Identify())
        self._send(w.GetStatus())

    def _pump(self) -> None:
        port = self._port
        if port is None:        # _run pumps an open port only
            return
        try:
            waiting = port.in_waiting
            data = port.read(min(max(1, waiting), 1 << 16))
        except _PORT_ERRORS as e:
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
            self._send(w.GetStatus())

    def _close_port(self) -> None:
        with self._write_lock:
            port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except _PORT_ERRORS:
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

    # ------------------------------------------------------------ messages

    def _handle(self, msg, now: float) -> None:
        if isinstance(msg, (w.Ack, w.ErrorMsg)) and msg.tag:
            with self._lock:
                pending = self._pending.get(msg.tag)
            if pending is not None and (isinstance(msg, w.ErrorMsg) or msg.request == pending.request):
                if isinstance(msg, w.Ack) and msg.request == w.T.ARM and msg.result == w.ErrorCode.OK:
                    self._state_owed = True     # every arm gets its Ready, even if already armed
                    self._send(w.GetStatus())
                pending.reply = msg
                pending.event.set()
            return
        if self._probe is not None:
            if isinstance(msg, (w.Ident, w.Status)):
                self._probe[type(msg)] = msg
                if len(self._probe) == 2:
                    self._link_up(self._probe[w.Ident], self._probe[w.Status])
            return   # anything else before identification is stale
        if isinstance(msg, w.Ident):
            self._publish(device_from(self.path, msg, self._status), reconnect=False)
            if self._status is not None:    # always, since _link_up set it
                self._report(self._status)
        elif isinstance(msg, w.Status):
            self._on_status(msg)
        elif isinstance(msg, w.ErrorMsg) and msg.code == w.ErrorCode.READOUT_ABORTED:
            # The device gave up its readout (no FRAME_END follows): the frame
            # under way, if its EXPOSURE came at all, is lost; the arm is spent.
            self._reject(f"readout aborted by the device: {msg.text}".rstrip(": "))
        elif isinstance(msg, w.ErrorMsg):
            detail = f"device error {w.code_name(msg.code)}: {msg.text}".rstrip(": ")
            self._emit_state(SensorState.ERROR, detail)
            self._send(w.GetStatus())   # the reply says whether the sensor recovered
        elif isinstance(msg, w.ExposureStart):
            if self._frame is not None:
                self._reject(f"frame {self._frame.start.frame_id} abandoned by a new exposure")
            sensor = self._device.sensor if self._device is not None else None
            self._frame = FrameAssembler(msg, bits=sensor.bits if sensor is not None else 16)
            self._read_started = now
            self._emit_state(SensorState.READING, "")
        elif isinstance(msg, w.Chunk):
            if self._frame is not None:
                self._frame.add(msg)
        elif isinstance(msg, w.FrameEnd):
            self._on_frame_end(msg, now)

    def _on_frame_end(self, msg: w.FrameEnd, now: float) -> None:
        frame, self._frame = self._frame, None
        if frame is None:
            self._reject(f"frame {msg.frame_id} ended but its start was lost")
            return
        try:
            pixels = frame.finish(msg)
        except FrameError as e:
            self._reject(str(e))
            return
        if self._device is None:    # a frame only follows identification, which sets it
            raise RuntimeError(f"frame from {self.path} before identification")
        self.stats["frames"] += 1
        self.emit(FrameEvent(self._device.device_id, pixels, binned=frame.start.binned,
                             read_started=self._read_started, read_ended=now))
        self._send(w.GetStatus())

    def _reject(self, why: str) -> None:
        # Not a hardware fault: the device is fine (and idle, one exposure per
        # arm); the STATUS asked for here reports it idle, and the daemon
        # re-arms for the retake.
        self._frame = None
        self.stats["frames_rejected"] += 1
        self._emit_state(SensorState.ERROR, f"frame rejected: {why}")
        self._send(w.GetStatus())

    def _on_status(self, msg: w.Status) -> None:
        old, self._status = self._status, msg
        if self._frame is not None and msg.state != w.DeviceState.READING:
            self._reject(f"frame {self._frame.start.frame_id} end lost")
        if self._device is None:    # STATUS is handled here only after identification set it
            raise RuntimeError(f"STATUS from {self.path} before identification")
        if old is None or old.battery != msg.battery:
            device = self._device.with_(battery_percent=battery_percent(msg))
            if device != self._device:
                self._publish(device, reconnect=False)
        if (msg.state != w.DeviceState.NO_SENSOR) != (self._device.sensor is not None):
            # Sensor plugged or unplugged: fetch its description and report the
            # state once the device event carries it (the IDENT branch above).
            self._send(w.Identify())
            return
        self._report(msg)

    def _report(self, msg: w.Status) -> None:
        # Every change of the reported state is emitted, idle included: an
        # idle device can take an ARM, which the daemon needs to hear.
        self._emit_state(*status_state(msg))

    def _link_up(self, ident: w.Ident, status: w.Status) -> None:
        self._probe = None
        self._status = status
        self._last_poll = time.monotonic()
        with self._lock:
            self._up = True
        self._publish(device_from(self.path, ident, status), reconnect=True)
        self._last_state = None     # a fresh device needs a state
        self._report(status)
        self._first_attempt.set()

    def _publish(self, device: Device, *, reconnect: bool) -> None:
        """Make ``device`` current and say so: added, changed, or removed+added."""
        with self._lock:
            old, listed = self._device, self._listed
            self._device, self._listed = device, True
        if listed and old is not None and old.device_id != device.device_id:
            self.emit(DeviceEvent("removed", old))   # another device on the same port
            listed = False
        if not listed:
            self.emit(DeviceEvent("added", device))
        elif reconnect or device != old:
            self.emit(DeviceEvent("changed", device))

    def _emit_state(self, state: SensorState, detail: str) -> None:
        owed, self._state_owed = self._state_owed, False
        if self._device is None:
            return
        # After an acknowledged ARM the state is reported even if unchanged
        # (Ready again, LowBattery), but an idle report never twice: a device
        # that acknowledged an ARM and still says IDLE would make the daemon
        # arm again, and again.
        if (state, detail) == self._last_state and (not owed or (state, detail) == IDLE_STATE):
            return
        self._last_state = (state, detail)
        self.emit(StateEvent(self._device.device_id, state, detail))


DRIVER_CLASS = SerialDriver
