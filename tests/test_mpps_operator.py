"""An operator's retry and drop of a dead MPPS message: through the running
daemon, its HTTP API and `sensord outbox retry-mpps|drop-mpps`, against a real
pynetdicom MPPS SCP that dead-letters the N-CREATE with 0x0120 once; and the
queue's own rules for what may be retried or dropped.
"""
from __future__ import annotations

import logging

import pytest

from sensord.daemon.forward.mpps_queue import MppsQueue
from sensord.daemon.host import cli
from tests.support.loopback import wait_until
from tests.support.modality import API, ADMIN, create_session
from tests.support.mpps_daemon import SIM, acquire, mpps_of, prepare
from tests.support.mpps_scp import MppsScp
from tests.support.server import PASSWORD, USER

MPPS = ADMIN + "/outbox/mpps"


@pytest.fixture
def scp():
    with MppsScp() as server:
        yield server


@pytest.fixture
def as_operator(monkeypatch):
    monkeypatch.setenv("SENSORD_USER", USER)
    monkeypatch.setenv("SENSORD_PASSWORD", PASSWORD)


def dead_create_and_held_set(serve, scp) -> tuple:
    """A daemon whose one bound session's N-CREATE went dead (0x0120) and whose
    deletion queued the N-SET, held: (srv, dead create, held set)."""
    scp.answer_next("create", 0x0120, ErrorComment="Patient ID is required")
    srv = serve(prepare=prepare, mpps=scp.config, drivers={"urls": [SIM]})
    device = srv.http.get(srv.url(API + "/devices")).json()[0]["deviceId"]
    sid = create_session(srv, device, context={"accessionNumber": "ACC-7"})["sessionId"]
    acquire(srv, sid, device, 1)
    assert wait_until(lambda: mpps_of(srv)["counts"] == {"dead": 1}, 20), mpps_of(srv)
    assert srv.http.delete(srv.url(f"{API}/acquisition/{sid}")).status_code == 200
    held, dead = mpps_of(srv)["messages"]
    assert (dead["kind"], dead["state"], held["kind"], held["held"]) == ("create", "dead", "set", True)
    return srv, dead, held


def test_retry_of_a_dead_create_creates_the_step_and_then_the_set_goes(serve, scp, as_operator, capsys):
    srv, dead, held = dead_create_and_held_set(serve, scp)
    # A held set is not what to retry, a dead message is not dropped... until it is retried.
    answer = srv.http.post(srv.url(f"{MPPS}/{held['id']}/retry"))
    assert answer.status_code == 409 and "dead N-CREATE" in answer.json()["message"]
    assert srv.http.delete(srv.url(f"{MPPS}/{held['id']}")).status_code == 409       # pending, not dead
    assert srv.http.post(srv.url(f"{MPPS}/999999/retry")).status_code == 404
    assert srv.http.delete(srv.url(f"{MPPS}/999999")).status_code == 404

    # The SCP now answers normally (its one 0x0120 is spent).
    assert cli.main(["outbox", "retry-mpps", str(dead["id"]), "--url", srv.base]) == 0
    assert f"MPPS message {dead['id']} is pending again" in capsys.readouterr().out
    assert scp.wait_for(3), mpps_of(srv)
    assert [(r.kind, r.status) for r in scp.requests] == [("create", 0x0120), ("create", 0), ("set", 0)]
    assert scp.steps[dead["mppsUid"]].PerformedProcedureStepStatus == "DISCONTINUED"
    assert wait_until(lambda: mpps_of(srv)["counts"] == {"delivered": 2}, 10), mpps_of(srv)
    retried = {m["id"]: m for m in mpps_of(srv)["messages"]}[dead["id"]]
    assert (retried["state"], retried["attempts"], retried["dimseStatus"]) == ("delivered", 1, "0x0000")

    answer = srv.http.post(srv.url(f"{MPPS}/{dead['id']}/retry"))
    assert answer.status_code == 409 and "delivered already" in answer.json()["message"]
    assert srv.http.delete(srv.url(f"{MPPS}/{dead['id']}")).status_code == 409
    assert cli.main(["outbox", "drop-mpps", str(dead["id"]), "--url", srv.base]) == 1
    assert "409" in capsys.readouterr().err


def test_drop_of_a_dead_create_drops_its_held_set(serve, scp, as_operator, capsys, caplog):
    srv, dead, held = dead_create_and_held_set(serve, scp)
    caplog.set_level(logging.INFO, logger="sensord.forward.mpps")
    answer = srv.http.delete(srv.url(f"{MPPS}/{dead['id']}"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(m["id"], m["kind"]) for m in body["dropped"]] == [(dead["id"], "create"), (held["id"], "set")]
    assert f"N-SET {held['id']}" in body["message"] and "never created" in body["message"]
    assert any(f"with its dead N-CREATE {dead['id']}" in r.getMessage() for r in caplog.records)
    assert mpps_of(srv) == {"configured": True, "counts": {}, "messages": []}
    assert srv.http.delete(srv.url(f"{MPPS}/{dead['id']}")).status_code == 404
    srv.daemon.mpps.tick()                  # a round with nothing left to send
    assert [r.kind for r in scp.requests] == ["create"]


def test_drop_on_the_command_line_says_what_went(serve, scp, as_operator, capsys):
    srv, dead, held = dead_create_and_held_set(serve, scp)
    assert cli.main(["outbox", "drop-mpps", str(dead["id"]), "--url", srv.base]) == 0
    out = capsys.readouterr().out
    assert f"dropped MPPS message {dead['id']} and its session's N-SET {held['id']}" in out
    assert mpps_of(srv)["counts"] == {}


def test_without_mpps_the_routes_are_404(serve):
    srv = serve()
    assert srv.http.post(srv.url(f"{MPPS}/1/retry")).status_code == 404
    assert srv.http.delete(srv.url(f"{MPPS}/1")).status_code == 404


def test_the_queue_closes_the_step_of_a_dropped_create(tmp_path):
    """A create dropped while its session still images: no N-SET is queued later."""
    queue = MppsQueue(tmp_path / "mpps.db")
    queue.start()
    try:
        queue.record_image("s1", [], create=lambda: ("1.2.3", "P", "{}", 0.0, "cannot build the N-CREATE: x"))
        [create] = queue.messages()
        assert queue.retry(create.id) == "retried" and queue.get(create.id).state == "pending"
        assert queue.drop(create.id) == ("not dead", [])
        queue.dead(create.id, "again")
        assert queue.drop(create.id)[0] == "dropped"
        assert queue.close_step("s1", lambda step, found: ("DISCONTINUED", "{}")) is None
        assert queue.record_image("s1", []) == "closed"
        assert queue.messages() == [] and queue.retry(create.id) == "unknown"
    finally:
        queue.close()
