"""/healthz and /readyz through the real server, the checks behind them
(daemon/health_checks.py), and the watchdog probe that uses the same ones."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import pytest
import requests

from sensord.daemon import health_checks
from sensord.daemon.forward.outbox import Outbox
from sensord.daemon.host import health
from tests.support.modality import API as MODALITY
from tests.support.server import USER

READY_CHECKS = {"scheduler", "drivers", "state_folder", "disk", "outbox", "listening"}


def checks_of(response) -> dict[str, dict]:
    return {c["name"]: c for c in response.json()["checks"]}


def test_both_answer_without_credentials_and_name_their_checks(serve):
    srv = serve()
    alive = requests.get(srv.url("/healthz"), timeout=10)
    assert alive.status_code == 200 and alive.json()["status"] == "ok"
    assert set(checks_of(alive)) == {"scheduler"}
    assert alive.headers["Cache-Control"] == "no-store" and "WWW-Authenticate" not in alive.headers
    ready = requests.get(srv.url("/readyz/"), timeout=10)      # (every route takes a trailing slash)
    assert ready.status_code == 200, ready.text
    assert set(checks_of(ready)) == READY_CHECKS
    assert all(c["ok"] and c["detail"] == "ok" for c in checks_of(ready).values())
    assert requests.head(srv.url("/healthz"), timeout=10).status_code == 200
    # Credentials are not looked at: wrong ones neither fail the probe nor count against the user.
    for _ in range(6):
        assert requests.get(srv.url("/readyz"), auth=(USER, "wrong"), timeout=10).status_code == 200
    assert srv.http.get(srv.url(MODALITY + "/devices")).status_code == 200       # not locked out
    # Only reading is open: anything else still needs credentials first, and no body is taken.
    assert requests.post(srv.url("/healthz"), timeout=10).status_code == 401
    assert requests.get(srv.url("/readyz"), data=b"x" * 4096, timeout=10).status_code == 413


def test_the_host_and_origin_guards_still_apply(serve):
    srv = serve()
    assert requests.get(srv.url("/healthz"), headers={"Host": "rebound.example"}, timeout=10).status_code == 421
    foreign = requests.get(srv.url("/readyz"), headers={"Origin": "http://evil.example"}, timeout=10)
    assert foreign.status_code == 403


@contextlib.contextmanager
def unwritable(folder):
    """``folder`` refuses new files, to root too (the immutable attribute), else by its mode."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("cannot make a folder unwritable for root here (no chattr, or not supported)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_readyz_fails_naming_the_state_folder_when_it_cannot_be_written(serve, tmp_path):
    srv = serve(state_dir=tmp_path / "state")
    with unwritable(tmp_path / "state"):
        answer = requests.get(srv.url("/readyz"), timeout=10)
        alive = requests.get(srv.url("/healthz"), timeout=10)
    assert answer.status_code == 503 and answer.json()["status"] == "failing"
    failing = {name: c["detail"] for name, c in checks_of(answer).items() if not c["ok"]}
    assert list(failing) == ["state_folder"]
    assert "cannot write" in failing["state_folder"] and str(tmp_path) not in answer.text    # no paths
    assert alive.status_code == 200         # alive all the same: a restart would not fix it
    assert requests.get(srv.url("/readyz"), timeout=10).status_code == 200


def test_readyz_fails_naming_the_disk_below_the_floor_and_the_watchdog_stays_content(serve):
    srv = serve(acquisition={"min_free_mb": 10**7})      # more than any test disk has free
    answer = requests.get(srv.url("/readyz"), timeout=10)
    assert answer.status_code == 503
    disk = checks_of(answer)["disk"]
    assert not disk["ok"] and "below the floor of 10000000 MiB" in disk["detail"]
    assert [name for name, c in checks_of(answer).items() if not c["ok"]] == ["disk"]
    assert requests.get(srv.url("/healthz"), timeout=10).status_code == 200
    assert health.check(srv.daemon, srv.server) == (True, "healthy")


def test_the_watchdog_probe_reports_the_failing_live_check(serve):
    srv = serve()
    srv.daemon.scheduler.close()
    ok, reason = health.check(srv.daemon, srv.server)
    assert not ok and reason.endswith("/healthz answered 503: scheduler: the scheduler is not running")


def test_a_server_that_stopped_accepting_is_not_ready(serve):
    srv = serve()
    srv.server.stop_accepting()
    listening = {r.name: r for r in srv.daemon.health.run()}["listening"]
    assert not listening.ok and "stopping" in listening.detail


# -- the checks themselves -------------------------------------------------------
def test_a_due_entry_nothing_takes_is_stuck_unless_its_target_is_moving(tmp_path):
    now = [1_000_000.0]
    box = Outbox(tmp_path / "outbox", clock=lambda: now[0])
    box.start()
    try:
        box.add([("archive", "raw")], image_id="00000000-0000-4000-8000-000000000001", image_info={},
                context={}, png=b"png")
        def moving(active=()):
            return health_checks.outbox_moving(box.overdue, lambda within: set(active), within=120,
                                               clock=lambda: now[0])
        assert moving() is None                       # just queued
        now[0] += 121
        assert moving() == "1 forward target(s) have an entry due for over 120 s and no delivery started"
        assert moving(active={"archive"}) is None     # a backlog behind deliveries in progress
        [leased] = box.lease_due(exclude=set(), limit=1, lease_seconds=600)
        assert moving() is None                       # taken by a delivery
        box.retry_later(leased.id, now[0] + 3600, "HTTP 503")
        assert moving() is None                       # backing off: due later
    finally:
        box.close()


def test_a_job_that_stops_finishing_runs_fails_the_check():
    class Scheduler:
        running, started_at = True, 100.0
        last: float | None = None

        def finished_at(self, name):
            return self.last

    scheduler, clock = Scheduler(), [150.0]
    check = lambda: health_checks.job_running(scheduler, "forward", within=120, clock=lambda: clock[0])  # noqa: E731
    assert check() is None                  # started 50 s ago, no run finished yet
    clock[0] = 300.0
    assert check() == "the forward job has not finished a run for 200 s"
    scheduler.last = 290.0
    assert check() is None
    scheduler.running = False
    assert check() == "the scheduler is not running"


def test_a_check_that_raises_is_a_failing_check():
    checks = health_checks.HealthChecks()
    checks.add("fine", lambda: None, live=True)
    checks.add("broken", lambda: 1 / 0)
    assert [(r.name, r.ok, r.detail) for r in checks.run()] == [
        ("fine", True, "ok"), ("broken", False, "the check itself failed (ZeroDivisionError)")]
    assert [r.name for r in checks.run(live_only=True)] == ["fine"]
