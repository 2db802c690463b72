"""Acquisition sessions: who holds which device, the exposure state machine,
and the images each exposure leaves.

State is kept as facts (device present and healthy, info given, armed,
ready reported, processing phase, our own fault) and the spec's state is
derived from them in one place, ``derive_state``; every change publishes the
status to the session's event stream when it differs from the last one.

    NoAcquisitionInfo -> (PUT info, enable) Initializing -> Ready
      -> Reading -> Processing -> Storing -> NewImage -> NoAcquisitionInfo

Arming follows one rule, ``_keep_armed``: a session whose enabled
AcquisitionInfo still waits for its exposure, and that is not armed, is
armed as soon as its device can take it, whatever happened before. It runs
after every driver event and every AcquisitionInfo. What the device may have
lost takes ``armed`` away (``_lost_arm``): a fault (NoHardware, NoSensor,
LowBattery, Error), an idle report (drivers/base.py ``IDLE_DETAIL``), an
Initializing after Ready (recalibration), the device removed or added, a
sensor changed. "Can take it" is: present, a sensor attached, its last
reported state neither a fault nor Reading. An arm the driver refuses
(DriverError, e.g. BUSY while warming up) leaves the session unarmed; the
driver's next report (idle report, Ready, a state after a fault) brings
the rule back. Re-arming a device that kept its arm is harmless: it answers
Ready. A frame consumes the arm: one exposure per AcquisitionInfo.

Driver events arrive on the device registry's dispatcher thread; the session
lock is never held while a frame is processed, so the API answers (423)
at once during an exposure.
"""
from __future__ import annotations

import builtins
import errno
import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field

from sensord.daemon.dsio.acquisition_info import asked_binning, parse_acquisition_info
from sensord.daemon.dsio.states import AcquisitionState
from sensord.daemon.dsio.timefmt import iso
from sensord.daemon.errors import ServiceError
from sensord.daemon.live.hub import Hub, SubscriberLimit
from sensord.daemon.signals import Signal
from sensord.daemon.store.pixel_budget import PixelBudget
from sensord.drivers.base import (
    DeviceEvent,
    DriverError,
    Event,
    FrameEvent,
    Sensor,
    SensorState,
    StateEvent,
)

from . import pipeline
from .devices import FAULTS, DeviceInUse, DeviceRegistry, device_json, sensor_json
from .events import ExposureEnded, ImageAcquired, SessionChanged
from .session_images import ImageFolder, StoredImage

log = logging.getLogger("sensord.sessions")

BUSY = frozenset({AcquisitionState.READING, AcquisitionState.PROCESSING, AcquisitionState.STORING})


class SessionNotFound(ServiceError, LookupError):
    status = 404


class Locked(ServiceError):
    """AcquisitionInfo cannot change while an exposure is being read."""
    status = 423


class InsufficientStorage(ServiceError):
    status = 507


@dataclass
class Session:
    id: str
    device_id: str
    client_name: str
    context: dict
    created_on: float
    hub: Hub
    owner: str = ""                 # the user who created it (api/roles.py decides who sees it)
    info: dict | None = None
    awaiting_info: bool = True      # each exposure needs its own AcquisitionInfo
    armed: bool = False             # the device holds our arm for this AcquisitionInfo
    sensor_ready: bool = False      # the driver reported Ready since we armed
    arm_sent: bool = False          # an arm of ours may still be held (so disarm it);
                                    # cleared only when the device surely holds none
    armed_for: Sensor | None = None     # the sensor attached when the arm was taken
    phase: AcquisitionState | None = None   # Reading / Processing / Storing / NewImage
    fault: AcquisitionState | None = None   # InsufficientStorage or Error from our own side
    last_image_id: str | None = None
    total_images: int = 0
    images: dict = field(default_factory=dict)
    last_status: dict | None = None
    last_timings: dict = field(default_factory=dict)
    deleted: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def to_json(self) -> dict:
        return {"sessionId": self.id, "deviceId": self.device_id, "clientName": self.client_name,
                "createdOn": iso(self.created_on), "context": self.context}


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


@dataclass(frozen=True)
class AcquisitionOptions:
    hash_alg: str = "MD5"
    gamma: float = 2.3
    png_compression: int = 1
    preview_max: int = 256
    min_free_bytes: int = 256 << 20


