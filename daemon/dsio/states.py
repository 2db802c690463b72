"""The state names of the Modality API: AcquisitionStatus.state and DeviceStatus.

Both are ``StrEnum``s whose values are the spec's strings, so they serialize
to JSON exactly as the bare strings did and compare equal to them. The
sensor's own states (``SensorState``) are declared by the drivers, which
cannot import the daemon; every one of them is also an AcquisitionState.
"""
from __future__ import annotations

import enum

from sensord.drivers.base import SensorState


class AcquisitionState(enum.StrEnum):
    """AcquisitionStatus.state: where a session's next exposure stands."""
    NO_ACQUISITION_INFO = "NoAcquisitionInfo"
    INITIALIZING = "Initializing"
    READY = "Ready"
    READING = "Reading"
    PROCESSING = "Processing"
    STORING = "Storing"
    NEW_IMAGE = "NewImage"
    NO_HARDWARE = "NoHardware"
    NO_SENSOR = "NoSensor"
    LOW_BATTERY = "LowBattery"
    INSUFFICIENT_STORAGE = "InsufficientStorage"
    ERROR = "Error"

    @classmethod
    def of_sensor(cls, state: SensorState) -> AcquisitionState:
        """The session state a sensor state shows as (the same name)."""
        return cls(state.value)


class DeviceStatus(enum.StrEnum):
    """DeviceInfo.status: whether a device can be used for a session."""
    AVAILABLE = "Available"
    IN_USE = "InUse"
    UNAVAILABLE = "Unavailable"
    ERROR = "Error"
