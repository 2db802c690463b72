"""The daemon's Prometheus metrics: every name, in one place.

Each daemon has a registry of its own (several daemons in one test process
must not share counters), served at ``/metrics`` (api/metrics.py). Two kinds:

- counted where the event happens: HTTP requests (the app's hooks and the
  front door), deliveries, exposures and their readout-to-NewImage time
  (handlers service.py connects to the services' Signals);
- read at scrape time from state the services already keep (``Readings``,
  callables service.py gives): outbox depth and age, MPPS messages, event
  streams, the store, the pixel budget, the worklist, failed logins, the
  state disk's free space. Each is an in-memory value or one indexed query,
  so a scrape stays cheap: no walk of the disk.

Conventions (Prometheus's): a ``sensord_`` prefix, base units (seconds,
bytes), ``_total`` on counters, and labels only of bounded sets: target
names (from the configuration), states, results, URL rules (never a raw
path), HTTP methods and statuses. No image, session or user in a label.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from sensord.daemon.version import VERSION

log = logging.getLogger("sensord.metrics")

# Methods counted by name; any other (clients may send any token) is "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNROUTED = "(unrouted)"     # the route label of a request no URL rule matched (404, 405)
# The outbox states with a depth: delivered entries are counted by
# sensord_deliveries_total instead, from the delivery events (their rows
# pile up, then go after forward.keep_delivered_days: no count of them).
OUTBOX_STATES = ("pending", "committing", "dead")
WAITING_STATES = ("pending", "committing")      # whose oldest entry's age is shown

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
READOUT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
DELIVERY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)




@dataclass(frozen=True)
class OutboxDepth:
    target: str
    state: str
    entries: int
    oldest_created: float       # epoch seconds of the oldest entry in this state


def _zero() -> int:
    return 0


@dataclass(frozen=True)
class Readings:
    """Where the scrape reads the daemon's state (service.py fills these in).

    Each is called at every scrape and must be cheap: a value kept in
    memory, or one query on an index."""
    clock: Callable[[], float]                              # epoch seconds, for ages
    targets: Callable[[], Iterable[str]] = tuple            # configured forward targets
    outbox: Callable[[], Iterable[OutboxDepth]] = tuple
    mpps: Callable[[], Mapping[str, int]] | None = None     # messages by state; None: MPPS off
    worklist_items: Callable[[], int] | None = None         # None: no worklist configured
    worklist_answering: Callable[[], bool] | None = None
    subscribers: Callable[[], int] = _zero
    subscriber_limit: Callable[[], int] = _zero
    devices: Callable[[], int] = _zero
    sessions: Callable[[], int] = _zero
    store_bytes: Callable[[], int] = _zero
    store_quota_bytes: Callable[[], int] = _zero
    store_resources: Callable[[], int] = _zero
    pixel_cache_bytes: Callable[[], int] = _zero
    budget_reserved_bytes: Callable[[], int] = _zero
    budget_limit_bytes: Callable[[], int] = _zero
    budget_waits: Callable[[], int] = _zero
    budget_refusals: Callable[[], int] = _zero
    login_failures: Callable[[], int] = _zero
    login_lockouts: Callable[[], int] = _zero
    state_free_bytes: Callable[[], int] = _zero


class Metrics:
    def __init__(self, readings: Readings | None = None):
        # The _created series would double the sample count for nothing Prometheus uses.
        prometheus_client.disable_created_metrics()
        self.registry = CollectorRegistry()
        r = self.registry
        self.http = Histogram(
            "sensord_http_request_duration_seconds",
            "HTTP requests the app answered, by URL rule, method and status: seconds until the "
            "answer started (an event stream counts until its first byte)",
            ["route", "method", "status"], buckets=HTTP_BUCKETS, registry=r)
        self.refused = Counter(
            "sensord_http_refused", "Requests the front door answered from their headers alone "
            "(Host, origin, credentials, lockout, size), by status", ["status"], registry=r)
        self.deliveries = Counter(
            "sensord_deliveries", "Outbox delivery outcomes by target and result (delivered, "
            "committing, retry, dead, resend)", ["target", "result"], registry=r)
        self.delivery_seconds = Histogram(
            "sensord_delivery_duration_seconds", "Time a platform took over one delivery attempt",
            ["target"], buckets=DELIVERY_BUCKETS, registry=r)
        self.exposures = Counter(
            "sensord_exposures", "Exposures handled, by result (image: announced; lost)",
            ["result"], registry=r)
        self.readout = Histogram(
            "sensord_readout_to_new_image_seconds",
            "Seconds from the end of a sensor's readout to NewImage", buckets=READOUT_BUCKETS, registry=r)
        _Process(registry=r)                # process_*: memory, CPU, open descriptors
        self.readings = readings or Readings(clock=lambda: 0.0)
        r.register(_State(self))

    # -- events ------------------------------------------------------------
    def observe_request(self, route: str | None, method: str, status: int, seconds: float) -> None:
        self.http.labels(route or UNROUTED, method if method in METHODS else "other",
                         str(status)).observe(max(0.0, seconds))

    def refused_at_door(self, status: int) -> None:
        self.refused.labels(str(status)).inc()

    def on_delivery(self, event) -> None:
        """A forward.events.DeliveryEnded (connected by service.py)."""
        self.deliveries.labels(event.target, event.result).inc()
        if event.seconds is not None:
            self.delivery_seconds.labels(event.target).observe(event.seconds)

    def on_exposure(self, event) -> None:
        """An acquisition.events.ExposureEnded (connected by service.py)."""
        self.exposures.labels(event.result).inc()
        if event.readout_to_new_image is not None:
            self.readout.observe(max(0.0, event.readout_to_new_image))

    # -- scrape ------------------------------------------------------------
    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """(body, content type) in the format ``accept`` asks for: the Prometheus
        text format, or OpenMetrics when the scraper prefers it."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _Process(ProcessCollector):
    """prometheus_client's process_* series. It reads the boot time from /proc/stat
    and reports nothing without it; the unit's ProcSubset=pid hides that file, so
    the boot time then comes from the clocks."""

    def _boot_time(self):
        try:
            return super()._boot_time()
        except OSError:
            return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class _State(Collector):
    """The gauges and counters read from the daemon's state at each scrape."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics
        self._failing: set[str] = set()     # readings whose failure is logged already

    def describe(self) -> Iterable[Metric]:
        return []       # names are fixed in collect(); nothing to check for collisions up front

    def _read(self, name: str, read: Callable, default):
        """One reading; a failing one (a service closing) is skipped, logged once."""
        try:
            value = read()
        except Exception as err:
            if name not in self._failing:
                self._failing.add(name)
                log.warning("metrics: cannot read %s: %s", name, err)
            return default
        self._failing.discard(name)
        return value

    def collect(self) -> Iterable[Metric]:
        m = self._read
        r = self._metrics.readings
        yield _info()
        now = r.clock()
        entries = GaugeMetricFamily("sensord_outbox_entries", "Outbox entries waiting or dead, by target "
                                    "and state (pending, committing: awaiting storage commitment, dead)",
                                    labels=["target", "state"])
        oldest = GaugeMetricFamily("sensord_outbox_oldest_age_seconds", "Age of the oldest outbox entry "
                                   "pending or committing, by target and state (0 when none)",
                                   labels=["target", "state"])
        depth = {(d.target, d.state): d for d in m("outbox", lambda: list(r.outbox()), [])}
        targets = sorted(set(m("targets", lambda: list(r.targets()), [])) | {t for t, _ in depth})
        for target in targets:
            for state in OUTBOX_STATES:
                d = depth.get((target, state))
                entries.add_metric([target, state], d.entries if d else 0)
                if state in WAITING_STATES:
                    oldest.add_metric([target, state], max(0.0, now - d.oldest_created) if d else 0.0)
        yield entries
        yield oldest
        if r.mpps is not None:
            read_mpps = r.mpps
            mpps = GaugeMetricFamily("sensord_mpps_messages", "MPPS messages in the queue by state "
                                     "(pending, held, delivered, dead)", labels=["state"])
            counts = m("mpps", lambda: dict(read_mpps()), {})
            for state in sorted({"pending", "delivered", "dead", *counts}):
                mpps.add_metric([state], counts.get(state, 0))
            yield mpps
        if r.worklist_items is not None and r.worklist_answering is not None:
            yield _gauge("sensord_worklist_items", "Scheduled steps the worklist last gave",
                         m("worklist_items", r.worklist_items, 0))
            yield _gauge("sensord_worklist_up", "1 when the worklist answered the last query, else 0",
                         int(bool(m("worklist_answering", r.worklist_answering, False))))
        yield _gauge("sensord_devices", "Devices present", m("devices", r.devices, 0))
        yield _gauge("sensord_sessions", "Acquisition sessions open", m("sessions", r.sessions, 0))
        yield _gauge("sensord_event_subscribers", "Event streams open", m("subscribers", r.subscribers, 0))
        yield _gauge("sensord_event_subscribers_limit", "Event streams allowed at once (then 503)",
                     m("subscriber_limit", r.subscriber_limit, 0))
        yield _gauge("sensord_store_bytes", "Bytes of image resources in the store",
                     m("store_bytes", r.store_bytes, 0))
        yield _gauge("sensord_store_quota_bytes", "The store's quota (then 507)",
                     m("store_quota_bytes", r.store_quota_bytes, 0))
        yield _gauge("sensord_store_resources", "Image resources in the store",
                     m("store_resources", r.store_resources, 0))
        yield _gauge("sensord_pixel_cache_bytes", "Decoded pixels kept in memory",
                     m("pixel_cache_bytes", r.pixel_cache_bytes, 0))
        yield _gauge("sensord_pixel_budget_reserved_bytes", "Working memory held by decodes and filters now",
                     m("budget_reserved_bytes", r.budget_reserved_bytes, 0))
        yield _gauge("sensord_pixel_budget_limit_bytes", "The pixel budget (images.pixel_budget_mb)",
                     m("budget_limit_bytes", r.budget_limit_bytes, 0))
        yield CounterMetricFamily("sensord_pixel_budget_waits", "Reservations that waited for room in the "
                                  "pixel budget", value=m("budget_waits", r.budget_waits, 0))
        yield CounterMetricFamily("sensord_pixel_budget_refusals", "Reservations refused after waiting "
                                  "(503 Retry-After, or a forward retried later)",
                                  value=m("budget_refusals", r.budget_refusals, 0))
        yield CounterMetricFamily("sensord_login_failures", "Failed logins (wrong user or password)",
                                  value=m("login_failures", r.login_failures, 0))
        yield CounterMetricFamily("sensord_login_lockouts", "Lockouts started by failed logins",
                                  value=m("login_lockouts", r.login_lockouts, 0))
        yield _gauge("sensord_state_free_bytes", "Free bytes on the state folder's disk (for the daemon's user)",
                     m("state_free_bytes", r.state_free_bytes, 0))


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _info() -> GaugeMetricFamily:
    info = GaugeMetricFamily("sensord_info", "The running sensord's version (always 1)", labels=["version"])
    info.add_metric([VERSION], 1)
    return info
