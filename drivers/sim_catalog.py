"""What the simulator can pretend to be: sensor models, interfaces, the URL.

Pure data and pure functions; :mod:`drivers.sim_device` does the timing, and
:mod:`drivers.sim_worker` the thread.

URL syntax
----------
::

    sim://                                  the default devices (3, see below)
    sim://?devices=N                        the first N of the default order, 0..32
    sim://?models=supreme2,velocity1w       exactly these, in this order
    ...&seed=N          base seed of the frames (default 0: reproducible runs)
    ...&dead_pixels=N   dead pixels per sensor, at fixed places per sensor
    ...&time_scale=F    1.0 = realistic timing, 0.01 = 100x faster, 0 = instant
    ...&busy_init=1     arm() while Initializing is refused (BUSY), as serial
                        devices do; the device reports idle when it can be armed

The brand, Simradix, is invented. Families and sizes follow the Modality API
(Velocity / Supreme / Select, sizes 0 to 2). A model key is the family in
lower case followed by the size (``supreme2``) on a USB interface; a
trailing ``w`` puts the sensor behind the battery-powered wireless interface
(``velocity1w``). ``devices=N`` takes the first N of ``DEFAULT_ORDER``
(supreme2, velocity1w, select0, velocity2, supreme1, select1, supreme0,
velocity0, select2), cycling with fresh serials past its end; repeated keys
in ``models=`` get their own serials too. The driver's ``options`` dict may
carry ``time_scale``, ``dead_pixels``, ``seed`` and ``busy_init`` and wins over
the query.
Unknown or malformed options are a ValueError that names them.

Device ids are uuid5 of the URL without its query and the device serial, so
they survive restarts, a change of options and added devices.
"""
from __future__ import annotations

import math
import uuid
import zlib
from dataclasses import dataclass
from typing import Optional
from urllib.parse import parse_qsl, urlsplit

from .base import Device, Sensor

BRAND = "Simradix"


@dataclass(frozen=True)
class SensorModel:
    """One sensor model of the catalogue (a row of the table below)."""
    key: str
    family: str
    size: int
    width: int
    height: int
    pixel_size_mm: float
    bits: int
    supports_binning: bool
    version: str

    @property
    def model_name(self) -> str:
        return f"{BRAND} {self.family} {self.size}"


@dataclass(frozen=True)
class InterfaceModel:
    """The box (or sensor electronics) the host talks to: what DeviceInfo shows."""
    key: str
    model_name: str
    interface_type: str
    version: str
    serial_prefix: str
    battery: bool
    latency_s: float        # fixed part of a readout (handshake, first packet)
    pixels_per_s: float     # sustained readout throughput


def _models():
    # Active areas: size 0 ~ 24.6 x 18.5 mm, size 1 ~ 30.7 x 21.6 mm,
    # size 2 = 36.0 x 25.6 mm. Supreme/Velocity have 15 um pixels, Select
    # (the entry line) 20 um pixels and no on-chip binning.
    rows = [("Supreme", 15, 14, True, "2.4.1"), ("Velocity", 15, 12, True, "1.9.3"),
            ("Select", 20, 12, False, "1.2.0")]
    sizes = {15: [(1640, 1232), (2048, 1440), (2400, 1708)],
             20: [(1230, 924), (1536, 1080), (1800, 1280)]}
    for family, pitch_um, bits, binning, version in rows:
        for size, (w, h) in enumerate(sizes[pitch_um]):
            yield SensorModel(f"{family.lower()}{size}", family, size, w, h,
                              pitch_um / 1000, bits, binning, version)


SENSOR_MODELS: dict[str, SensorModel] = {m.key: m for m in _models()}

INTERFACES: dict[str, InterfaceModel] = {
    "usb": InterfaceModel("usb", f"{BRAND} USB Link", "usb", "3.2.1", "SU",
                          battery=False, latency_s=0.2, pixels_per_s=12e6),
    "wireless": InterfaceModel("wireless", f"{BRAND} AirLink W", "network", "1.4.0", "SW",
                               battery=True, latency_s=0.3, pixels_per_s=8e6),
}

# ``sim://`` and ``sim://?devices=N`` take the first N of this list (cycling
# with fresh serial numbers past its end): all families, sizes and both
# interfaces early on.
DEFAULT_ORDER = ("supreme2", "velocity1w", "select0", "velocity2", "supreme1",
                 "select1", "supreme0", "velocity0", "select2")
DEFAULT_DEVICES = 3
MAX_DEVICES = 32
DEFAULT_BATTERY_PERCENT = 85.0


@dataclass(frozen=True)
class DeviceSpec:
    """One simulated device as the URL asked for it."""
    key: str
    sensor: SensorModel
    interface: InterfaceModel
    serial: str


@dataclass(frozen=True)
class SimConfig:
    """The parsed ``sim://`` URL plus driver options."""
    base_url: str
    devices: tuple[DeviceSpec, ...]
    time_scale: float = 1.0
    dead_pixels: int = 0
    seed: int = 0
    busy_init: bool = False    # arm() refused (BUSY) while Initializing


