"""The daemon composed: each service built from the settings, started in
order, and closed one by one in reverse, each in its own try/except so one
failing close does not leave the others open."""
from __future__ import annotations

import functools
import logging
from pathlib import Path

from filters import png

from . import auth
from .scheduler import Scheduler
from .session_images import NoSessions
from .settings import Settings
from .store import ResourceStore

log = logging.getLogger("sensord")


class Sensord:
    def __init__(self, settings: Settings):
        self.settings = settings
        state = Path(settings.store.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        users = auth.ensure_users(settings.auth.users, state)
        self.auth = auth.Authenticator(users, realm=settings.auth.realm)
        images = settings.images
        self.store = ResourceStore(
            state / "resources",
            lifetime=settings.store.lifetime_seconds,
            quota_bytes=settings.store.quota_mb << 20,
            pixel_cache_bytes=settings.store.pixel_cache_mb << 20,
            decode=functools.partial(png.decode_gray16, max_width=images.max_width,
                                     max_height=images.max_height),
        )
        self.session_images = NoSessions()
        self.scheduler = Scheduler()
        self._started: list = []

    def start(self) -> None:
        for service in (self.store, self.scheduler):
            service.start()
            self._started.append(service)
        self.scheduler.every(self.settings.store.sweep_seconds, self.store.sweep, name="store-sweep")

    def close(self) -> None:
        while self._started:
            service = self._started.pop()
            try:
                service.close()
            except Exception:
                log.exception("closing %s failed", type(service).__name__)
