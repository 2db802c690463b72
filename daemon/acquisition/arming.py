"""The exposure state machine of a session: its state derived from the facts,
and the one arming rule the driver's reports drive.

Separate from ``sessions.py`` (which sessions exist, who holds which device,
their AcquisitionInfo) because this is the part that follows the device:
what each driver report does to a session's arm, and what state the client
is shown. The facts live on the ``Session`` (armed, sensor_ready, arm_sent,
armed_for, phase, fault); the callers hold the session's lock.

State is derived from the facts in one place, ``derive_state``:

    NoAcquisitionInfo -> (PUT info, enable) Initializing -> Ready
      -> Reading -> Processing -> Storing -> NewImage -> NoAcquisitionInfo

Arming follows one rule, ``Arming.keep_armed``: a session whose enabled
AcquisitionInfo still waits for its exposure, and that is not armed, is
armed as soon as its device can take it, whatever happened before. It runs
after every driver event and every AcquisitionInfo. What the device may have
lost takes ``armed`` away (``lost_arm``): a fault (NoHardware, NoSensor,
LowBattery, Error), an idle report (drivers/base.py ``IDLE_DETAIL``), an
Initializing after Ready (recalibration), the device removed or added, a
sensor changed. "Can take it" is: present, a sensor attached, its last
reported state neither a fault nor Reading. An arm the driver refuses
(DriverError, e.g. BUSY while warming up) leaves the session unarmed; the
driver's next report (idle report, Ready, a state after a fault) brings
the rule back. Re-arming a device that kept its arm is harmless: it answers
Ready. A frame consumes the arm: one exposure per AcquisitionInfo
(``exposure.py``).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sensord.daemon.dsio.states import AcquisitionState
from sensord.drivers.base import DeviceEvent, DriverError, SensorState, StateEvent

from .devices import FAULTS, DeviceRegistry

if TYPE_CHECKING:
    from .sessions import Session

log = logging.getLogger("sensord.sessions")

# Between readout and NewImage: the dose is spent, the image on its way.
BUSY = frozenset({AcquisitionState.READING, AcquisitionState.PROCESSING, AcquisitionState.STORING})


def derive_state(s: Session, entry) -> tuple[AcquisitionState, bool]:
    """(state, ready) of a session from the facts; the one place the rules live."""
    if s.phase:
        return s.phase, False
    if entry is None or not entry.present:
        return AcquisitionState.NO_HARDWARE, False
    if entry.state in FAULTS:
        return AcquisitionState.of_sensor(entry.state), False
    if entry.device.sensor is None:
        return AcquisitionState.NO_SENSOR, False
    if s.fault:
        return s.fault, False
    if s.awaiting_info or s.info is None:
        return AcquisitionState.NO_ACQUISITION_INFO, False
    if not s.info["enable"]:
        return AcquisitionState.READY, False     # the device could expose; the client disabled it
    if s.armed and s.sensor_ready:
        return AcquisitionState.READY, True
    return AcquisitionState.INITIALIZING, False


class Arming:
    """The arming rule for the sessions on the devices of one registry."""

    def __init__(self, devices: DeviceRegistry) -> None:
        self.devices = devices

    def keep_armed(self, session: Session, *, asked: bool = False) -> None:
        """Arm ``session`` if its enabled AcquisitionInfo waits for an exposure,
        it is not armed, and its device can take an arm now.

        Runs after every driver event and AcquisitionInfo, so whatever took
        the arm away or refused it, the next report of a device able to take
        one brings it. ``asked`` (the client's PUT) tries any present device
        once, even one in a fault: it refuses or reports what stops it, and a
        refusal's events cannot loop back here as a device in a fault is never
        armed on an event.
        """
        info = session.info
        if (session.armed or session.deleted or session.phase or session.fault
                or session.awaiting_info or info is None or not info["enable"]):
            return
        entry = self.devices.find(session.device_id)
        if entry is None or not entry.present:
            return                      # armed when the device is added again
        if not asked and (entry.state in FAULTS or entry.state == SensorState.READING
                          or entry.device.sensor is None):
            return                      # armed when the driver reports the device able
        session.sensor_ready = False    # both drivers report Ready after every arm
        try:
            entry.driver.arm(session.device_id, binning=info["binning"] == "Binned2x2")
        except DriverError as err:
            # Refused (busy, no sensor, fault...): the driver reports when the device
            # can take an arm (an idle report, Ready, or a state after the fault).
            log.warning("session %s: cannot arm %s yet: %s", session.id, session.device_id, err)
            return
        session.armed = session.arm_sent = True
        session.armed_for = entry.device.sensor

    @staticmethod
    def lost_arm(session: Session, *, surely: bool = False) -> None:
        """The device may have lost our arm (``surely``: it did): ``keep_armed``
        arms again once the device can take it. A frame being read is lost."""
        session.armed = session.sensor_ready = False
        if surely:
            session.arm_sent = False
        if session.phase == AcquisitionState.READING:
            session.phase = None

    def disarm(self, session: Session) -> None:
        if not (session.armed or session.arm_sent):
            return
        session.armed = session.sensor_ready = session.arm_sent = False
        entry = self.devices.find(session.device_id)
        if entry is not None and entry.present:
            try:
                entry.driver.disarm(session.device_id)
            except DriverError as err:
                log.warning("session %s: disarm failed: %s", session.id, err)
            else:
                self.devices.disarmed(session.device_id)

    # -- driver events (dispatcher thread, the session's lock held) ------
    def on_state(self, session: Session, event: StateEvent) -> None:
        state = event.state
        if state == SensorState.READY:
            if session.armed:
                session.sensor_ready = True
            # Ready while we hold no arm: the device can take one (keep_armed).
        elif state == SensorState.READING:
            if session.armed:
                session.phase = AcquisitionState.READING
        elif state in FAULTS:
            # NoHardware: the link and the arm are gone. NoSensor, Error, LowBattery:
            # some devices keep the arm, some do not; arm again after it anyway.
            self.lost_arm(session, surely=state == SensorState.NO_HARDWARE)
        elif event.is_idle:
            self.lost_arm(session, surely=True)       # initialized and holding no arm
        else:                                         # Initializing: a warm-up or recalibration
            if session.sensor_ready:
                self.lost_arm(session)                # it left Ready unasked: the arm is in doubt
            session.sensor_ready = False
            if session.phase == AcquisitionState.READING:
                session.phase = None                  # the frame is lost

    def on_device(self, session: Session, event: DeviceEvent) -> None:
        if event.action in ("removed", "added"):
            # Unplugged, re-plugged or its driver restarted: a device that
            # (re)appears holds no arm, even without a "removed" before.
            self.lost_arm(session, surely=True)
        elif session.armed and event.device.sensor != session.armed_for:
            self.lost_arm(session)                    # sensor detached or swapped
