"""Periodic jobs (expiry sweep, later port polling and outbox delivery) on apscheduler."""
from __future__ import annotations

import logging
import time
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger("sensord.scheduler")


class Scheduler:
    def __init__(self):
        self._scheduler = BackgroundScheduler(timezone="UTC", job_defaults={
            "coalesce": True,          # a late job runs once, not once per missed tick
            "max_instances": 1,
            "misfire_grace_time": 30,
        })
        # When each job last finished (monotonic), and when the scheduler started: a job
        # that stops finishing (hung, or its thread gone) shows here (health_checks.py).
        self._finished: dict[str, float] = {}
        self.started_at: float | None = None

    def every(self, seconds: float, job: Callable[[], object], *, name: str) -> None:
        def run():
            try:
                job()
            except Exception:   # a failing job must not stop the others
                log.exception("scheduled job %s failed", name)
            self._finished[name] = time.monotonic()
        self._scheduler.add_job(run, "interval", seconds=seconds, id=name, name=name)

    def start(self) -> None:
        self._scheduler.start()
        self.started_at = time.monotonic()

    def finished_at(self, name: str) -> float | None:
        """When job ``name`` last finished a run (monotonic), None if it never has."""
        return self._finished.get(name)

    @property
    def running(self) -> bool:
        return self._scheduler.running

    def close(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
