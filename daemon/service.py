"""The daemon composed: each service built from the settings, started in
order, and closed one by one in reverse, each in its own try/except so one
failing close does not leave the others open."""
from __future__ import annotations

import functools
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import health_checks, malloc

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
from .health_checks import HealthChecks
from .live.hub import Hub, SubscriberLimit
from .live.status_feed import StatusFeed
from .live.status_snapshot import status_snapshot
from .metrics import Metrics, OutboxDepth, Readings
from .scheduler import Scheduler
from .settings import Settings
from .store.pixel_budget import PixelBudget, decode_png
from .store.pixel_cache import PixelCache
from .store.resources import ResourceStore
from .worklist.binding import Bindings
from .worklist.items import Worklist

if TYPE_CHECKING:
    from .forward.commitment import CommitmentListener
    from .forward.mpps import Mpps

log = logging.getLogger("sensord")

# An outbox entry due this long (or 10 forward polls, if longer) while its target
# starts no delivery, or a forward job that finished no run for as long: not ready.
STUCK_SECONDS = 120.0
# How often idle cached pixels are dropped and freed memory is given back (daemon/malloc.py).
MEMORY_SECONDS = 10.0
# How often finished MPPS steps and delivered outbox entries past
# forward.keep_delivered_days are looked for.
PRUNE_SECONDS = 3600.0


