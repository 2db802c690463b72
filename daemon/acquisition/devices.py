"""The devices of every configured driver, their status, and device events.

Drivers call ``emit`` from their own threads; events are queued and handled
in order on one dispatcher thread, so a driver never waits on the daemon and
a frame's processing never races the state change that announced it.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from sensord.daemon.dsio.states import DeviceStatus
from sensord.daemon.errors import ServiceError
from sensord.daemon.live.hub import Hub
from sensord.daemon.signals import Signal
from sensord.drivers import open_driver
from sensord.drivers.base import (
    FAULTS,
    IDLE_DETAIL,
    Device,
    DeviceEvent,
    Driver,
    Event,
    FrameEvent,
    SensorState,
    StateEvent,
)

log = logging.getLogger("sensord.devices")


class DeviceNotFound(ServiceError, LookupError):
    status = 404


class DeviceInUse(ServiceError):
    status = 409


@dataclass
class DeviceEntry:
    device: Device
    driver: Driver
    state: SensorState | None = None  # the driver's last reported sensor state; None: idle
    session_id: str | None = None     # the session that holds the device
    present: bool = True              # a removed device keeps its entry (and its
                                      # session) so a replug finds both again

    @property
    def status(self) -> DeviceStatus:
        if self.state == SensorState.NO_HARDWARE:
            return DeviceStatus.UNAVAILABLE
        if self.state == SensorState.ERROR:
            return DeviceStatus.ERROR
        return DeviceStatus.IN_USE if self.session_id else DeviceStatus.AVAILABLE


# Where api/modality.py serves the device icons (daemon/api/device_icons/), one
# per interface type; iconUrl holds this root-relative path and the API makes
# it absolute for the host each request came to.
ICON_PATH = "/api/dsio/modality/v1/icons/{}.png"
ICON_KINDS = ("usb", "network", "serial", "device")     # "device": any other interface


def icon_path(interface_type: str) -> str:
    kind = interface_type.lower()
    return ICON_PATH.format(kind if kind in ICON_KINDS else "device")


def battery_json(percent: float | None) -> dict:
    """BatteryInfo, an object even without a battery (the spec's type is not nullable).

    Mains powered: hasBattery false, and a level that never warns, so a
    client that shows the level without checking hasBattery raises no alarm.
    """
    if percent is None:
        return {"hasBattery": False, "percentRemaining": 100.0, "level": "Full"}
    level = "Low" if percent < 20 else "Full" if percent >= 90 else "Good"
    return {"hasBattery": True, "percentRemaining": float(percent), "level": level}


def sensor_json(device: Device) -> dict | None:
    s = device.sensor
    if s is None:
        return None
    return {"modelName": s.model_name, "serialNumber": s.serial_number, "brand": s.brand,
            "family": s.family, "size": s.size, "width": s.width, "height": s.height,
            "supportsBinning": s.supports_binning, "version": s.version}


def device_json(entry: DeviceEntry) -> dict:
    d = entry.device
    return {"deviceId": d.device_id, "name": d.name, "iconUrl": icon_path(d.interface_type),
            "hasSensor": d.sensor is not None, "status": entry.status,
            "interfaceType": d.interface_type, "modelName": d.model_name,
            "serialNumber": d.serial_number, "version": d.version,
            "battery": battery_json(d.battery_percent)}


class DeviceRegistry:
    def __init__(self, urls: list[str], *, hub: Hub):
        self.urls = list(urls)
        self.hub = hub
        self.drivers: list[Driver] = []
        # Every driver event, passed on once the registry has applied it.
        self.driver_events: Signal[Event] = Signal("driver events")
        self._entries: dict[str, DeviceEntry] = {}
        self._lock = threading.RLock()
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._dispatch, name="device-events", daemon=True)

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        for url in self.urls:
            self.add_driver(url)
        self.settle()     # the device list is complete when start returns

    def add_driver(self, url: str) -> Driver:
        box: list[Driver] = []   # filled before start(), the first moment a driver may emit
        driver = open_driver(url, emit=lambda event: self._queue.put((box[0], event)))
        box.append(driver)
        driver.start()
        with self._lock:
            self.drivers.append(driver)
        log.info("driver %s started", url)
        return driver

    def close(self) -> None:
        for driver in list(self.drivers):
            try:
                driver.close()
            except Exception:
                log.exception("closing driver %s failed", driver.url)
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def settle(self, timeout: float = 5.0) -> bool:
        """Block until every event the drivers produced so far has been handled."""
        for driver in list(self.drivers):
            driver.flush(timeout)
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    @property
    def enumerated(self) -> bool:
        """Every configured driver started, and driver events still handled (readiness)."""
        return self._thread.is_alive() and len(self.drivers) >= len(self.urls)

    # -- queries ---------------------------------------------------------
    def list(self) -> list[dict]:
        with self._lock:
            return [device_json(e) for e in self._entries.values() if e.present]

    def entry(self, device_id: str) -> DeviceEntry:
        """The present device ``device_id``; DeviceNotFound otherwise."""
        with self._lock:
            entry = self._entries.get(device_id)
        if entry is None or not entry.present:
            raise DeviceNotFound(f"no device {device_id!r}")
        return entry

    def find(self, device_id: str) -> DeviceEntry | None:
        """The entry even while the device is unplugged (sessions keep their device)."""
        with self._lock:
            return self._entries.get(device_id)

    def known(self) -> tuple[DeviceEntry, ...]:
        """Every device seen since the start, unplugged ones too (``present`` false)."""
        with self._lock:
            return tuple(self._entries.values())

    def info(self, device_id: str) -> dict:
        with self._lock:
            return device_json(self.entry(device_id))

    # -- claims ----------------------------------------------------------
    def claim(self, device_id: str, session_id: str) -> DeviceEntry:
        with self._lock:
            entry = self.entry(device_id)
            if entry.session_id not in (None, session_id):
                raise DeviceInUse(f"device {device_id!r} is in use by another session")
            if entry.status == DeviceStatus.UNAVAILABLE:
                raise DeviceInUse(f"device {device_id!r} is not connected")
            entry.session_id = session_id
            self._publish("changed", entry)
            return entry

    def release(self, device_id: str, session_id: str) -> None:
        with self._lock:
            entry = self._entries.get(device_id)
            if entry is None or entry.session_id != session_id:
                return
            entry.session_id = None
            if entry.present:
                self._publish("changed", entry)

    def disarmed(self, device_id: str) -> None:
        """The daemon took its arm back: a device that reported Ready is idle now
        (drivers report nothing for a disarm), until the driver says otherwise."""
        with self._lock:
            entry = self._entries.get(device_id)
            if entry is not None and entry.state == SensorState.READY:
                entry.state = None

    # -- events ----------------------------------------------------------
    def _publish(self, action: str, entry: DeviceEntry) -> None:
        self.hub.publish("message", {"action": action, "deviceInfo": device_json(entry)})

    def _dispatch(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            driver, event = item
            try:
                self._handle(driver, event)
                self.driver_events.emit(event)      # each handler's failure is logged by the signal
            except Exception:
                log.exception("handling %s from %s failed", type(event).__name__, driver.url)

    def _handle(self, driver: Driver, event: Event) -> None:
        if isinstance(event, DeviceEvent):
            device = event.device
            with self._lock:
                entry = self._entries.get(device.device_id)
                if event.action == "removed":
                    if entry is not None and entry.present:
                        entry.present, entry.device, entry.state = False, device, SensorState.NO_HARDWARE
                        self._publish("removed", entry)
                        log.warning("device %s (%s) removed", device.name, device.device_id)
                    return
                if entry is None:
                    entry = self._entries[device.device_id] = DeviceEntry(device, driver)
                elif not entry.present:
                    entry.present, entry.device, entry.driver, entry.state = True, device, driver, None
                else:
                    sensor_before, entry.device = entry.device.sensor, device
                    self._publish("changed", entry)
                    if device.sensor is not None and device.sensor != sensor_before:
                        log.info("device %s (%s): sensor %s attached", device.name, device.device_id,
                                 device.sensor.model_name)
                    return
                self._publish("added", entry)
                log.info("device %s (%s) added", device.name, device.device_id)
        elif isinstance(event, StateEvent):
            with self._lock:
                entry = self._entries.get(event.device_id)
                if entry is None or not entry.present:
                    return
                status_before = entry.status
                # An idle report is Initializing by name only: the device is warm and unarmed.
                idle = event.state == SensorState.INITIALIZING and event.detail == IDLE_DETAIL
                entry.state = None if idle else event.state
                if entry.status != status_before:
                    self._publish("changed", entry)
            if event.state in FAULTS:
                log.warning("device %s (%s): %s %s", entry.device.name, event.device_id, event.state,
                            event.detail)
        elif isinstance(event, FrameEvent):
            with self._lock:
                entry = self._entries.get(event.device_id)
                if entry is not None and entry.state == SensorState.READING:
                    entry.state = None      # read out: idle, which drivers do not report
