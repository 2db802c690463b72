"""Simulated sensors: the default test target, as ``loop://`` is pyserial's.

URL syntax (parsed and documented in :mod:`drivers.sim_catalog`)::

    sim://                                  supreme2, velocity1w, select0
    sim://?devices=N                        the first N of the default order
    sim://?models=supreme2,velocity1w       exactly these (w: wireless)
    ...&seed=N&dead_pixels=N&time_scale=F   time_scale 0.01: 100x faster
    ...&busy_init=1                         arm() while Initializing: BUSY

States and events
-----------------
Fault states (NoHardware, NoSensor, LowBattery, Error) are always reported.
The progress states (Initializing, Ready, Reading) describe the way to an
exposure. A device that is initialized but not armed is *idle*. It sends
the *idle report*, ``Initializing`` with detail ``idle`` (drivers/base.py
``IDLE_DETAIL``), at the end of every warm-up that leaves it unarmed (so
the daemon does not show a warm device as Initializing), and when it owes
the daemon word that it can be armed: after it refused an ``arm()`` or lost
an arm on its own (fault, recalibration, a sensor pulled with
``keep_arm=False``). Ready instead if it holds an arm. After a frame or a
disarm it reports nothing. Sequences (``idle``: that report)::

    start          added, Initializing, idle  per device; idle after ~0.6 s
    arm            Initializing, Ready        ~0.3 s; just Ready if already Ready;
                                              during start-up Ready when it ends;
                                              no sensor: NoSensor + DriverError;
                                              low battery: LowBattery, Ready later
                   DriverError, then idle     refused (BUSY): busy_init while
                   (or Ready if armed)        Initializing (idle when the warm-up
                                              ends), busy_next_arm (~0.3 s later),
                                              a fault (after clear_fault)
    disarm         nothing                    back to idle
    expose         Reading, FrameEvent        0.3-0.9 s readout, then idle and
                                              unarmed: one exposure per arm (an
                                              arm() during Reading: Initializing,
                                              Ready follow the frame)
    unplug_sensor  changed, NoSensor          a frame being read is discarded and
                                              the arm kept for the next sensor
                                              (keep_arm=False: the arm is lost)
    plug_sensor    changed, Initializing      then Ready if armed, else idle
    unplug_device  [NoHardware,] removed      NoHardware if armed or reading; a
                                              frame being read is discarded, the
                                              arm is lost (power cycle)
    plug_device    added, Initializing, idle  back unarmed
    set_battery    changed [, LowBattery]     below 10 %: exposures refused (a
                                              readout under way finishes first)
                   changed, Initializing      back to >= 10 %: then Ready if armed, else idle
    set_fault      Error                      the sensor fails: a frame being read
                                              is lost, the arm too; arm and expose
                                              refused until clear_fault
    clear_fault    Initializing, idle         ~0.6 s warm-up (NoSensor/LowBattery
                                              instead if that is what remains)
    recalibrate    Initializing, idle         ~0.6 s; the arm is lost
    busy_next_arm  nothing                    the next ``count`` arms: BUSY
    restart        removed, added,            every device of the driver, as
                   Initializing, idle         after a driver restart: no state
                                              in between, all arms lost

Arming a sensor without binning support with ``binning=True`` is accepted;
its frames come unbinned with ``FrameEvent.binned`` False. A sensor that
supports binning bins 2x2 itself: its frames are (height // 2, width // 2)
with ``binned`` True. Misuse that depends on state raises DriverError; bad
argument values raise ValueError. ``disarm`` of an unplugged device is
allowed (there is nothing to do).

The daemon drives these through ``POST /api/sensord/v1/devices/{id}/{action}``
(daemon/api/admin.py): expose, unplug, plug, unplug-sensor, plug-sensor,
battery, fault, clear-fault, recalibrate, busy-next-arm, restart.

Threads: one worker thread runs the timers and is the only caller of
``emit``; events are queued under the driver lock in the order the state
changed and delivered without any lock held. Frames are rendered on that
thread too (~0.05-0.1 s for a size 2 sensor), so an event may wait as long.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import sim_catalog as cat
from .base import (
    IDLE_DETAIL,
    Device,
    DeviceEvent,
    Driver,
    DriverError,
    Event,
    FrameEvent,
    SensorState,
    StateEvent,
)
from .phantom import phantom

log = logging.getLogger(__name__)

POWER_UP_S = 0.6            # sensor start-up after power-on or plug-in
ARM_S = 0.3                 # re-initialisation of a powered sensor for an exposure
LOW_BATTERY_PERCENT = 10.0  # below this the device refuses to expose


@dataclass
class _Slot:
    """Mutable state of one simulated device (guarded by the driver lock)."""
    spec: cat.DeviceSpec
    device: Device
    model: cat.SensorModel     # attached sensor's model, or the last one unplugged
    present: bool = False
    phase: str = "off"         # off, nosensor, low, fault, init, idle, ready, reading
    armed: bool = False
    owed: bool = False         # refused or lost an arm: report when it can take one
    busy_arms: int = 0         # the next arms refused with BUSY
    fault: str = ""            # the Error detail while phase is "fault"
    binning: bool = False
    token: int = 0             # bumped on each phase change: stale timers see it
    exposures: int = 0
    pixels: Optional[np.ndarray] = None


class SimDriver(Driver):
    """Simulated devices behind a ``sim://`` URL (see the module docstring)."""

    def __init__(self, url, *, emit, options=None) -> None:
        super().__init__(url, emit=emit, options=options)
        self.config = cat.parse_url(url, self.options)
        self._cv = threading.Condition()
        self._slots: dict[str, _Slot] = {}
        for spec in self.config.devices:
            sensor = cat.make_sensor(spec.sensor, cat.sensor_serial(spec.sensor, spec.serial))
            battery = cat.DEFAULT_BATTERY_PERCENT if spec.interface.battery else None
            device = cat.describe(self.config.base_url, spec, sensor, battery)
            self._slots[device.device_id] = _Slot(spec, device, spec.sensor)
        self._timers: list = []            # heap of (due, seq, fn, args)
        self._events: deque[Event] = deque()
        self._pushed = self._delivered = 0     # for flush()
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    # --- Driver interface ---------------------------------------------------

    def start(self) -> None:
        with self._cv:
            if self._closed:
                raise DriverError("sim driver is closed")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="sim-driver", daemon=True)
            self._thread.start()
            for slot in self._slots.values():
                slot.present = True
                self._push(DeviceEvent("added", slot.device))
                self._power_up(slot, POWER_UP_S)

    def flush(self, timeout: float = 5.0) -> None:
        with self._cv:
            target = self._pushed
            self._cv.wait_for(lambda: self._delivered >= target or self._closed, timeout)

    def close(self) -> None:
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._timers.clear()
            self._cv.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def devices(self) -> list[Device]:
        with self._cv:
            if self._closed:      # released: nothing is present any more
                return []
            return [s.device for s in self._slots.values() if s.present]

    def arm(self, device_id: str, *, binning: bool = False) -> None:
        with self._cv:
            slot = self._present(device_id)
            if slot.device.sensor is None:
                self._state(slot, SensorState.NO_SENSOR, "no sensor attached")
                raise self._refuse(slot, "has no sensor attached")
            if slot.phase == "fault":
                raise self._refuse(slot, f"reports a sensor fault ({slot.fault}); clear it first")
            if slot.busy_arms:
                slot.busy_arms -= 1
                raise self._refuse(slot, "refused the arm: BUSY")
            if slot.phase == "init" and self.config.busy_init:
                raise self._refuse(slot, "refused the arm: BUSY (still initializing)")
            effective = bool(binning) and slot.model.supports_binning
            rebin = effective != slot.binning
            slot.armed, slot.binning = True, effective
            if slot.phase == "reading":
                pass                      # re-armed for the next exposure when the frame is in
            elif slot.phase == "low":
                self._state(slot, SensorState.LOW_BATTERY, self._battery_detail(slot))
            elif slot.phase == "init":
                self._state(slot, SensorState.INITIALIZING)   # Ready follows when it is done
            elif slot.phase == "ready" and not rebin:
                self._state(slot, SensorState.READY)
            else:                         # idle, or Ready in the other binning mode
                self._power_up(slot, ARM_S)

    def disarm(self, device_id: str) -> None:
        with self._cv:
            slot = self._known(device_id)
            slot.armed = False
            if slot.phase == "ready":
                self._enter(slot, "idle")   # no event: idle is the daemon's NoAcquisitionInfo

    # --- control (the daemon's admin endpoint and CLI) ----------------------

    def expose(self, device_id: str, *, dose: float = 1.0, seed: Optional[int] = None) -> None:
        """Fire the X-ray tube at an armed, Ready sensor: Reading, then a FrameEvent.

        Parameters
        ----------
        dose : float
            Relative exposure (see :func:`drivers.phantom.phantom`).
        seed : int, optional
            Fixes the image; by default it follows from the driver seed, the
            sensor serial and the exposure count, so runs are reproducible.

        Raises
        ------
        DriverError
            Unknown or unplugged device, no sensor, low battery, not armed or
            not Ready yet (the message says which).
        """
        dose = cat.real(dose, "dose", 0.0, math.inf)
        if seed is not None and (int(seed) != seed or seed < 0):
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        with self._cv:
            slot = self._present(device_id)
            sensor = slot.device.sensor
            why = {"nosensor": "has no sensor attached",
                   "low": "refuses to expose: low battery, recharge the device",
                   "reading": "is still reading the previous frame",
                   "fault": "reports a sensor fault; clear it first",
                   "init": "is still initializing; wait for Ready"}.get(slot.phase)
            if why is None and not slot.armed:
                why = "is not armed; arm it and wait for Ready"
            if why:
                raise DriverError(f"device {device_id} {why}")
            if sensor is None:            # its phase is "nosensor", refused above
                raise DriverError(f"device {device_id} has no sensor attached")
            slot.exposures += 1
            if seed is None:
                seed = zlib.crc32(f"{self.config.seed}:{sensor.serial_number}:{slot.exposures}".encode())
            self._enter(slot, "reading")
            slot.armed = False            # one exposure per arm
            params = dict(width=sensor.width, height=sensor.height, bits=sensor.bits, dose=dose,
                          seed=seed, binned=slot.binning, pixel_size_mm=sensor.pixel_size_mm,
                          dead_pixels=min(self.config.dead_pixels, sensor.width * sensor.height),
                          defect_seed=zlib.crc32(sensor.serial_number.encode()))
            self._state(slot, SensorState.READING)
            self._later(0.0, self._render, slot, slot.token, params)
            readout = cat.readout_seconds(slot.spec.interface, sensor, slot.binning)
            self._later(readout, self._read_done, slot, slot.token, time.monotonic(), slot.binning)

    def unplug_sensor(self, device_id: str, keep_arm: bool = True) -> None:
        """Pull the sensor's cable out of the interface.

        ``keep_arm=False``: the device forgets its arm with the sensor (as
        serial devices do); it reports idle once a sensor is back and warm.
        """
        if not isinstance(keep_arm, bool):
            raise ValueError(f"keep_arm must be true or false, got {keep_arm!r}")
        with self._cv:
            slot = self._present(device_id)
            if slot.device.sensor is None:
                raise DriverError(f"device {device_id} has no sensor to unplug")
            if slot.phase == "reading":
                slot.armed = True         # the frame is lost, so the arm was not used
            if not keep_arm:
                slot.armed, slot.owed = False, True
            self._update(slot, sensor=None)
            self._power_up(slot, 0.0)     # -> NoSensor

    def plug_sensor(self, device_id: str, model: Optional[str] = None) -> None:
        """Attach a sensor: ``model`` is a catalogue key (``select0``), by
        default the one unplugged. DriverError if one is attached already.
        """
        with self._cv:
            slot = self._present(device_id)
            if slot.device.sensor is not None:
                raise DriverError(f"device {device_id} already has a sensor; unplug it first")
            slot.model = cat.sensor_model(model) if model else slot.model
            sensor = cat.make_sensor(slot.model, cat.sensor_serial(slot.model, slot.spec.serial))
            slot.binning = slot.binning and slot.model.supports_binning
            self._update(slot, sensor=sensor)
            self._power_up(slot, POWER_UP_S)

    def unplug_device(self, device_id: str) -> None:
        """Pull the device's USB cable (or take a wireless one out of range)."""
        with self._cv:
            slot = self._present(device_id)
            if slot.armed or slot.phase == "reading":
                self._state(slot, SensorState.NO_HARDWARE, "device disconnected")
            self._enter(slot, "off")      # drops a frame being read
            slot.present, slot.armed = False, False
            self._push(DeviceEvent("removed", slot.device))

    def plug_device(self, device_id: str) -> None:
        """Reconnect a device that was unplugged; it comes back unarmed."""
        with self._cv:
            slot = self._known(device_id)
            if slot.present:
                raise DriverError(f"device {device_id} is already connected")
            slot.present = True
            self._push(DeviceEvent("added", slot.device))
            self._power_up(slot, POWER_UP_S)

    def set_battery(self, device_id: str, percent: float) -> None:
        """Set a wireless device's charge, 0-100 %.

        Below ``LOW_BATTERY_PERCENT`` it reports LowBattery and refuses
        exposures; back above, the sensor re-initializes (Ready if armed).
        DriverError for a device without battery.
        """
        percent = cat.real(percent, "battery percent", 0.0, 100.0)
        with self._cv:
            slot = self._present(device_id)
            if slot.device.battery_percent is None:
                raise DriverError(f"device {device_id} is not battery powered")
            was_low = self._low(slot)
            self._update(slot, battery=percent)
            if self._low(slot) and not was_low and slot.phase in ("init", "idle", "ready"):
                self._power_up(slot, 0.0)          # -> LowBattery
            elif was_low and not self._low(slot) and slot.phase == "low":
                self._power_up(slot, POWER_UP_S)   # -> Initializing (-> Ready if armed)
            # While reading, the frame finishes first; _read_done then reports.

    def set_fault(self, device_id: str, detail: str = "sensor fault") -> None:
        """The sensor fails: Error; the arm is lost, a frame being read too.

        Arms and exposures are refused until ``clear_fault``.
        """
        if not isinstance(detail, str) or not detail.strip() or len(detail) > 200:
            raise ValueError("detail must be a non-empty string of at most 200 characters")
        with self._cv:
            slot = self._present(device_id)
            if slot.phase == "fault":
                raise DriverError(f"device {device_id} already reports a fault: {slot.fault}")
            self._enter(slot, "fault")    # drops a frame being read
            slot.fault, slot.armed, slot.owed = detail, False, True
            self._state(slot, SensorState.ERROR, detail)

    def clear_fault(self, device_id: str) -> None:
        """The fault clears: the sensor warms up again and reports idle."""
        with self._cv:
            slot = self._present(device_id)
            if slot.phase != "fault":
                raise DriverError(f"device {device_id} reports no fault")
            slot.fault = ""
            self._power_up(slot, POWER_UP_S)

    def recalibrate(self, device_id: str) -> None:
        """The sensor recalibrates on its own: Initializing, the arm lost, then idle."""
        with self._cv:
            slot = self._present(device_id)
            if slot.phase not in ("init", "idle", "ready"):
                raise DriverError(f"device {device_id} cannot recalibrate now ({slot.phase})")
            slot.armed, slot.owed = False, True
            self._power_up(slot, POWER_UP_S)

    def busy_next_arm(self, device_id: str, count: int = 1) -> None:
        """Refuse the next ``count`` arms with BUSY (each refusal then reports
        idle, or Ready if the device holds an arm, ~0.3 s later)."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
            raise ValueError(f"count must be an integer in [1, 1000], got {count!r}")
        with self._cv:
            self._present(device_id).busy_arms = count

    def restart(self, device_id: str) -> None:
        """Restart the driver of ``device_id``: each connected device of this
        URL is removed and added again, unarmed, and powers up."""
        with self._cv:
            self._known(device_id)
            slots = [slot for slot in self._slots.values() if slot.present]
            for slot in slots:
                self._enter(slot, "off")  # drops a frame being read
                slot.armed, slot.owed, slot.busy_arms, slot.fault = False, False, 0, ""
                self._push(DeviceEvent("removed", slot.device))
            for slot in slots:
                self._push(DeviceEvent("added", slot.device))
                self._power_up(slot, POWER_UP_S)

    # --- state machine (driver lock held) -----------------------------------

    def _present(self, device_id: str) -> _Slot:
        slot = self._known(device_id)
        if not slot.present:
            raise DriverError(f"device {device_id} is not connected")
        return slot

    def _known(self, device_id: str) -> _Slot:
        if self._closed:
            raise DriverError("sim driver is closed")
        if self._thread is None:
            raise DriverError("sim driver is not started")
        slot = self._slots.get(device_id)
        if slot is None:
            raise DriverError(f"unknown device {device_id!r}")
        return slot

    def _low(self, slot: _Slot) -> bool:
        battery = slot.device.battery_percent
        return battery is not None and battery < LOW_BATTERY_PERCENT

    def _battery_detail(self, slot: _Slot) -> str:
        return f"battery at {slot.device.battery_percent:.0f} %, recharge the device"

    def _enter(self, slot: _Slot, phase: str) -> None:
        slot.phase, slot.pixels = phase, None
        slot.token += 1

    def _power_up(self, slot: _Slot, delay_s: float) -> None:
        """(Re)start the sensor: NoSensor, LowBattery, or Initializing then Ready/idle."""
        if slot.device.sensor is None:
            self._enter(slot, "nosensor")
            self._state(slot, SensorState.NO_SENSOR, "no sensor attached")
        elif self._low(slot):
            self._enter(slot, "low")
            self._state(slot, SensorState.LOW_BATTERY, self._battery_detail(slot))
        else:
            self._enter(slot, "init")
            self._state(slot, SensorState.INITIALIZING)
            self._later(delay_s, self._init_done, slot, slot.token)

    def _update(self, slot: _Slot, **changes) -> None:
        sensor = changes.get("sensor", slot.device.sensor)
        battery = changes.get("battery", slot.device.battery_percent)
        slot.device = cat.describe(self.config.base_url, slot.spec, sensor, battery)
        self._push(DeviceEvent("changed", slot.device))

    def _state(self, slot: _Slot, state: SensorState, detail: str = "") -> None:
        if state == SensorState.READY:
            slot.owed = False             # Ready says it, too
        self._push(StateEvent(slot.device.device_id, state, detail))

    def _refuse(self, slot: _Slot, why: str) -> DriverError:
        """An arm refused: owe a report for when the device can take one.
        Idle or Ready now: after a busy spell; otherwise at the end of the
        warm-up (or fault) that stands in the way."""
        slot.owed = True
        if slot.phase in ("idle", "ready"):
            self._later(ARM_S, self._report_able, slot, slot.token)
        return DriverError(f"device {slot.device.device_id} {why}")

    def _idle(self, slot: _Slot, *, warmed_up: bool = False) -> None:
        """Enter idle; send the idle report after a warm-up or when one is owed."""
        self._enter(slot, "idle")
        if warmed_up or slot.owed or self.config.busy_init:
            slot.owed = False
            self._state(slot, SensorState.INITIALIZING, IDLE_DETAIL)

    def _push(self, event: Event) -> None:
        self._events.append(event)
        self._pushed += 1
        self._cv.notify_all()

    def _later(self, delay_s: float, fn, *args) -> None:
        due = time.monotonic() + delay_s * self.config.time_scale
        heapq.heappush(self._timers, (due, next(self._seq), fn, args))
        self._cv.notify_all()

    # --- timer jobs (worker thread, no lock held on entry) ------------------

    def _init_done(self, slot: _Slot, token: int) -> None:
        with self._cv:
            if slot.token != token:
                return
            if slot.armed:
                self._enter(slot, "ready")
                self._state(slot, SensorState.READY)
            else:
                self._idle(slot, warmed_up=True)

    def _report_able(self, slot: _Slot, token: int) -> None:
        with self._cv:
            if slot.token != token or not slot.owed:
                return                    # its phase changed: that change reports
            if slot.phase == "ready":
                self._state(slot, SensorState.READY)
            elif slot.phase == "idle":
                slot.owed = False
                self._state(slot, SensorState.INITIALIZING, IDLE_DETAIL)

    def _render(self, slot: _Slot, token: int, params: dict) -> None:
        with self._cv:
            if slot.token != token:
                return
        pixels = phantom(**params)   # ~0.1 s: outside the lock, devices() stays quick
        with self._cv:
            if slot.token == token:
                slot.pixels = pixels

    def _read_done(self, slot: _Slot, token: int, started: float, binned: bool) -> None:
        with self._cv:
            if slot.token != token:
                return                    # unplugged meanwhile: the frame is lost
            pixels = slot.pixels
            if pixels is None:            # rendering failed (logged by the worker)
                slot.armed = True
                self._enter(slot, "idle")
                self._state(slot, SensorState.ERROR, "readout failed")
                return
            self._push(FrameEvent(slot.device.device_id, pixels, binned, started, time.monotonic()))
            if slot.armed or self._low(slot):
                self._power_up(slot, ARM_S)   # re-armed during readout, or battery ran low
            else:
                self._idle(slot)

    def _run(self) -> None:
        """Deliver queued events in order and run due timers; wait otherwise."""
        while True:
            job = None
            with self._cv:
                while not self._events:
                    if self._closed:
                        return
                    now = time.monotonic()
                    if self._timers and self._timers[0][0] <= now:
                        job = heapq.heappop(self._timers)
                        break
                    self._cv.wait(self._timers[0][0] - now if self._timers else None)
                events = list(self._events)
                self._events.clear()
            for event in events:
                try:
                    self.emit(event)
                except Exception:        # a faulty listener must not stop the device
                    log.exception("sim driver: emit failed for %r", event)
            if events:
                with self._cv:
                    self._delivered += len(events)
                    self._cv.notify_all()
            if job is not None:
                try:
                    job[2](*job[3])
                except Exception:
                    log.exception("sim driver: timer job %s failed", job[2].__name__)


DRIVER_CLASS = SimDriver
