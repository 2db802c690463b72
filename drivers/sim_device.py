"""The simulated devices' state machine: what each device does and reports.

Each device of a ``sim://`` URL has a ``Slot`` (its mutable state); the
transitions below run with the driver lock held, and the timer jobs end
warm-ups and readouts on the worker thread (:mod:`drivers.sim_worker`).
Kept apart from the ``Driver`` interface (:mod:`drivers.sim`) and the
operator's controls (:mod:`drivers.sim_controls`) because both drive the
same transitions; this module is the one place that says what follows what.

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
"""
from __future__ import annotations

import threading
import time
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
from .sim_worker import Worker

POWER_UP_S = 0.6            # sensor start-up after power-on or plug-in
ARM_S = 0.3                 # re-initialisation of a powered sensor for an exposure
LOW_BATTERY_PERCENT = 10.0  # below this the device refuses to expose


@dataclass
class Slot:
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


class SimDevices(Driver):
    """The devices behind one ``sim://`` URL and their state machine.

    The base of :class:`drivers.sim.SimDriver`; methods expect the driver
    lock (``_cv``) held, except the timer jobs, which take it.
    """

    def __init__(self, url, *, emit, options=None) -> None:
        super().__init__(url, emit=emit, options=options)
        self.config = cat.parse_url(url, self.options)
        self._cv = threading.Condition()
        self._slots: dict[str, Slot] = {}
        for spec in self.config.devices:
            sensor = cat.make_sensor(spec.sensor, cat.sensor_serial(spec.sensor, spec.serial))
            battery = cat.DEFAULT_BATTERY_PERCENT if spec.interface.battery else None
            device = cat.describe(self.config.base_url, spec, sensor, battery)
            self._slots[device.device_id] = Slot(spec, device, spec.sensor)
        self._worker = Worker(self._cv, self.emit, self.config.time_scale)

    # --- state machine (driver lock held) -----------------------------------

    def _present(self, device_id: str) -> Slot:
        slot = self._known(device_id)
        if not slot.present:
            raise DriverError(f"device {device_id} is not connected")
        return slot

    def _known(self, device_id: str) -> Slot:
        if self._worker.closed:
            raise DriverError("sim driver is closed")
        if not self._worker.started:
            raise DriverError("sim driver is not started")
        slot = self._slots.get(device_id)
        if slot is None:
            raise DriverError(f"unknown device {device_id!r}")
        return slot

    def _low(self, slot: Slot) -> bool:
        battery = slot.device.battery_percent
        return battery is not None and battery < LOW_BATTERY_PERCENT

    def _battery_detail(self, slot: Slot) -> str:
        return f"battery at {slot.device.battery_percent:.0f} %, recharge the device"

    def _enter(self, slot: Slot, phase: str) -> None:
        slot.phase, slot.pixels = phase, None
        slot.token += 1

    def _power_up(self, slot: Slot, delay_s: float) -> None:
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

    def _update(self, slot: Slot, **changes) -> None:
        sensor = changes.get("sensor", slot.device.sensor)
        battery = changes.get("battery", slot.device.battery_percent)
        slot.device = cat.describe(self.config.base_url, slot.spec, sensor, battery)
        self._push(DeviceEvent("changed", slot.device))

    def _state(self, slot: Slot, state: SensorState, detail: str = "") -> None:
        if state == SensorState.READY:
            slot.owed = False             # Ready says it, too
        self._push(StateEvent(slot.device.device_id, state, detail))

    def _refuse(self, slot: Slot, why: str) -> DriverError:
        """An arm refused: owe a report for when the device can take one.
        Idle or Ready now: after a busy spell; otherwise at the end of the
        warm-up (or fault) that stands in the way."""
        slot.owed = True
        if slot.phase in ("idle", "ready"):
            self._later(ARM_S, self._report_able, slot, slot.token)
        return DriverError(f"device {slot.device.device_id} {why}")

    def _idle(self, slot: Slot, *, warmed_up: bool = False) -> None:
        """Enter idle; send the idle report after a warm-up or when one is owed."""
        self._enter(slot, "idle")
        if warmed_up or slot.owed or self.config.busy_init:
            slot.owed = False
            self._state(slot, SensorState.INITIALIZING, IDLE_DETAIL)

    def _push(self, event: Event) -> None:
        self._worker.push(event)

    def _later(self, delay_s: float, fn, *args) -> None:
        self._worker.later(delay_s, fn, *args)

    # --- timer jobs (worker thread, no lock held on entry) ------------------

    def _init_done(self, slot: Slot, token: int) -> None:
        with self._cv:
            if slot.token != token:
                return
            if slot.armed:
                self._enter(slot, "ready")
                self._state(slot, SensorState.READY)
            else:
                self._idle(slot, warmed_up=True)

    def _report_able(self, slot: Slot, token: int) -> None:
        with self._cv:
            if slot.token != token or not slot.owed:
                return                    # its phase changed: that change reports
            if slot.phase == "ready":
                self._state(slot, SensorState.READY)
            elif slot.phase == "idle":
                slot.owed = False
                self._state(slot, SensorState.INITIALIZING, IDLE_DETAIL)

    def _render(self, slot: Slot, token: int, params: dict) -> None:
        with self._cv:
            if slot.token != token:
                return
        pixels = phantom(**params)   # ~0.1 s: outside the lock, devices() stays quick
        with self._cv:
            if slot.token == token:
                slot.pixels = pixels

    def _read_done(self, slot: Slot, token: int, started: float, binned: bool) -> None:
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
