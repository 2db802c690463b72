"""Images acquired in sessions, on disk, and the lookup the Filters API uses.

Each session keeps its images under ``<state_dir>/sessions/<session id>/``:
``<image id>.png`` (what imageUrl serves) and ``<image id>.jpg`` (the
preview), both fsynced before the image is announced. Sessions do not outlive
the daemon, so the folder is cleared at start.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from sensord.daemon.durable import fsync_dir, write_file
from sensord.daemon.store.pixel_budget import PixelBudget, decode_png
from sensord.daemon.store.pixel_cache import CacheScope, PixelCache

log = logging.getLogger("sensord.images")


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


@dataclass
class StoredImage:
    """One acquired image: its ImageInfo (without URLs) and its files."""
    id: str
    session_id: str
    image_info: dict
    png_path: Path
    preview_path: Path
    cache: CacheScope = field(repr=False)
    budget: PixelBudget | None = field(default=None, repr=False)

    def media(self) -> bytes | None:
        try:
            return self.png_path.read_bytes()
        except FileNotFoundError:
            return None

    def preview(self) -> bytes | None:
        try:
            return self.preview_path.read_bytes()
        except FileNotFoundError:
            return None

    def pixels(self) -> np.ndarray | None:
        cached = self.cache.get(self.id)
        if cached is not None:
            return cached
        data = self.media()
        if data is None:
            return None
        # Our own PNG: no size bound to enforce, only the decode to redo.
        # (The decode's working memory is reserved from the pixel budget.)
        return self.cache.put(self.id, decode_png(self.budget, data, max_width=65535, max_height=65535))


class ImageFolder:
    """Writes and removes the files of session images."""

    def __init__(self, root: Path, *, pixel_cache: PixelCache, pixel_budget: PixelBudget | None = None):
        self.root = Path(root)
        # Shared with the resource store under one budget; our keys are image ids.
        self.cache = pixel_cache.scope("session images")
        self.budget = pixel_budget

    def start(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
            log.info("cleared session images left by the previous run")
        self.root.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        pass

    def save(self, session_id: str, image_id: str, *, png: bytes, preview: bytes,
             pixels: np.ndarray, image_info: dict) -> StoredImage:
        folder = self.root / session_id
        new_folder = not folder.exists()
        folder.mkdir(exist_ok=True)
        image = StoredImage(image_id, session_id, image_info, folder / f"{image_id}.png",
                            folder / f"{image_id}.jpg", self.cache, self.budget)
        write_file(image.png_path, png)
        write_file(image.preview_path, preview)
        fsync_dir(folder)
        if new_folder:
            fsync_dir(self.root)
        self.cache.put(image_id, pixels)
        return image

    def remove_image(self, image: StoredImage) -> None:
        self.cache.drop(image.id)
        image.png_path.unlink(missing_ok=True)
        image.preview_path.unlink(missing_ok=True)

    def remove_session(self, session_id: str, image_ids) -> None:
        for image_id in image_ids:
            self.cache.drop(image_id)
        shutil.rmtree(self.root / session_id, ignore_errors=True)
