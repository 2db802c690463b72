"""The per-device protocol session of the ``serial://`` driver: messages in, events out.

``DeviceSession`` is a mixin of ``serial_port.SerialDriver``: what the
reader thread does with each decoded message once the port is open. It
routes ACKs to the waiting request, identifies the device (IDENT + STATUS,
then ``added``/``changed``/``removed``), follows its STATUS into states,
and turns EXPOSURE, CHUNKs and FRAME_END into one verified frame or a
rejection (``serial_frames.FrameAssembler``). Separate from the driver
(its API and requests) and ``serial_link`` (opening, polling, reconnecting
the port) because this is the protocol's meaning, the same whatever
happens to the cable; the state it uses is the driver's, set up in its
``__init__``. SERIAL_PROTOCOL.md tables every event.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Optional

from . import serial_messages as m
from .base import Device, DeviceEvent, Emit, FrameEvent, SensorState, StateEvent
from .serial_device import IDLE_STATE, battery_percent, device_from, status_state
from .serial_frames import FrameAssembler, FrameError

if TYPE_CHECKING:
    from .serial_port import Pending


class DeviceSession:
    """The message handling of ``SerialDriver``; runs on its reader thread only."""

    # The driver's state (serial_port.SerialDriver.__init__ says what guards what).
    path: str
    emit: Emit
    stats: dict
    _lock: threading.Lock
    _first_attempt: threading.Event
    _device: Optional[Device]
    _listed: bool
    _up: bool
    _pending: dict[int, Pending]
    _probe: Optional[dict]
    _status: Optional[m.Status]
    _frame: Optional[FrameAssembler]
    _read_started: float
    _last_state: Optional[tuple]
    _state_owed: bool
    _last_poll: float

    if TYPE_CHECKING:
        def _send(self, msg) -> None: ...   # serial_port.SerialDriver

    def _handle(self, msg, now: float) -> None:
        if isinstance(msg, (m.Ack, m.ErrorMsg)) and msg.tag:
            with self._lock:
                pending = self._pending.get(msg.tag)
            if pending is not None and (isinstance(msg, m.ErrorMsg) or msg.request == pending.request):
                if isinstance(msg, m.Ack) and msg.request == m.T.ARM and msg.result == m.ErrorCode.OK:
                    self._state_owed = True     # every arm gets its Ready, even if already armed
                    self._send(m.GetStatus())
                pending.reply = msg
                pending.event.set()
            return
        if self._probe is not None:
            if isinstance(msg, (m.Ident, m.Status)):
                self._probe[type(msg)] = msg
                if len(self._probe) == 2:
                    self._link_up(self._probe[m.Ident], self._probe[m.Status])
            return   # anything else before identification is stale
        if isinstance(msg, m.Ident):
            self._publish(device_from(self.path, msg, self._status), reconnect=False)
            if self._status is not None:    # always, since _link_up set it
                self._report(self._status)
        elif isinstance(msg, m.Status):
            self._on_status(msg)
        elif isinstance(msg, m.ErrorMsg) and msg.code == m.ErrorCode.READOUT_ABORTED:
            # The device gave up its readout (no FRAME_END follows): the frame
            # under way, if its EXPOSURE came at all, is lost; the arm is spent.
            self._reject(f"readout aborted by the device: {msg.text}".rstrip(": "))
        elif isinstance(msg, m.ErrorMsg):
            detail = f"device error {m.code_name(msg.code)}: {msg.text}".rstrip(": ")
            self._emit_state(SensorState.ERROR, detail)
            self._send(m.GetStatus())   # the reply says whether the sensor recovered
        elif isinstance(msg, m.ExposureStart):
            if self._frame is not None:
                self._reject(f"frame {self._frame.start.frame_id} abandoned by a new exposure")
            sensor = self._device.sensor if self._device is not None else None
            self._frame = FrameAssembler(msg, bits=sensor.bits if sensor is not None else 16)
            self._read_started = now
            self._emit_state(SensorState.READING, "")
        elif isinstance(msg, m.Chunk):
            if self._frame is not None:
                self._frame.add(msg)
        elif isinstance(msg, m.FrameEnd):
            self._on_frame_end(msg, now)

    def _on_frame_end(self, msg: m.FrameEnd, now: float) -> None:
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
        self._send(m.GetStatus())

    def _reject(self, why: str) -> None:
        # Not a hardware fault: the device is fine (and idle, one exposure per
        # arm); the STATUS asked for here reports it idle, and the daemon
        # re-arms for the retake.
        self._frame = None
        self.stats["frames_rejected"] += 1
        self._emit_state(SensorState.ERROR, f"frame rejected: {why}")
        self._send(m.GetStatus())

    def _on_status(self, msg: m.Status) -> None:
        old, self._status = self._status, msg
        if self._frame is not None and msg.state != m.DeviceState.READING:
            self._reject(f"frame {self._frame.start.frame_id} end lost")
        if self._device is None:    # STATUS is handled here only after identification set it
            raise RuntimeError(f"STATUS from {self.path} before identification")
        if old is None or old.battery != msg.battery:
            device = self._device.with_(battery_percent=battery_percent(msg))
            if device != self._device:
                self._publish(device, reconnect=False)
        if (msg.state != m.DeviceState.NO_SENSOR) != (self._device.sensor is not None):
            # Sensor plugged or unplugged: fetch its description and report the
            # state once the device event carries it (the IDENT branch above).
            self._send(m.Identify())
            return
        self._report(msg)

    def _report(self, msg: m.Status) -> None:
        # Every change of the reported state is emitted, idle included: an
        # idle device can take an ARM, which the daemon needs to hear.
        self._emit_state(*status_state(msg))

    def _link_up(self, ident: m.Ident, status: m.Status) -> None:
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