class SessionManager:
    def __init__(self, devices: DeviceRegistry, folder: ImageFolder, limit: SubscriberLimit,
                 options: AcquisitionOptions, *, pixel_budget: PixelBudget | None = None):
        self.devices = devices
        self.folder = folder
        self.limit = limit
        self.options = options
        # Exposures are admitted at once and counted (a dose was given; see store/pixel_budget.py).
        self.pixel_budget = pixel_budget or PixelBudget(1 << 62)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        # Once the image is on disk and before NewImage is announced (the
        # outbox queues it there); emitted strictly, see ImageAcquired.
        self.image_acquired: Signal[ImageAcquired] = Signal("image acquired")
        # When a session is created or deleted and whenever its status changes.
        self.session_changed: Signal[SessionChanged] = Signal("session changed")
        # Once an exposure's image was announced, or the exposure was lost (the metrics).
        self.exposure_ended: Signal[ExposureEnded] = Signal("exposure ended")
        devices.driver_events.connect(self.on_event)

    def start(self) -> None:
        pass

    def close(self) -> None:
        for session in list(self._sessions.values()):
            session.hub.close()

    # -- lookups ---------------------------------------------------------
    def get(self, sid: str) -> Session:
        with self._lock:
            session = self._sessions.get(sid)
        if session is None:
            raise SessionNotFound(f"no acquisition session {sid!r}")
        return session

    def list(self, device_id: str | None = None) -> list[Session]:
        with self._lock:
            sessions = list(self._sessions.values())
        return [s for s in sessions if device_id is None or s.device_id == device_id]

    def _by_device(self, device_id: str) -> Session | None:
        with self._lock:
            for session in self._sessions.values():
                if session.device_id == device_id:
                    return session
        return None

    # (``builtins.list`` below: in the class body, ``list`` is now the method above.)
    def busy(self) -> builtins.list[str]:
        """Sessions with an exposure between readout and NewImage: work a
        graceful stop waits for, since the X-ray dose is already spent."""
        return [s.id for s in self.list() if s.phase in BUSY]

    def find(self, session_id: str, image_id: str) -> StoredImage | None:
        """The SessionImages lookup of the Filters API."""
        with self._lock:
            session = self._sessions.get(session_id)
        return session.images.get(image_id) if session is not None else None

    def status(self, session: Session) -> dict:
        state, ready = derive_state(session, self.devices.find(session.device_id))
        status = {"ready": ready, "state": state, "lastImageId": session.last_image_id,
                  "totalImages": session.total_images}
        if session.last_image_id is None:
            # The spec types it a string, never null: absent until the first
            # image (which the vendor SDK, like any Newtonsoft reader, takes as null).
            del status["lastImageId"]
        return status

    def _publish(self, session: Session, *, force: bool = False) -> None:
        status = self.status(session)
        if force or status != session.last_status:
            session.last_status = status
            session.hub.publish("message", status)
            self._changed(session)

    def _changed(self, session: Session) -> None:
        self.session_changed.emit(SessionChanged(session))

    # -- create / update / delete -----------------------------------------
    def _check_storage(self) -> None:
        free = shutil.disk_usage(self.folder.root).free
        if free < self.options.min_free_bytes:
            raise InsufficientStorage(f"not enough storage available: {free >> 20} MiB free on the state disk, "
                                      f"{self.options.min_free_bytes >> 20} MiB needed")

    def create(self, fields: dict, *, owner: str = "") -> Session:
        self._check_storage()
        sid = str(uuid.uuid4())
        # DeviceNotFound / DeviceInUse: a device held by anyone's session is
        # refused (409) whoever asks; the device list is shared anyway.
        self.devices.claim(fields["deviceId"], sid)
        session = Session(sid, fields["deviceId"], fields.get("clientName", ""),
                          fields.get("context", {}), time.time(), Hub(self.limit), owner=owner)
        with self._lock:
            self._sessions[sid] = session
        session.last_status = self.status(session)
        self._changed(session)
        log.info("session %s created on device %s for %r", sid, session.device_id, session.client_name)
        return session

    def update(self, session: Session, fields: dict) -> Session:
        with session.lock:
            new_device = fields.get("deviceId")
            if new_device and new_device != session.device_id:
                if session.phase in BUSY:
                    raise DeviceInUse("an exposure is being read; switch devices after it")
                self.devices.claim(new_device, session.id)
                self._disarm(session)
                self.devices.release(session.device_id, session.id)
                log.info("session %s moved from device %s to %s", session.id, session.device_id, new_device)
                session.device_id = new_device
                session.awaiting_info, session.fault = True, None
            if "clientName" in fields:
                session.client_name = fields["clientName"]
            if "context" in fields:
                session.context = fields["context"]
            self._publish(session)
        return session

    def delete(self, session: Session) -> None:
        with session.lock:
            session.deleted = True
            self._disarm(session)
            with self._lock:
                self._sessions.pop(session.id, None)
            self.devices.release(session.device_id, session.id)
            session.hub.close()
            self.folder.remove_session(session.id, list(session.images))
        self._changed(session)
        log.info("session %s deleted with %d images", session.id, session.total_images)

    # -- acquisition info ------------------------------------------------
    def set_info(self, session: Session, body) -> dict:
        with session.lock:
            if session.phase in BUSY:
                raise Locked(f"AcquisitionInfo cannot change now: an exposure is being read ({session.phase})")
            info = parse_acquisition_info(body, session.info)    # ValueError -> 400
            info = self._binning_for_sensor(session, body, info)
            session.info, session.awaiting_info, session.fault = info, False, None
            if info["enable"]:
                try:
                    self._check_storage()
                except InsufficientStorage as err:
                    log.warning("session %s: %s", session.id, err)
                    session.fault = AcquisitionState.INSUFFICIENT_STORAGE
                    self._disarm(session)
                else:
                    # This AcquisitionInfo needs its own arm (binning may differ) and its
                    # own Ready. The client asked: try even a device in a fault, once.
                    session.armed = session.sensor_ready = False
                    self._keep_armed(session, asked=True)
            else:
                self._disarm(session)
            self._publish(session)
            return info

    def _binning_for_sensor(self, session: Session, body, info: dict) -> dict:
        """Binned2x2 asked of a sensor that cannot bin is a ValueError (400);
        one kept from before (the sensor was swapped, the session moved) falls
        back to Unbinned, what the sensor will deliver. Without a sensor
        attached nothing is known yet: the exposure reports what was done."""
        if info["binning"] != "Binned2x2":
            return info
        entry = self.devices.find(session.device_id)
        sensor = entry.device.sensor if entry is not None else None
        if sensor is None or sensor.supports_binning:
            return info
        if asked_binning(body) is not None:
            raise ValueError(f"binning Binned2x2 is not possible: the sensor {sensor.model_name} "
                             f"(serial {sensor.serial_number}) on device {session.device_id} cannot bin; "
                             "send Unbinned or null")
        return {**info, "binning": "Unbinned"}

    # -- arming: the one rule --------------------------------------------
    def _keep_armed(self, session: Session, *, asked: bool = False) -> None:
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
    def _lost_arm(session: Session, *, surely: bool = False) -> None:
        """The device may have lost our arm (``surely``: it did): ``_keep_armed``
        arms again once the device can take it. A frame being read is lost."""
        session.armed = session.sensor_ready = False
        if surely:
            session.arm_sent = False
        if session.phase == AcquisitionState.READING:
            session.phase = None

    def _disarm(self, session: Session) -> None:
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

    # -- driver events (dispatcher thread) -------------------------------
    def on_event(self, event: Event) -> None:
        device_id = event.device.device_id if isinstance(event, DeviceEvent) else event.device_id
        session = self._by_device(device_id)
        if session is None:
            if isinstance(event, FrameEvent):
                log.warning("frame from device %s without a session: dropped", device_id)
            return
        if isinstance(event, FrameEvent):
            self._on_frame(session, event)
            return
        with session.lock:
            if isinstance(event, StateEvent):
                self._on_state(session, event)
            else:
                self._on_device(session, event)
            self._keep_armed(session)
            self._publish(session)

    def _on_state(self, session: Session, event: StateEvent) -> None:
        state = event.state
        if state == SensorState.READY:
            if session.armed:
                session.sensor_ready = True
            # Ready while we hold no arm: the device can take one (_keep_armed).
        elif state == SensorState.READING:
            if session.armed:
                session.phase = AcquisitionState.READING
        elif state in FAULTS:
            # NoHardware: the link and the arm are gone. NoSensor, Error, LowBattery:
            # some devices keep the arm, some do not; arm again after it anyway.
            self._lost_arm(session, surely=state == SensorState.NO_HARDWARE)
        elif event.is_idle:
            self._lost_arm(session, surely=True)      # initialized and holding no arm
        else:                                         # Initializing: a warm-up or recalibration
            if session.sensor_ready:
                self._lost_arm(session)               # it left Ready unasked: the arm is in doubt
            session.sensor_ready = False
            if session.phase == AcquisitionState.READING:
                session.phase = None                  # the frame is lost

    def _on_device(self, session: Session, event: DeviceEvent) -> None:
        if event.action in ("removed", "added"):
            # Unplugged, re-plugged or its driver restarted: a device that
            # (re)appears holds no arm, even without a "removed" before.
            self._lost_arm(session, surely=True)
        elif session.armed and event.device.sensor != session.armed_for:
            self._lost_arm(session)                   # sensor detached or swapped

    def _on_frame(self, session: Session, frame: FrameEvent) -> None:
        with session.lock:
            # (Armed implies an AcquisitionInfo: _keep_armed needs one.)
            if not session.armed or session.deleted or session.info is None:
                log.warning("frame from %s while not armed: dropped", frame.device_id)
                if not session.deleted:
                    self._keep_armed(session)     # the read-out device is idle: arm it if still wanted
                    self._publish(session)
                return
            entry = self.devices.find(session.device_id)
            info = dict(session.info)
            # One exposure per AcquisitionInfo: the frame used the arm up.
            session.armed = session.sensor_ready = session.arm_sent = False
            session.phase = AcquisitionState.PROCESSING
            self._publish(session)
        started = time.monotonic()
        image_id = str(uuid.uuid4())
        try:
            opts = self.options
            if entry is None:
                raise RuntimeError(f"device {session.device_id} is no longer registered")
            with self.pixel_budget.admit(pipeline.footprint(frame), what=f"an exposure on {frame.device_id}"):
                processed = pipeline.process(
                    frame, entry.device.sensor, rotation=info["rotation"],
                    binning=info["binning"] == "Binned2x2", apply_lut=info["applyLut"],
                    hash_alg=opts.hash_alg, gamma=opts.gamma, png_compression=opts.png_compression,
                    preview_max=opts.preview_max)
            with session.lock:
                if session.deleted:
                    return
                session.phase = AcquisitionState.STORING
                self._publish(session)
            stored_at = time.monotonic()
            image = self.folder.save(session.id, image_id, png=processed.png, preview=processed.preview,
                                     pixels=processed.pixels,
                                     image_info=self._image_info(image_id, processed, entry, info))
            try:
                self.image_acquired.emit_strict(ImageAcquired(session, image))
            except Exception:
                self.folder.remove_image(image)    # not announced, so not kept either
                raise
        except Exception as err:
            disk_full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
            log.error("session %s: exposure lost: %s", session.id, err, exc_info=not disk_full)
            with session.lock:
                session.phase = None
                session.awaiting_info = True
                session.fault = (AcquisitionState.INSUFFICIENT_STORAGE if disk_full
                                 else AcquisitionState.ERROR)
                self._publish(session)
            self.exposure_ended.emit(ExposureEnded(session.device_id, "lost"))
            return
        with session.lock:
            if session.deleted:
                self.folder.remove_session(session.id, [image_id])
                return
            session.images[image_id] = image
            session.last_image_id = image_id
            session.total_images += 1
            session.phase = AcquisitionState.NEW_IMAGE
            self._publish(session, force=True)
            announced = time.monotonic()
            session.phase = None
            session.awaiting_info = True
            self._publish(session)
        session.last_timings = {
            **processed.timings, "store": announced - stored_at,
            "readout_end_to_new_image": announced - frame.read_ended if frame.read_ended else None,
            "handling": announced - started,
        }
        self.exposure_ended.emit(ExposureEnded(session.device_id, "image",
                                               session.last_timings["readout_end_to_new_image"]))
        log.info("session %s: image %s (%dx%d) ready %.0f ms after readout", session.id, image_id,
                 processed.width, processed.height, (announced - (frame.read_ended or started)) * 1e3)

    def _image_info(self, image_id: str, processed, entry, info: dict) -> dict:
        sensor = entry.device.sensor
        scale = 2 if processed.binning == "Binned2x2" else 1
        return {
            "id": image_id, "createdOn": iso(time.time()),
            "width": processed.width, "height": processed.height,
            "bitsPerPixel": 16 if processed.lut_info else sensor.bits, "bytesPerPixel": 2,
            "pixelSizeX": sensor.pixel_size_mm * scale, "pixelSizeY": sensor.pixel_size_mm * scale,
            "previewUrl": None, "imageUrl": None,
            "pixelHash": processed.pixel_hash,
            "deviceInfo": device_json(entry), "sensorInfo": sensor_json(entry.device),
            "acquisitionInfo": {**info, "binning": processed.binning},
            "exposureInfo": processed.exposure_info,
            # LutInfo is an object in the spec, never null: absent when no map was applied.
            **({"lutInfo": processed.lut_info} if processed.lut_info else {}),
        }
