"""Failed logins through the real server: lockout per user name on a fake
clock, password checks at bounded concurrency, user names logged safely."""
from __future__ import annotations

import logging
import threading

import pytest
import requests

from sensord.daemon.api import auth as auth_mod
from tests.support.filters_api import API as FILTERS
from tests.support.filters_api import upload
from tests.support.server import CLIENT, CLIENT_PASSWORD, PASSWORD, USER


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def srv_clock(serve):
    srv = serve()
    clock = FakeClock()
    srv.daemon.auth.lockout.clock = clock
    return srv, clock


@pytest.fixture
def hashes(monkeypatch):
    """Count the password hash checks (the real ones still run)."""
    calls: list[str] = []
    real = auth_mod.check_password_hash

    def counted(hashed, password):
        calls.append(password)
        return real(hashed, password)

    monkeypatch.setattr(auth_mod, "check_password_hash", counted)
    return calls


def get(srv, user, password):
    return requests.get(srv.url(FILTERS), auth=(user, password), timeout=30)


def test_five_failures_lock_the_name_out_even_for_the_right_password_until_the_window_passes(srv_clock):
    srv, clock = srv_clock
    for _ in range(5):
        assert get(srv, USER, "wrong").status_code == 401
    locked = get(srv, USER, PASSWORD)
    assert locked.status_code == 429, locked.text
    assert locked.headers["Retry-After"] == "30"
    assert locked.json()["status"] == 429 and "failed logins" in locked.json()["message"]
    assert get(srv, CLIENT, CLIENT_PASSWORD).status_code == 200     # other users are not affected
    clock.advance(29)
    assert get(srv, USER, PASSWORD).headers["Retry-After"] == "1"
    clock.advance(1)
    assert get(srv, USER, PASSWORD).status_code == 200
    # A success resets the count: 4 + 4 failures around it lock nothing.
    for _ in range(2):
        for _ in range(4):
            assert get(srv, USER, "wrong").status_code == 401
        assert get(srv, USER, PASSWORD).status_code == 200


def test_each_lockout_after_the_first_doubles_up_to_the_cap_and_costs_no_hash(serve, hashes):
    srv = serve(auth={"max_failures": 3, "lockout_seconds": 30, "lockout_max_seconds": 100})
    clock = FakeClock()
    srv.daemon.auth.lockout.clock = clock
    for _ in range(3):
        assert get(srv, USER, "wrong").status_code == 401
    for window in (60, 100, 100):
        clock.advance(1000)
        assert get(srv, USER, "wrong").status_code == 401       # one more try, wrong again
        locked = get(srv, USER, PASSWORD)
        assert locked.status_code == 429 and locked.headers["Retry-After"] == str(window)
    checked = len(hashes)
    for _ in range(20):                       # while locked, guesses cost no password hash
        assert get(srv, USER, "guess").status_code == 429
    assert len(hashes) == checked
    clock.advance(100)
    assert get(srv, USER, PASSWORD).status_code == 200


def test_unknown_names_count_too_and_cannot_grow_the_table(srv_clock, monkeypatch):
    srv, clock = srv_clock
    assert get(srv, USER, PASSWORD).status_code == 200       # verified once: cached from now on
    for _ in range(5):
        assert get(srv, "nobody", "x").status_code == 401
    assert get(srv, "nobody", "x").status_code == 429
    # Random names, each failing once: the table stays within its bound.
    monkeypatch.setattr(auth_mod, "check_password_hash", lambda hashed, password: False)  # fast
    lockout = srv.daemon.auth.lockout
    lockout.max_names = 50
    for i in range(200):
        assert get(srv, f"random-{i}-" + "x" * 2000, "x").status_code == 401
    assert len(lockout) <= 50
    assert get(srv, USER, PASSWORD).status_code == 200


def test_a_rejected_user_name_is_logged_escaped_and_truncated(serve, caplog):
    srv = serve()
    name = "evil\nINFO sensord forged line\x1b[31m" + "y" * 5000     # (no colon: it ends a Basic name)
    with caplog.at_level(logging.WARNING, logger="sensord.auth"):
        assert get(srv, name, "x").status_code == 401
    [record] = [r for r in caplog.records if "rejected credentials" in r.getMessage()]
    message = record.getMessage()
    assert "\n" not in message and "\x1b" not in message
    assert "\\n" in message and "\\x1b" in message        # escaped, still readable
    assert len(message) < 300, len(message)


def test_password_checks_run_at_bounded_concurrency_and_verified_credentials_skip_them(serve, monkeypatch):
    srv = serve(auth={"max_concurrent_checks": 2})
    assert upload(srv).status_code == 201       # the operator's credentials verified (and cached)
    in_flight, peak, calls, lock = [0], [0], [], threading.Lock()
    real = auth_mod.check_password_hash

    def watched(hashed, password):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            calls.append(password)
        try:
            return real(hashed, password)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(auth_mod, "check_password_hash", watched)
    statuses: list[int] = []
    start = threading.Barrier(17)

    def guesser(i: int) -> None:
        start.wait(timeout=10)
        for attempt in range(3):        # a name of its own, below the lockout: only the bound holds it
            statuses.append(requests.get(srv.url(FILTERS), auth=(f"guesser-{i}", f"pw{attempt}"),
                                         timeout=60).status_code)

    threads = [threading.Thread(target=guesser, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    start.wait(timeout=10)
    uploaded = upload(srv)
    for t in threads:
        t.join(timeout=120)
    assert uploaded.status_code == 201, uploaded.text
    assert len(statuses) == 48 and set(statuses) <= {401, 503}, sorted(set(statuses))
    assert peak[0] <= 2, f"{peak[0]} password checks ran at once"
    assert len(calls) >= 2 and PASSWORD not in calls     # the upload's credentials were not hashed again
