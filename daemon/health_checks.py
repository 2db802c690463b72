"""The daemon's health checks, in one place.

- ``/healthz`` runs the *live* checks: is the process working at all (what a
  restart would cure). The systemd watchdog pings only while ``/healthz``
  answers 200 over loopback (host/health.py), so the watchdog and the
  endpoint are the same checks.
- ``/readyz`` runs them all: should this daemon be given work now
  (listening, drivers enumerated, state folder writable, disk above
  ``acquisition.min_free_mb``, outbox moving). A failing readiness check
  restarts nothing: a restart frees no disk and fixes no permission, and
  would cut an exposure short.

service.py adds the checks that read the services, and the HTTP server adds
"listening". A check returns None when it passes, or a short reason. The
answers are served without credentials, so a reason names no path, user,
patient or target: a kind of failure and numbers only.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Check = Callable[[], "str | None"]


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


class HealthChecks:
    def __init__(self) -> None:
        self._checks: dict[str, tuple[Check, bool]] = {}
        self._lock = threading.Lock()

    def add(self, name: str, check: Check, *, live: bool = False) -> None:
        """Run ``check`` for /readyz, and for /healthz and the watchdog too when ``live``.
        A check added again under the same name replaces the old one."""
        with self._lock:
            self._checks[name] = (check, live)

    def run(self, *, live_only: bool = False) -> list[Result]:
        """Every check's result, in the order they were added."""
        with self._lock:
            checks = list(self._checks.items())
        results = []
        for name, (check, live) in checks:
            if live_only and not live:
                continue
            try:
                reason = check()
            except Exception as err:        # a check that breaks is a failing check, not a 500
                reason = f"the check itself failed ({type(err).__name__})"
            results.append(Result(name, reason is None, reason or "ok"))
        return results


def writable(folder: Path) -> str | None:
    """A file can be created, written and removed in ``folder`` (a read-only
    remount, a full disk, lost permissions or a folder gone all fail it)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".writable-")
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as err:
        return f"cannot write in the state folder: {err.strerror or type(err).__name__}"
    return None


def free_space(folder: Path, floor_bytes: int) -> str | None:
    """At least ``floor_bytes`` free on ``folder``'s disk, measured as the
    sessions measure it before they take an exposure."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError as err:
        return f"cannot measure the free space: {err.strerror or type(err).__name__}"
    if free < floor_bytes:
        return (f"{free >> 20} MiB free on the state disk, below the floor of {floor_bytes >> 20} MiB "
                "(acquisition.min_free_mb): sessions answer 507")
    return None


def job_running(scheduler, name: str, *, within: float, clock: Callable[[], float] = time.monotonic) -> str | None:
    """The scheduler runs and its job ``name`` finished a run in the last ``within``
    seconds (or the scheduler started less than that ago)."""
    if not scheduler.running:
        return "the scheduler is not running"
    last = scheduler.finished_at(name) or scheduler.started_at
    if last is None:
        return f"the {name} job has not started"
    idle = clock() - last
    if idle > within:
        return f"the {name} job has not finished a run for {idle:.0f} s"
    return None


def outbox_moving(overdue: Callable[[float], set[str]], active: Callable[[float], set[str]], *,
                  within: float, clock: Callable[[], float] = time.time) -> str | None:
    """No target has an entry due for more than ``within`` seconds while it started no
    delivery in that time: ``overdue(epoch)`` gives the targets with an entry due
    before then, ``active(seconds)`` those with a delivery in flight or started since."""
    stuck = overdue(clock() - within) - active(within)
    if stuck:
        return (f"{len(stuck)} forward target(s) have an entry due for over {within:.0f} s "
                "and no delivery started")
    return None
