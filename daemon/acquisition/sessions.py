"""Acquisition sessions: which exist, who holds which device, their
AcquisitionInfo, and the images each exposure leaves.

The registry and the lifecycle (create, update, delete; the status each
change publishes to the session's event stream when it differs from the
last one). What the driver's reports do to a session, its derived state
and the arming rule, is ``arming.py``; the work of one exposure, from a
frame to the announced image, is ``exposure.py``.

Driver events arrive on the device registry's dispatcher thread; the session
lock is never held while a frame is processed, so the API answers (423)
at once during an exposure.
"""
from __future__ import annotations

import builtins
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
from sensord.drivers.base import DeviceEvent, Event, FrameEvent, Sensor, StateEvent

from .arming import BUSY, Arming, derive_state
from .devices import DeviceInUse, DeviceRegistry
from .events import ExposureEnded, ImageAcquired, SessionChanged
from .exposure import expose
from .session_images import ImageFolder, StoredImage

log = logging.getLogger("sensord.sessions")


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
        self.arming = Arming(devices)
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

    def publish(self, session: Session, *, force: bool = False) -> None:
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
                self.arming.disarm(session)
                self.devices.release(session.device_id, session.id)
                log.info("session %s moved from device %s to %s", session.id, session.device_id, new_device)
                session.device_id = new_device
                session.awaiting_info, session.fault = True, None
            if "clientName" in fields:
                session.client_name = fields["clientName"]
            if "context" in fields:
                session.context = fields["context"]
            self.publish(session)
        return session

    def delete(self, session: Session) -> None:
        with session.lock:
            session.deleted = True
            self.arming.disarm(session)
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
                    self.arming.disarm(session)
                else:
                    # This AcquisitionInfo needs its own arm (binning may differ) and its
                    # own Ready. The client asked: try even a device in a fault, once.
                    session.armed = session.sensor_ready = False
                    self.arming.keep_armed(session, asked=True)
            else:
                self.arming.disarm(session)
            self.publish(session)
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

    # -- driver events (dispatcher thread) -------------------------------
    def on_event(self, event: Event) -> None:
        device_id = event.device.device_id if isinstance(event, DeviceEvent) else event.device_id
        session = self._by_device(device_id)
        if session is None:
            if isinstance(event, FrameEvent):
                log.warning("frame from device %s without a session: dropped", device_id)
            return
        if isinstance(event, FrameEvent):
            expose(self, session, event)
            return
        with session.lock:
            if isinstance(event, StateEvent):
                self.arming.on_state(session, event)
            else:
                self.arming.on_device(session, event)
            self.arming.keep_armed(session)
            self.publish(session)
