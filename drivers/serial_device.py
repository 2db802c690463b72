"""What the ``serial://`` driver makes of a device: options, Device, states.

Pure functions, no I/O: the driver's URL and options (``parse_url``,
``parse_options``), and the translation of the device's IDENT and STATUS
messages (``serial_messages``) into the daemon's ``Device``/``Sensor`` and state
names (``device_from``, ``battery_percent``, ``status_state``). The driver
that moves the bytes is ``serial_port``; SERIAL_PROTOCOL.md tables the states.
"""
from __future__ import annotations

import uuid
from typing import Optional
from urllib.parse import parse_qsl, urlsplit

from . import serial_messages as m
from .base import IDLE_DETAIL, Device, Sensor, SensorState

DEFAULTS = {
    "baudrate": 921600,
    "read_timeout": 0.05,      # longest a read blocks before timers are checked
    "ack_timeout": 1.0,        # arm/disarm wait for their ACK
    "identify_timeout": 1.0,   # wait for IDENT + STATUS after opening the port
    "silence_timeout": 2.0,    # no byte this long while expecting some: cable gone
    "poll_interval": 0.5,      # STATUS poll when idle (0: off); doubles as keepalive
    "retry_interval": 1.0,     # reopen attempts while the link is down
    "removal_grace": 3.0,      # port path absent this long: device removed
    "stall_timeout": 0.3,      # quiet line with a half message buffered: drop it
}
# Device ids: uuid5(_NAMESPACE, "<port path>|<interface serial>"); the
# namespace is 96c4ae08-1951-5252-8d7b-0e7c68fd5480, as SERIAL_PROTOCOL.md says.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "sensord:serial")

# An IDLE device is reported with base.py's *idle report*: unarmed, able to
# take an ARM now. Sent on every change into IDLE (warm-up done, fault
# cleared, sensor back, readout over, disarmed), so the daemon knows when to
# arm (again).
IDLE_STATE = (SensorState.INITIALIZING, IDLE_DETAIL)

# Same conventions as drivers/sim_device.py: Ready means armed.
_STATE_NAMES: dict[int, tuple[SensorState, str]] = {
    m.DeviceState.INITIALIZING: (SensorState.INITIALIZING, ""),
    m.DeviceState.IDLE: IDLE_STATE,
    m.DeviceState.ARMED: (SensorState.READY, ""),
    m.DeviceState.READING: (SensorState.READING, ""),
    m.DeviceState.ERROR: (SensorState.ERROR, "sensor reports an error"),
}


def parse_url(url: str) -> tuple[str, dict]:
    """``serial:///dev/ttyUSB0?baudrate=115200`` -> (path, options from the query)."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    path = rest.split("?", 1)[0]
    if not path:
        raise ValueError(f"no port path in {url!r} (expected serial:///dev/ttyUSB0)")
    return path, dict(parse_qsl(urlsplit(url).query))


def parse_options(options: dict) -> dict:
    """``DEFAULTS`` overridden by ``options`` (strings or numbers); unknown keys: ValueError."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown serial driver option(s): {', '.join(sorted(unknown))}")
    out = dict(DEFAULTS)
    for key, value in options.items():
        out[key] = type(DEFAULTS[key])(float(value)) if key == "baudrate" else float(value)
    return out


def battery_percent(status: Optional[m.Status]) -> Optional[float]:
    if status is None or status.battery is None:
        return None
    return float(status.battery)


def device_from(path: str, ident: m.Ident, status: Optional[m.Status]) -> Device:
    """The Device for an IDENT on ``path``; its id is stable per port and interface serial."""
    s = ident.sensor
    sensor = None if s is None else Sensor(
        model_name=s.model, serial_number=s.serial, brand=s.brand, family=s.family,
        size=s.size, width=s.width, height=s.height, supports_binning=s.supports_binning,
        version=s.firmware, bits=s.bits, pixel_size_mm=s.pixel_pitch_nm / 1e6)
    return Device(
        device_id=str(uuid.uuid5(_NAMESPACE, f"{path}|{ident.serial}")),
        name=f"{ident.model}: {ident.serial}", interface_type="serial",
        model_name=ident.model, serial_number=ident.serial, version=ident.firmware,
        sensor=sensor, battery_percent=battery_percent(status) if ident.battery_powered else None)


def status_state(msg: m.Status) -> tuple[SensorState, str]:
    """(state, detail) a STATUS reports; ``IDLE_STATE`` for an idle device."""
    if msg.state == m.DeviceState.NO_SENSOR:
        return SensorState.NO_SENSOR, ""
    if msg.battery_low and msg.state != m.DeviceState.READING:
        return SensorState.LOW_BATTERY, f"battery {msg.battery}%"
    return _STATE_NAMES.get(msg.state, (SensorState.ERROR, f"unknown device state {msg.state}"))
