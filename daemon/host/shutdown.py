"""SIGTERM and SIGINT: a stop that loses nothing, within a bound.

The order matters. The listener closes at once, so nothing new arrives.
An exposure already being read out is finished (the dose is spent and the
image exists nowhere else) while the server keeps serving, so its status
events and the requests that fetch it still get through. Then the event
streams end and the HTTP server closes each connection once its request is
done. After the loop, ``close`` shuts the services down; the outbox is an
SQLite database, consistent at every commit, and a delivery cut short is
retried after the next start.

Everything shares one deadline, ``server.shutdown_seconds`` from the first
signal. A second signal within ``REPEAT_WINDOW`` of the first is the same
request (killing ``make run``'s process group reaches the daemon twice:
once from the kill, once from make passing it on); a later second signal,
or a third, means "now".
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger("sensord")

POLL = 0.05
REPEAT_WINDOW = 1.0     # seconds: a repeat this soon is the same stop request


class GracefulStop:
    def __init__(self, daemon, server, lifecycle, grace: float):
        self.daemon = daemon
        self.server = server
        self.lifecycle = lifecycle
        self.grace = grace
        self.deadline: float | None = None
        self.first_signal: float | None = None
        self.signals = 0

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic()) if self.deadline is not None else self.grace

    def __call__(self, signum, frame) -> None:
        """The signal handler: returns at once, the waiting is done elsewhere."""
        name = signal.Signals(signum).name
        now = time.monotonic()
        self.signals += 1
        if self.first_signal is not None and self.signals == 2 and now - self.first_signal < REPEAT_WINDOW:
            log.info("%s again within %g s: the same stop request", name, REPEAT_WINDOW)
            return
        if self.deadline is not None:
            log.warning("%s again: stopping now", name)
            self.deadline = time.monotonic()
            self.daemon.end_event_streams()
            self.server.stop(0)
            return
        self.first_signal = now
        self.deadline = now + self.grace
        log.info("%s: stopping; work in progress has %g s to finish", name, self.grace)
        self.lifecycle.stopping(f"{name}: stopping")
        self.server.stop_accepting()
        threading.Thread(target=self._wind_down, name="shutdown", daemon=True).start()

    def _wind_down(self) -> None:
        if self.deadline is None:
            raise RuntimeError("the wind-down starts only after a signal has set the deadline")
        sessions = self.daemon.sessions
        waited = False
        while (busy := sessions.busy()) and time.monotonic() < self.deadline:
            if not waited:
                log.info("waiting for the exposure in progress on session(s) %s", ", ".join(busy))
                waited = True
            time.sleep(POLL)
        if busy:
            log.warning("stopping with an exposure unfinished on session(s) %s: its image is lost",
                        ", ".join(busy))
        self.daemon.end_event_streams()
        self.server.stop(self.remaining())

    def close(self) -> None:
        """Close the services within what is left of the bound. A service that
        is still closing then (a delivery stuck in a slow upload) is abandoned:
        the process exits 0 anyway, because everything acknowledged is on disk."""
        closer = threading.Thread(target=self.daemon.close, name="close", daemon=True)
        closer.start()
        closer.join(max(1.0, self.remaining()))
        if closer.is_alive():
            log.warning("services still closing after the %g s bound; exiting anyway", self.grace)
            logging.shutdown()
            os._exit(0)
