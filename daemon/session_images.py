"""What the Filters API needs from acquisition sessions: find a live image.

A resource made with POST /images/modality keeps only the session and image
ids; every read goes back to the session, so when the session ends the
resource's media is gone (410) without any bookkeeping here.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class SessionImage(Protocol):
    image_info: dict

    def media(self) -> bytes | None: ...
    def pixels(self) -> np.ndarray | None: ...


class SessionImages(Protocol):
    def find(self, session_id: str, image_id: str) -> SessionImage | None: ...


class NoSessions:
    """The lookup used while no acquisition service is composed in."""

    def find(self, session_id: str, image_id: str) -> None:
        return None
