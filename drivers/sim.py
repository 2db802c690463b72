"""Simulated sensors: the default test target, as ``loop://`` is pyserial's.

URL syntax (parsed and documented in :mod:`drivers.sim_catalog`)::

    sim://                                  supreme2, velocity1w, select0
    sim://?devices=N                        the first N of the default order
    sim://?models=supreme2,velocity1w       exactly these (w: wireless)
    ...&seed=N&dead_pixels=N&time_scale=F   time_scale 0.01: 100x faster
    ...&busy_init=1                         arm() while Initializing: BUSY

The simulator, by module:

    sim_catalog   the sensor models and interfaces it can pretend to be; the URL
    sim_device    each device's state machine: the table of states and events
    sim_controls  the operator's controls (expose, hot-plug, battery, faults)
    sim_worker    the one thread that runs the timers and delivers the events
    phantom       the synthetic radiograph a frame shows

This module holds the ``Driver`` interface on top of them (start, arm,
disarm, ...), the one the daemon uses for every driver.
"""
from __future__ import annotations

from .base import Device, DeviceEvent, DriverError, SensorState
from .sim_controls import SimControls
from .sim_device import ARM_S, POWER_UP_S


class SimDriver(SimControls):
    """Simulated devices behind a ``sim://`` URL (see the module docstring)."""

    # --- Driver interface ---------------------------------------------------

    def start(self) -> None:
        with self._cv:
            if self._worker.closed:
                raise DriverError("sim driver is closed")
            if self._worker.started:
                return
            self._worker.start()
            for slot in self._slots.values():
                slot.present = True
                self._push(DeviceEvent("added", slot.device))
                self._power_up(slot, POWER_UP_S)

    def flush(self, timeout: float = 5.0) -> None:
        self._worker.flush(timeout)

    def close(self) -> None:
        self._worker.close()

    def devices(self) -> list[Device]:
        with self._cv:
            if self._worker.closed:      # released: nothing is present any more
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


DRIVER_CLASS = SimDriver
