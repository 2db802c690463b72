"""Failed logins through the real server: waits per (user name, client) on a
fake clock, repeats that are no guesses, no answer to a waiting guesser (the
right password included), password checks at bounded concurrency, user names
logged safely."""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading

import pytest
import requests
from requests.adapters import HTTPAdapter

from sensord.daemon.api import auth as auth_mod
from sensord.daemon.api.lockout import client_of
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


def test_five_wrong_guesses_make_the_client_wait_the_right_password_included(srv_clock):
    srv, clock = srv_clock
    for i in range(5):
        assert get(srv, USER, f"wrong {i}").status_code == 401
    locked = get(srv, USER, PASSWORD)
    assert locked.status_code == 429, locked.text
    assert locked.headers["Retry-After"] == "30"
    assert locked.json()["status"] == 429 and "failed logins" in locked.json()["message"]
    assert get(srv, CLIENT, CLIENT_PASSWORD).status_code == 200     # other users are not affected
    clock.advance(29)
    assert get(srv, USER, PASSWORD).headers["Retry-After"] == "1"
    clock.advance(1)
    assert get(srv, USER, PASSWORD).status_code == 200
    # A password checked right forgot the count: 4 guesses wait for nothing. Verified
    # credentials get in without a hash from now on, but forgive nothing: the 5th
    # guess makes the client wait, and then the cached password waits as well
    # (letting it in would tell a guesser its guess was right).
    for i in range(4):
        assert get(srv, USER, f"again {i}").status_code == 401
    assert get(srv, USER, PASSWORD).status_code == 200
    assert get(srv, USER, "again 4").status_code == 401
    assert get(srv, USER, "again 5").status_code == 429
    assert get(srv, USER, PASSWORD).status_code == 429
    clock.advance(30)
    assert get(srv, USER, PASSWORD).status_code == 200


def test_each_lockout_after_the_first_doubles_up_to_the_cap_and_costs_no_hash(serve, hashes):
    srv = serve(auth={"max_failures": 3, "lockout_seconds": 30, "lockout_max_seconds": 100})
    clock = FakeClock()
    srv.daemon.auth.lockout.clock = clock
    for i in range(3):
        assert get(srv, USER, f"wrong {i}").status_code == 401
    for window in (60, 100, 100):
        clock.advance(1000)
        assert get(srv, USER, f"wrong {window} {clock.now}").status_code == 401     # one more guess, wrong
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
    for i in range(5):
        assert get(srv, "nobody", f"x{i}").status_code == 401
    assert get(srv, "nobody", "x5").status_code == 429
    # Random names, each failing once: the table stays within its bound.
    monkeypatch.setattr(auth_mod, "check_password_hash", lambda hashed, password: False)  # fast
    lockout = srv.daemon.auth.lockout
    lockout.max_keys = 50
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


# -- the threat: a guesser must not keep anyone else's right password out --------

class FromAddress(HTTPAdapter):
    """Connect from this local address: a client on another machine, as the daemon sees it."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


@pytest.fixture
def lan():
    """A non-loopback address of this machine (connections from it reach 127.0.0.1 too)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.123", 9))       # a route only: no packet is sent
        address = probe.getsockname()[0]
    except OSError:
        address = "127.0.0.1"
    finally:
        probe.close()
    if ipaddress.ip_address(address).is_loopback:
        pytest.skip("this machine has no address but loopback")
    return address


def session_from(address: str, **settings) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", FromAddress(address))
    session.mount("https://", FromAddress(address))
    for name, value in settings.items():
        setattr(session, name, value)
    return session


@pytest.mark.parametrize("remote, client", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("192.0.2.7", "192.0.2.7"), ("::ffff:192.0.2.7", "192.0.2.7"), ("fd00::2", "fd00::/64"),
    ("fd00::ab:cd:ef:12", "fd00::/64"), ("fe80::1%eth0", "fe80::/64"), (None, "unknown"),
])
def test_a_client_is_an_address_with_loopback_and_each_ipv6_64_as_one(remote, client):
    assert client_of(remote) == client


