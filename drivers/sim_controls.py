"""The operator's controls of the simulated devices: hot-plug, faults, exposures.

The X-ray tube (``expose``), cables (sensor and device), the battery, sensor
faults, recalibration, BUSY refusals and a driver restart: what a person or
a test does to the hardware, as opposed to what the daemon asks of it
through the ``Driver`` interface (:mod:`drivers.sim`). Kept apart because
only the simulator has them; what each one reports is the table in
:mod:`drivers.sim_device`.

The daemon drives these through ``POST /api/sensord/v1/devices/{id}/{action}``
(daemon/api/admin.py): expose, unplug, plug, unplug-sensor, plug-sensor,
battery, fault, clear-fault, recalibrate, busy-next-arm, restart. It finds
them on the driver by name, so they stay methods of the driver.
"""
from __future__ import annotations

import math
import time
import zlib
from typing import Optional

from . import sim_catalog as cat
from .base import DeviceEvent, DriverError, SensorState
from .sim_device import POWER_UP_S, SimDevices


class SimControls(SimDevices):
    """The controls of :mod:`drivers.sim`'s driver (driver lock taken here)."""

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

        Below ``sim_device.LOW_BATTERY_PERCENT`` it reports LowBattery and refuses
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
