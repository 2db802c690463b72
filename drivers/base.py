"""The one small interface every sensor driver implements.

A driver owns the hardware side of one URL (``sim://``, ``serial:///dev/ttyUSB0``).
It reports devices, arms and disarms them, and pushes everything that happens
(plug events, sensor state changes, finished frames) through the ``emit``
callback it was given. The daemon owns sessions, images and HTTP; a driver
never sees them.

Threading: ``emit`` may be called from any driver thread. It must be cheap
and must not call back into the driver while holding driver locks.
"""
from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Union

import numpy as np


class SensorState(enum.StrEnum):
    """The states a driver may report for a sensor.

    The values are the Modality API's AcquisitionStatus.state names (the
    daemon adds NoAcquisitionInfo, Processing, ... of its own), so a state
    passes through to the wire unchanged. Drivers cannot import the daemon,
    which is why the sensor's share of those names is declared here.
    """
    INITIALIZING = "Initializing"
    READY = "Ready"
    READING = "Reading"
    NO_SENSOR = "NoSensor"
    NO_HARDWARE = "NoHardware"
    LOW_BATTERY = "LowBattery"
    ERROR = "Error"


# The states in which the sensor cannot expose until something changes.
FAULTS = frozenset({SensorState.NO_HARDWARE, SensorState.NO_SENSOR, SensorState.LOW_BATTERY,
                    SensorState.ERROR})

# The detail of an *idle report*: ``StateEvent(device_id, SensorState.INITIALIZING,
# IDLE_DETAIL)`` says the device is initialized, healthy and holds no arm, so
# it can take an ``arm()`` now. (The API has no state of its own for an idle
# device; the session shows Initializing until the arm's Ready.) A driver must
# send one when its device becomes idle after any of: a fault it reported
# (NoHardware, NoSensor, LowBattery, Error), an Initializing it reported
# (warm-up, calibration), an ``arm()`` it refused (DriverError, e.g. BUSY),
# or an arm the device lost on its own; otherwise the daemon never learns that
# it may arm again. One more than needed is harmless: the daemon re-arms, and
# an armed device answers Ready. (The daemon also shows the device as idle,
# not Initializing, from this report on: the status page's device state.)
IDLE_DETAIL = "idle"


@dataclass(frozen=True)
class Sensor:
    """What SensorInfo reports about the sensor attached to a device."""
    model_name: str
    serial_number: str
    brand: str
    family: str            # Velocity / Supreme / Select
    size: int              # 0, 1 or 2
    width: int             # pixels, unbinned
    height: int
    supports_binning: bool
    version: str
    bits: int = 12         # significant bits per pixel
    pixel_size_mm: float = 0.0185


@dataclass(frozen=True)
class Device:
    """What DeviceInfo reports about a device (the sensor's interface)."""
    device_id: str
    name: str
    interface_type: str    # usb, network, serial
    model_name: str
    serial_number: str
    version: str
    sensor: Optional[Sensor] = None
    battery_percent: Optional[float] = None   # None: not battery powered

    def with_(self, **changes) -> "Device":
        return replace(self, **changes)


@dataclass(frozen=True)
class DeviceEvent:
    """A device appeared, disappeared or changed (sensor swapped, battery...)."""
    action: str            # "added" | "removed" | "changed"
    device: Device


@dataclass(frozen=True)
class StateEvent:
    """The sensor behind ``device_id`` entered ``state``.

    A plain string naming a state is accepted and converted, so a driver
    outside this package keeps working; an unknown name is a ValueError at
    the driver, not a puzzle in the daemon.
    """
    device_id: str
    state: SensorState
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", SensorState(self.state))

    @property
    def is_idle(self) -> bool:
        """An idle report (see ``IDLE_DETAIL``): initialized, unarmed, ready to be armed."""
        return self.state == SensorState.INITIALIZING and self.detail == IDLE_DETAIL


@dataclass(frozen=True)
class FrameEvent:
    """A complete, verified frame read from an armed sensor.

    ``pixels`` is a 2-D uint16 array in the sensor's native orientation;
    ``binned`` says whether the sensor already binned it 2x2.
    """
    device_id: str
    pixels: np.ndarray = field(repr=False)
    binned: bool = False
    read_started: float = 0.0   # time.monotonic() at the start of readout
    read_ended: float = 0.0     # time.monotonic() when the last byte arrived


Event = Union[DeviceEvent, StateEvent, FrameEvent]
Emit = Callable[[Event], None]


class DriverError(RuntimeError):
    """A driver could not do what was asked (unknown device, not connected)."""


class Driver(abc.ABC):
    """Base class of every driver; one instance serves one URL."""

    def __init__(self, url: str, *, emit: Emit, options: Optional[dict] = None):
        self.url = url
        self.emit = emit
        self.options = dict(options or {})

    @abc.abstractmethod
    def start(self) -> None:
        """Open the hardware, enumerate devices (emitting ``added``), start threads."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop threads and release the hardware; safe to call twice."""

    @abc.abstractmethod
    def devices(self) -> list[Device]:
        """The devices present now."""

    @abc.abstractmethod
    def arm(self, device_id: str, *, binning: bool = False) -> None:
        """Prepare the sensor for an exposure; it reports Ready when armed.

        A refusal (DriverError: busy, no sensor, fault...) obliges the driver
        to report when the device can take an arm: an idle report (``IDLE_DETAIL``),
        Ready, or the Initializing of a warm-up that ends in one of them.
        """

    @abc.abstractmethod
    def disarm(self, device_id: str) -> None:
        """Leave the armed state; a frame already being read still completes."""

    def flush(self, timeout: float = 5.0) -> None:
        """Return once every event the driver has produced so far went to ``emit``.

        Drivers that emit from their own threads override this, so the daemon
        can report a start-up or a control action only once its events are seen.
        """