def test_hammering_one_wrong_password_keeps_no_one_out_and_costs_one_hash(srv_clock, hashes):
    """A client set up with an old password, or a pest: repeats are no guesses."""
    srv, clock = srv_clock
    assert {get(srv, USER, "last year's password").status_code for _ in range(40)} == {401}
    assert hashes == ["last year's password"]         # checked once; the repeats cost nothing
    assert get(srv, USER, PASSWORD).status_code == 200  # not verified before: checked, and in at once
    assert srv.daemon.auth.lockout.failures_total == 40
    metrics = srv.http.get(srv.url("/metrics")).text
    assert "\nsensord_login_failures_total 40.0\n" in metrics


def test_a_waiting_guesser_learns_nothing_even_about_cached_credentials(srv_clock, hashes):
    srv, clock = srv_clock
    assert srv.http.get(srv.url(FILTERS)).status_code == 200       # the operator, verified once
    for i in range(5):
        assert get(srv, USER, f"guess {i}").status_code == 401
    checked = len(hashes)
    answers = {get(srv, USER, guess).status_code for guess in ("guess 5", PASSWORD, "guess 6")}
    assert answers == {429}                     # the right guess looks like every other one
    assert len(hashes) == checked               # and a waiting guesser costs no hash
    assert get(srv, CLIENT, CLIENT_PASSWORD).status_code == 200     # another user name is not held
    clock.advance(30)
    assert get(srv, USER, "guess 7").status_code == 401        # one guess once the wait is over...
    assert get(srv, USER, "guess 8").headers["Retry-After"] == "60"   # ...then twice as long
    clock.advance(60)
    assert srv.http.get(srv.url(FILTERS)).status_code == 200


def test_a_guesser_on_another_machine_waits_alone(srv_clock, lan, caplog):
    srv, clock = srv_clock
    remote = session_from(lan)
    with caplog.at_level(logging.WARNING, logger="sensord.auth"):
        for i in range(5):
            assert remote.get(srv.url(FILTERS), auth=(USER, f"guess {i}"), timeout=30).status_code == 401
    assert f"from {lan}" in caplog.text
    assert remote.get(srv.url(FILTERS), auth=(USER, PASSWORD), timeout=30).status_code == 429   # its own wait
    assert get(srv, USER, PASSWORD).status_code == 200      # from this PC: not verified before, checked, in
    for i in range(5):                                      # and this PC's guesses count on their own
        assert get(srv, USER, f"local guess {i}").status_code == 401
    assert get(srv, USER, "local guess 5").status_code == 429


def test_behind_the_tls_front_a_client_is_known_by_its_own_address(serve, pki, lan, caplog):
    srv = serve(server={"tls_cert": pki.cert, "tls_key": pki.key})
    srv.daemon.auth.lockout.clock = FakeClock()
    remote = session_from(lan, verify=pki.cert)
    with caplog.at_level(logging.WARNING, logger="sensord.auth"):
        for i in range(5):
            assert remote.get(srv.url(FILTERS), auth=(USER, f"guess {i}"), timeout=30).status_code == 401
        assert remote.get(srv.url(FILTERS), auth=(USER, "guess 5"), timeout=30).status_code == 429
    assert f"from {lan}" in caplog.text and "from 127.0.0.1" not in caplog.text
    assert srv.http.get(srv.url(FILTERS)).status_code == 200     # over loopback: another client


def test_a_password_that_failed_is_checked_again_once_a_reload_makes_it_right(srv_clock, hashes):
    srv, clock = srv_clock
    for _ in range(3):
        assert get(srv, CLIENT, "next year's password").status_code == 401
    assert hashes == ["next year's password"]
    auth = srv.daemon.auth
    auth.set_users({**auth.users, CLIENT: auth_mod.hash_password("next year's password")}, realm=auth.realm)
    assert get(srv, CLIENT, "next year's password").status_code == 200


def test_many_user_names_from_many_clients_keep_the_table_bounded(srv_clock, lan, monkeypatch):
    srv, clock = srv_clock
    monkeypatch.setattr(auth_mod, "check_password_hash", lambda hashed, password: False)     # fast
    lockout = srv.daemon.auth.lockout
    lockout.max_keys = 40
    remote = session_from(lan)
    for i in range(60):
        assert get(srv, f"name-{i}", "x").status_code == 401
        assert remote.get(srv.url(FILTERS), auth=(f"name-{i}", "y"), timeout=30).status_code == 401
    assert len(lockout) == 40
