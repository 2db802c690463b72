"""What the acquisition room tells the rest of the daemon, as typed events.

The device registry passes each driver event (``DeviceEvent``, ``StateEvent``,
``FrameEvent`` from sensord.drivers.base) on unchanged once it has applied it;
the session manager adds the two below. They travel on ``Signal``s
(sensord.daemon.signals) that service.py connects to their handlers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:       # only for the annotations: sessions imports this module
    from .session_images import StoredImage
    from .sessions import Session


@dataclass(frozen=True)
class SessionChanged:
    """A session was created or deleted, or its AcquisitionStatus changed."""
    session: Session


@dataclass(frozen=True)
class ImageAcquired:
    """An exposure's image is on disk and not yet announced (NewImage).

    Emitted strictly: a handler that raises makes the exposure fail, and the
    image is removed instead of announced.
    """
    session: Session
    image: StoredImage


@dataclass(frozen=True)
class ExposureEnded:
    """An exposure's frame was handled: its image announced (``result``
    "image", after NewImage) or lost ("lost": the session shows the fault).

    ``readout_to_new_image``: seconds from the end of the sensor's readout to
    NewImage (None when lost, or when the driver reported no readout time).
    """
    device_id: str
    result: str
    readout_to_new_image: float | None = None