class Sensord:
    def __init__(self, settings: Settings):
        malloc.tune()       # before the threads start: see daemon/malloc.py
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
        # Freed image memory goes back to the system once the work stops.
        self.trimmer = malloc.Trimmer(lambda: self.pixel_budget.released_bytes + self.pixel_cache.dropped_bytes,
                                      busy=lambda: self.pixel_budget.reserved_bytes > 0)
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
        targets = build_targets(forward.targets, state_dir=state, dicom=settings.dicom)
        self.forwarder = Forwarder(self.outbox, targets,
                                   work_dir=state / "outbox" / "work", pixel_budget=self.pixel_budget)
        # Storage commitment reports that come on an association of their own (dimse targets).
        # The DICOM modules (pydicom, pynetdicom: ~26 MB resident) are imported only where the
        # configuration asks for DICOM: here, for [mpps] below, and by kind in platforms/.
        self.commitment: CommitmentListener | None = None
        if settings.dicom.listen_port > 0:
            from .forward.commitment import CommitmentListener, listener_peers
            self.commitment = CommitmentListener(
                self.outbox, host=settings.dicom.listen_host, port=settings.dicom.listen_port,
                ae_title=settings.dicom.ae_title, peers=listener_peers(self.forwarder.targets),
                timeout=settings.dicom.timeout_seconds)
        elif any(target.kind == "dimse" for target in targets.values()):
            from .forward.commitment import committing_targets
            if committing_targets(targets):
                log.warning("forward targets %s ask for storage commitment but dicom.listen_port is 0: only "
                            "reports sent on sensord's own association will be seen",
                            ", ".join(committing_targets(targets)))
        # Built even when [worklist] host is empty ("not configured": nothing is asked, no
        # session is bound), so a client's own worklistBound is dropped either way.
        self.worklist = Worklist(settings.worklist, settings.dicom)
        self.worklist_bindings = Bindings(self.worklist)
        self.forwarding = Forwarding(self.outbox, self.forwarder, forward.rules,
                                     context_hook=self.worklist_bindings.context_for,
                                     performed_steps=bool(settings.mpps.host))
        self.sessions.session_changed.connect(self.worklist_bindings.on_session_changed)
        self.worklist.changed.connect(self.worklist_bindings.on_worklist_changed)
        # Bindings first: an image taken bound fixes its session's binding before it is queued.
        self.sessions.image_acquired.connect(self.worklist_bindings.on_acquired)
        self.sessions.image_acquired.connect(self.forwarding.on_acquired)
        # MPPS only with [mpps] host: otherwise nothing is queued (and no mpps.db made).
        self.mpps: Mpps | None = None
        if settings.mpps.host:
            from .dimse.network import Peer
            from .forward.mpps import Mpps
            self.mpps = Mpps(state / "outbox", Peer(settings.mpps.host, settings.mpps.port, settings.mpps.called_ae),
                             ae_title=settings.dicom.ae_title, timeout=settings.dicom.timeout_seconds,
                             targets=self.forwarder.targets, keep_days=forward.keep_delivered_days)
            self.forwarding.image_queued.connect(self.mpps.on_image_queued)
            self.sessions.session_changed.connect(self.mpps.on_session_changed)
        self.status_feed = StatusFeed(functools.partial(status_snapshot, self, started=time.time()),
                                      Hub(self.subscribers))
        self.devices.driver_events.connect(self.status_feed.notify)
        self.sessions.session_changed.connect(self.status_feed.notify)
        self.worklist.changed.connect(self.status_feed.notify)
        self.scheduler = Scheduler()
        self.health = self._health_checks(state)
        self.metrics = Metrics(self._readings(state))
        self.forwarder.delivery_ended.connect(self.metrics.on_delivery)
        if self.commitment is not None:
            self.commitment.delivery_ended.connect(self.metrics.on_delivery)
        self.sessions.exposure_ended.connect(self.metrics.on_exposure)
        self._started: list = []

    def _health_checks(self, state: Path) -> HealthChecks:
        """/healthz, /readyz and the watchdog's checks (health_checks.py; the server adds "listening")."""
        checks = HealthChecks()
        checks.add("scheduler", lambda: None if self.scheduler.running else "the scheduler is not running",
                   live=True)
        checks.add("drivers", lambda: None if self.devices.enumerated else "a driver is not running")
        checks.add("state_folder", functools.partial(health_checks.writable, state))
        checks.add("disk", lambda: health_checks.free_space(state, self.sessions.options.min_free_bytes))
        within = max(STUCK_SECONDS, 10.0 * self.settings.forward.poll_seconds)
        checks.add("outbox", lambda: (
            health_checks.job_running(self.scheduler, "forward", within=within)
            or health_checks.outbox_moving(self.outbox.overdue, self.forwarder.active_targets, within=within)))
        return checks

    def _readings(self, state: Path) -> Readings:
        """Where /metrics reads the services' state at each scrape (metrics.py)."""
        mpps, worklist, budget, lockout = self.mpps, self.worklist, self.pixel_budget, self.auth.lockout
        return Readings(
            clock=time.time,
            targets=lambda: self.forwarder.targets,
            outbox=lambda: [OutboxDepth(*row) for row in self.outbox.depth()],
            mpps=mpps.counts if mpps is not None else None,
            worklist_items=(lambda: len(worklist.items)) if worklist.configured else None,
            worklist_answering=((lambda: worklist.error is None and worklist.refreshed_at is not None)
                                if worklist.configured else None),
            subscribers=lambda: self.subscribers.count, subscriber_limit=lambda: self.subscribers.maximum,
            devices=lambda: len(self.devices.list()), sessions=lambda: len(self.sessions.list()),
            store_bytes=lambda: self.store.used_bytes, store_quota_bytes=lambda: self.store.quota_bytes,
            store_resources=lambda: self.store.count, pixel_cache_bytes=lambda: self.pixel_cache.used_bytes,
            budget_reserved_bytes=lambda: budget.reserved_bytes, budget_limit_bytes=lambda: budget.max_bytes,
            budget_waits=lambda: budget.waits, budget_refusals=lambda: budget.refusals,
            login_failures=lambda: lockout.failures_total, login_lockouts=lambda: lockout.lockouts_total,
            state_free_bytes=lambda: shutil.disk_usage(state).free)

    def start(self) -> None:
        mpps: list = [self.mpps] if self.mpps else []    # after the outbox: its folder
        listener: list = [self.commitment] if self.commitment else []    # after the outbox: it settles entries
        for service in (self.store, self.outbox, *mpps, *listener, self.forwarder, self.image_folder, self.sessions,
                        self.devices, self.scheduler, self.status_feed, self.worklist):
            service.start()
            self._started.append(service)
        self.scheduler.every(self.settings.store.sweep_seconds, self.store.sweep, name="store-sweep")
        self.scheduler.every(MEMORY_SECONDS, self._give_memory_back, name="memory")
        self.scheduler.every(self.settings.forward.poll_seconds, self.forwarder.tick, name="forward")
        self.scheduler.every(PRUNE_SECONDS, self._prune_outbox, name="outbox-prune")
        if self.mpps is not None:
            self.scheduler.every(self.settings.forward.poll_seconds, self.mpps.tick, name="mpps")
            self.scheduler.every(PRUNE_SECONDS, self.mpps.prune, name="mpps-prune")
        if self.worklist.configured:     # the first refresh already runs on the worklist's own thread
            self.scheduler.every(self.worklist.refresh_seconds, self.worklist.refresh, name="worklist")
        if self.settings.drivers.serial_ports:
            watcher = SerialPortWatcher(self.devices, self.settings.drivers.serial_ports)
            watcher.poll()
            self.scheduler.every(self.settings.drivers.poll_seconds, watcher.poll, name="serial-ports")

    def _prune_outbox(self) -> int:
        """Forget the delivered outbox entries older than forward.keep_delivered_days."""
        days = self.settings.forward.keep_delivered_days
        pruned = self.outbox.prune(self.outbox.clock() - days * 86400.0)
        if pruned:
            log.info("outbox: pruned %d delivered entr%s last changed over %d day(s) ago", pruned,
                     "y" if pruned == 1 else "ies", days)
        return pruned

    def _give_memory_back(self) -> None:
        self.pixel_cache.drop_idle()
        self.trimmer.tick()

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
