"""The status page's live feed: a snapshot of the daemon, republished on change.

Signals (driver events, session changes) call ``notify(event)``; a thread
wakes on it, waits a moment so that a burst of changes (an exposure moves a
session through five states in a few milliseconds) becomes one snapshot,
builds the snapshot and publishes it as a ``status`` event only when it
differs from the last one published. It also wakes every ``interval``
seconds, so changes nothing hooks into (outbox deliveries and failures)
show up too.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from .hub import Hub

log = logging.getLogger("sensord.status")


class StatusFeed:
    def __init__(self, snapshot: Callable[[], dict], hub: Hub, *,
                 interval: float = 2.0, coalesce: float = 0.1):
        self.snapshot = snapshot
        self.hub = hub
        self.interval = interval
        self.coalesce = coalesce
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last: dict | None = None
        self._thread = threading.Thread(target=self._run, name="status-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and end every subscription; safe to call twice."""
        self._stop.set()
        self._wake.set()
        self.hub.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def notify(self, _event: object = None) -> None:
        """Something changed; which event said so does not matter, the next
        snapshot shows it. Cheap, never raises: signals call it on the device
        dispatcher and acquisition threads, some holding locks."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._wake.wait(self.interval) and self._stop.wait(self.coalesce):
                return
            self._wake.clear()      # a notify from here on is seen by the next round
            if self._stop.is_set():
                return
            if self.hub.subscriber_count == 0:
                self._last = None       # nobody to tell; a new subscriber gets a fresh snapshot
                continue
            self.refresh()

    def refresh(self) -> None:
        """Build the snapshot now and publish it if it changed."""
        try:
            current = self.snapshot()
        except Exception:
            log.exception("building the status snapshot failed")
            return
        if current != self._last:
            self._last = current
            self.hub.publish("status", current)
