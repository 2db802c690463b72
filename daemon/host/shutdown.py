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
signal; a second signal means "now".
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger("sensord")

POLL = 0.05


class GracefulStop:
    def __init__(self, daemon, server, lifecycle, grace: float):
        self.daemon = daemon
        self.server = server
        self.lifecycle = lifecycle
        self.grace = grace
        self.deadline: float | None = None

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic()) if self.deadline is not None else self.grace

    def __call__(self, signum, frame) -> None:
        """The signal handler: returns at once, the waiting is done elsewhere."""
        name = signal.Signals(signum).name
        if self.deadline is not None:
            log.warning("%s again: stopping now", name)
            self.deadline = time.monotonic()
            self.daemon.end_event_streams()
            self.server.stop(0)
            return
        self.deadline = time.monotonic() + self.grace
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
