"""The daemon composed: each service built from the settings, started in
order, and closed one by one in reverse, each in its own try/except so one
failing close does not leave the others open."""
from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

from .acquisition.devices import DeviceRegistry
from .acquisition.hotplug import SerialPortWatcher
from .acquisition.session_images import ImageFolder
from .acquisition.sessions import AcquisitionOptions, SessionManager
from .api import auth, roles
from .api.lockout import Lockout
from .forward import filter_spec
from .forward.delivery import Forwarder, build_targets
from .forward.outbox import Outbox
from .forward.rules import Forwarding
from .live.hub import Hub, SubscriberLimit
from .live.status_feed import StatusFeed
from .live.status_snapshot import status_snapshot
from .scheduler import Scheduler
from .settings import Settings
from .store.pixel_budget import PixelBudget, decode_png
from .store.pixel_cache import PixelCache
from .store.resources import ResourceStore

log = logging.getLogger("sensord")


class Sensord:
    def __init__(self, settings: Settings):
        self.settings = settings
        state = Path(settings.store.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        users = auth.ensure_users(settings.auth.users, state)
        au = settings.auth
        self.auth = auth.Authenticator(
            users, realm=au.realm, roles=roles.effective_roles(au.users, au.roles, auth.DEFAULT_USER),
            lockout=Lockout(max_failures=au.max_failures, seconds=au.lockout_seconds,
                            max_seconds=au.lockout_max_seconds),
            max_concurrent_checks=au.max_concurrent_checks)
        images = settings.images
        # One budget for the working memory of every decode and filter in
        # progress (requests, forwards, exposures), built once and shared.
        self.pixel_budget = PixelBudget(images.pixel_budget_mb << 20,
                                        wait_seconds=images.pixel_budget_wait_seconds)
        self.pixel_budget.warn_unless_fits(images.max_width, images.max_height)
        # One budget for every decoded pixel in memory: the store's and the sessions' share it.
        self.pixel_cache = PixelCache(settings.store.pixel_cache_mb << 20)
        self.store = ResourceStore(
            state / "resources",
            lifetime=settings.store.lifetime_seconds,
            quota_bytes=settings.store.quota_mb << 20,
            pixel_cache=self.pixel_cache,
            decode=functools.partial(decode_png, self.pixel_budget, max_width=images.max_width,
                                     max_height=images.max_height),
        )
        acq = settings.acquisition
        self.subscribers = SubscriberLimit(acq.max_subscribers)
        self.devices = DeviceRegistry(settings.drivers.urls, hub=Hub(self.subscribers))
        self.image_folder = ImageFolder(state / "sessions", pixel_cache=self.pixel_cache,
                                        pixel_budget=self.pixel_budget)
        self.sessions = SessionManager(self.devices, self.image_folder, self.subscribers, AcquisitionOptions(
            hash_alg=acq.hash_alg, gamma=acq.gamma, png_compression=images.png_compression,
            preview_max=acq.preview_max, min_free_bytes=acq.min_free_mb << 20),
            pixel_budget=self.pixel_budget)
        self.session_images = self.sessions       # what the Filters API looks images up in
        forward = settings.forward
        for rule in forward.rules:
            filter_spec.parse(rule.get("filter", "raw"))    # a bad rule stops the start
        self.outbox = Outbox(state / "outbox")
        self.forwarder = Forwarder(self.outbox, build_targets(forward.targets, state_dir=state),
                                   work_dir=state / "outbox" / "work", pixel_budget=self.pixel_budget)
        self.forwarding = Forwarding(self.outbox, self.forwarder, forward.rules)
        self.sessions.image_acquired.connect(self.forwarding.on_acquired)
        self.status_feed = StatusFeed(functools.partial(status_snapshot, self, started=time.time()),
                                      Hub(self.subscribers))
        self.devices.driver_events.connect(self.status_feed.notify)
        self.sessions.session_changed.connect(self.status_feed.notify)
        self.scheduler = Scheduler()
        self._started: list = []

    def start(self) -> None:
        for service in (self.store, self.outbox, self.forwarder, self.image_folder, self.sessions,
                        self.devices, self.scheduler, self.status_feed):
            service.start()
            self._started.append(service)
        self.scheduler.every(self.settings.store.sweep_seconds, self.store.sweep, name="store-sweep")
        self.scheduler.every(self.settings.forward.poll_seconds, self.forwarder.tick, name="forward")
        if self.settings.drivers.serial_ports:
            watcher = SerialPortWatcher(self.devices, self.settings.drivers.serial_ports)
            watcher.poll()
            self.scheduler.every(self.settings.drivers.poll_seconds, watcher.poll, name="serial-ports")

    def end_event_streams(self) -> None:
        """End every server-sent event stream, so their worker threads return
        before the HTTP server waits for its threads at shutdown."""
        self.devices.hub.close()
        self.status_feed.close()
        for session in self.sessions.list():
            session.hub.close()

    def close(self) -> None:
        while self._started:
            service = self._started.pop()
            try:
                service.close()
            except Exception:
                log.exception("closing %s failed", type(service).__name__)
