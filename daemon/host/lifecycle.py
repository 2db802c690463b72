"""What the service manager is told over the daemon's life: ready, alive, stopping.

``serve`` builds one ``Lifecycle`` once the daemon has started (drivers
enumerated) and the server is constructed (its socket bound and listening),
calls ``ready()`` before it enters the server loop, ``stopping()`` from the
signal handler and ``close()`` once the loop has ended. Without systemd
(no ``$NOTIFY_SOCKET``) all of it is silent.
"""
from __future__ import annotations

import faulthandler
import functools
import logging
import threading
import time
from typing import Callable

from . import health, sdnotify

log = logging.getLogger("sensord.lifecycle")


class Lifecycle:
    def __init__(self, daemon, server) -> None:
        self.daemon = daemon
        self.server = server
        self.watchdog: Watchdog | None = None

    def status_line(self) -> str:
        count = len(self.daemon.devices.list())
        return (f"listening on {self.daemon.settings.server.host}:{self.server.port}, "
                f"{count} device{'' if count == 1 else 's'}")

    def ready(self) -> None:
        """READY=1, then the watchdog pings when ``WatchdogSec=`` asks for them."""
        status = self.status_line()
        sdnotify.ready(status)
        interval = sdnotify.watchdog_interval()
        if interval is not None:
            check = functools.partial(health.check, self.daemon, self.server)
            self.watchdog = Watchdog(check, interval, healthy_status=status)
            self.watchdog.start()

    def reloading(self) -> None:
        sdnotify.reloading("reloading the configuration")

    def reloaded(self) -> None:
        sdnotify.ready(self.status_line())

    def stopping(self, reason: str) -> None:
        """STOPPING=1; safe in a signal handler (it does not wait for the watchdog thread,
        whose probe may be waiting on the very loop the handler interrupted)."""
        if self.watchdog is not None:
            self.watchdog.stop(wait=False)
        sdnotify.stopping(reason)

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()


class Watchdog:
    """Every ``interval / 2`` seconds, run ``check``; ping ``WATCHDOG=1`` only when it
    passes. When it fails nothing is sent, so systemd restarts the service once
    ``interval`` passes without a ping; the reason goes to the log and STATUS."""

    def __init__(self, check: Callable[..., tuple[bool, str]], interval: float, *,
                 healthy_status: str = "healthy"):
        self.period = interval / 2
        self._check = check
        self._healthy_status = healthy_status
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> None:
        # systemd's watchdog kills with SIGABRT: have the journal show where each thread was.
        if not faulthandler.is_enabled():
            faulthandler.enable(all_threads=True)
        self._thread.start()

    def _run(self) -> None:
        healthy = True
        next_at = time.monotonic() + self.period
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.period
            # The probe must end before the next tick, or the pings fall behind.
            ok, reason = self._check(timeout=max(0.1, min(10.0, self.period * 0.8)))
            if self._stop.is_set():
                break               # stopping: a failed probe now says nothing
            if ok:
                sdnotify.watchdog()
                if not healthy:
                    log.info("healthy again")
                    sdnotify.status(self._healthy_status)
            else:
                log.warning("health check failed, withholding the watchdog ping: %s", reason)
                sdnotify.status(f"unhealthy: {reason}")
            healthy = ok
            next_at = max(next_at, time.monotonic())     # after a slow probe, do not burst

    def stop(self, *, wait: bool = True) -> None:
        self._stop.set()
        if wait and self._thread.is_alive():
            self._thread.join(timeout=self.period + 10)