def sensor_model(key: str) -> SensorModel:
    """The catalogue entry for a sensor key such as ``select0``."""
    try:
        return SENSOR_MODELS[key.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown sensor model {key!r} (known: {', '.join(SENSOR_MODELS)})") from None


def device_spec(key: str, occurrence: int = 0) -> DeviceSpec:
    """The device for a model key (``velocity1w``); ``occurrence`` numbers repeats."""
    key = key.strip().lower()
    wireless = key.endswith("w") and key[:-1] in SENSOR_MODELS
    sensor = sensor_model(key[:-1] if wireless else key)
    iface = INTERFACES["wireless" if wireless else "usb"]
    number = zlib.crc32(f"{key}#{occurrence}".encode()) % 10**8
    return DeviceSpec(key, sensor, iface, f"{iface.serial_prefix}-{number:08d}")


def sensor_serial(model: SensorModel, device_serial: str) -> str:
    """Serial number of a sensor of ``model`` attached to a given device.

    The same model on the same device gets the same serial, so unplugging and
    replugging a sensor brings the same sensor back.
    """
    number = zlib.crc32(f"{model.key}@{device_serial}".encode()) % 10**7
    return f"{model.family[:2].upper()}{model.size}-{number:07d}"


def make_sensor(model: SensorModel, serial: str) -> Sensor:
    return Sensor(model_name=model.model_name, serial_number=serial, brand=BRAND,
                  family=model.family, size=model.size, width=model.width,
                  height=model.height, supports_binning=model.supports_binning,
                  version=model.version, bits=model.bits, pixel_size_mm=model.pixel_size_mm)


def device_id(base_url: str, serial: str) -> str:
    """Stable id: uuid5 of the URL (without its query) and the device serial."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{base_url}#{serial}"))


def describe(base_url: str, spec: DeviceSpec, sensor: Optional[Sensor],
             battery_percent: Optional[float]) -> Device:
    """The Device a client sees; its name follows the attached sensor."""
    iface = spec.interface
    name = (f"{sensor.model_name}: {sensor.serial_number}" if sensor
            else f"{iface.model_name}: {spec.serial} (no sensor)")
    return Device(device_id=device_id(base_url, spec.serial), name=name,
                  interface_type=iface.interface_type, model_name=iface.model_name,
                  serial_number=spec.serial, version=iface.version, sensor=sensor,
                  battery_percent=battery_percent if iface.battery else None)


def readout_seconds(iface: InterfaceModel, sensor: Sensor, binned: bool) -> float:
    """Realistic readout time: fixed latency plus pixels over throughput."""
    pixels = sensor.width * sensor.height / (4 if binned else 1)
    return iface.latency_s + pixels / iface.pixels_per_s


_QUERY_KEYS = ("devices", "models", "seed", "dead_pixels", "time_scale", "busy_init")


def parse_url(url: str, options: Optional[dict] = None) -> SimConfig:
    """Parse ``sim://[?devices=N | ?models=K,K...][&seed=N][&dead_pixels=N][&time_scale=F]``
    ``[&busy_init=1]``.

    ``options`` (the driver's options dict) may also carry ``seed``,
    ``dead_pixels``, ``time_scale`` and ``busy_init``; they win over the
    query. Anything unknown or malformed is a ValueError that names it.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sim":
        raise ValueError(f"not a sim:// URL: {url!r}")
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _QUERY_KEYS:
            raise ValueError(f"unknown sim:// option {name!r} in {url!r} (known: {', '.join(_QUERY_KEYS)})")
        query[name] = value
    merged = {**query, **{k: v for k, v in (options or {}).items() if k in _QUERY_KEYS[2:]}}

    if "models" in query and "devices" in query:
        raise ValueError(f"give either devices= or models= in {url!r}, not both")
    if "models" in query:
        keys = [k for k in query["models"].split(",") if k.strip()]
    else:
        count = _number(merged, "devices", int, DEFAULT_DEVICES, 0, MAX_DEVICES)
        keys = [DEFAULT_ORDER[i % len(DEFAULT_ORDER)] for i in range(count)]
    if len(keys) > MAX_DEVICES:
        raise ValueError(f"at most {MAX_DEVICES} simulated devices, got {len(keys)}")
    seen: dict[str, int] = {}
    specs = []
    for key in keys:
        key = key.strip().lower()
        specs.append(device_spec(key, seen.get(key, 0)))
        seen[key] = seen.get(key, 0) + 1

    base = f"sim://{parts.netloc}{parts.path}"
    return SimConfig(
        base_url=base, devices=tuple(specs),
        time_scale=_number(merged, "time_scale", float, 1.0, 0.0, 100.0),
        dead_pixels=_number(merged, "dead_pixels", int, 0, 0, 100_000),
        seed=_number(merged, "seed", int, 0, 0, 2**63 - 1),
        busy_init=bool(_number(merged, "busy_init", int, 0, 0, 1)),
    )


def real(value, name: str, low: float, high: float) -> float:
    """``value`` as a finite float in [low, high], else a ValueError naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
    return number


def _number(values: dict, name: str, kind, default, low, high):
    raw = values.get(name)
    if raw is None or raw == "":
        return default
    if kind is float:
        return real(raw, f"sim:// option {name}", low, high)
    try:
        number = int(raw)
        if isinstance(raw, float) and raw != number:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"sim:// option {name} must be an integer, got {raw!r}") from None
    if not low <= number <= high:
        raise ValueError(f"sim:// option {name} must be in [{low}, {high}], got {raw!r}")
    return number
