"""One exposure of a session: from the driver's frame to the image on disk, announced.

The frame uses the session's arm up (one exposure per AcquisitionInfo),
then the session goes Processing (``pipeline.py``, within the pixel
budget) -> Storing (``session_images.py``) -> NewImage -> NoAcquisitionInfo,
and ``image_acquired`` / ``exposure_ended`` are emitted. An exposure that
fails is lost: the session shows Error (InsufficientStorage for a full
disk) until its next AcquisitionInfo.

Separate from ``sessions.py`` (the registry of sessions) and ``arming.py``
(the arm and the driver's reports) because this is the work an exposure
does, mostly outside the session's lock: the lock is never held while a
frame is processed, so the API answers (423) at once during an exposure.
"""
from __future__ import annotations

import errno
import logging
import time
import uuid
from typing import TYPE_CHECKING

from sensord.daemon.dsio.states import AcquisitionState
from sensord.daemon.dsio.timefmt import iso
from sensord.drivers.base import FrameEvent

from . import pipeline
from .devices import device_json, sensor_json
from .events import ExposureEnded, ImageAcquired

if TYPE_CHECKING:
    from .sessions import Session, SessionManager

log = logging.getLogger("sensord.sessions")


def expose(manager: SessionManager, session: Session, frame: FrameEvent) -> None:
    """Handle ``frame`` of ``session`` on the registry's dispatcher thread."""
    with session.lock:
        # (Armed implies an AcquisitionInfo: keep_armed needs one.)
        if not session.armed or session.deleted or session.info is None:
            log.warning("frame from %s while not armed: dropped", frame.device_id)
            if not session.deleted:
                manager.arming.keep_armed(session)    # the read-out device is idle: arm it if still wanted
                manager.publish(session)
            return
        entry = manager.devices.find(session.device_id)
        info = dict(session.info)
        # One exposure per AcquisitionInfo: the frame used the arm up.
        session.armed = session.sensor_ready = session.arm_sent = False
        session.phase = AcquisitionState.PROCESSING
        manager.publish(session)
    started = time.monotonic()
    image_id = str(uuid.uuid4())
    try:
        opts = manager.options
        if entry is None:
            raise RuntimeError(f"device {session.device_id} is no longer registered")
        with manager.pixel_budget.admit(pipeline.footprint(frame), what=f"an exposure on {frame.device_id}"):
            processed = pipeline.process(
                frame, entry.device.sensor, rotation=info["rotation"],
                binning=info["binning"] == "Binned2x2", apply_lut=info["applyLut"],
                hash_alg=opts.hash_alg, gamma=opts.gamma, png_compression=opts.png_compression,
                preview_max=opts.preview_max)
        with session.lock:
            if session.deleted:
                return
            session.phase = AcquisitionState.STORING
            manager.publish(session)
        stored_at = time.monotonic()
        image = manager.folder.save(session.id, image_id, png=processed.png, preview=processed.preview,
                                    pixels=processed.pixels,
                                    image_info=_image_info(image_id, processed, entry, info))
        try:
            manager.image_acquired.emit_strict(ImageAcquired(session, image))
        except Exception:
            manager.folder.remove_image(image)    # not announced, so not kept either
            raise
    except Exception as err:
        disk_full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
        log.error("session %s: exposure lost: %s", session.id, err, exc_info=not disk_full)
        with session.lock:
            session.phase = None
            session.awaiting_info = True
            session.fault = (AcquisitionState.INSUFFICIENT_STORAGE if disk_full
                             else AcquisitionState.ERROR)
            manager.publish(session)
        manager.exposure_ended.emit(ExposureEnded(session.device_id, "lost"))
        return
    with session.lock:
        if session.deleted:
            manager.folder.remove_session(session.id, [image_id])
            return
        session.images[image_id] = image
        session.last_image_id = image_id
        session.total_images += 1
        session.phase = AcquisitionState.NEW_IMAGE
        manager.publish(session, force=True)
        announced = time.monotonic()
        session.phase = None
        session.awaiting_info = True
        manager.publish(session)
    session.last_timings = {
        **processed.timings, "store": announced - stored_at,
        "readout_end_to_new_image": announced - frame.read_ended if frame.read_ended else None,
        "handling": announced - started,
    }
    manager.exposure_ended.emit(ExposureEnded(session.device_id, "image",
                                              session.last_timings["readout_end_to_new_image"]))
    log.info("session %s: image %s (%dx%d) ready %.0f ms after readout", session.id, image_id,
             processed.width, processed.height, (announced - (frame.read_ended or started)) * 1e3)


def _image_info(image_id: str, processed, entry, info: dict) -> dict:
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
