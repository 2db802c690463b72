"""Retention of the MPPS queue: finished sessions leave ``mpps.db`` once older
than ``forward.keep_delivered_days``; nothing in progress, pending or dead does.

A real SQLite file in tmp_path; rows are aged by setting their timestamps
through a second connection, as time would; the restart test sends to a real
pynetdicom MPPS SCP on loopback.
"""
from __future__ import annotations

import logging
import sqlite3
import types
import uuid

import pytest

from sensord.daemon.dimse.network import Peer
from sensord.daemon.forward import mpps_messages as messages
from sensord.daemon.forward.events import ImageQueued
from sensord.daemon.forward.mpps import Mpps
from sensord.daemon.forward.mpps_messages import Instance
from sensord.daemon.forward.mpps_queue import MppsQueue
from sensord.daemon.forward.platforms import dicom
from tests.support.mpps_daemon import ITEM
from tests.support.mpps_scp import MppsScp

DAY = 86400.0
NOW = 1_700_000_000.0
BOUND = {**ITEM, "worklistBound": True}
INFO = {"createdOn": "2023-11-14T22:13:20Z", "sensorInfo": {"serialNumber": "SN-1"}}
TARGETS = {"pacs": types.SimpleNamespace(kind="dicomweb", deid=None)}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def age(db_path, session: str, days: float) -> None:
    """Make everything of ``session`` ``days`` older, as if that much time had passed."""
    shift = days * DAY
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE steps SET started = started - ?, last_image = last_image - ? WHERE session = ?",
                   (shift, shift, session))
        db.execute("UPDATE messages SET created = created - ?, updated = updated - ? WHERE session = ?",
                   (shift, shift, session))


def rows(db_path) -> dict[str, dict[str, int]]:
    """Per table, the rows left per session."""
    out: dict[str, dict[str, int]] = {}
    with sqlite3.connect(db_path) as db:
        for table in ("steps", "messages", "instances"):
            out[table] = dict(db.execute(f"SELECT session, COUNT(*) FROM {table} GROUP BY session").fetchall())
    return out


def instances(n: int) -> list[Instance]:
    return [Instance("1.2.3.4", dicom.SOP_CLASS, f"1.2.3.4.{uuid.uuid4().int % 10**12}") for _ in range(n)]


@pytest.fixture
def queue(tmp_path):
    q = MppsQueue(tmp_path / "outbox" / "mpps.db", clock=Clock())
    q.start()
    yield q
    q.close()


def opened(queue: MppsQueue, session: str, n: int = 2, *, error: str | None = None) -> None:
    queue.record_image(session, instances(n),
                       create=lambda: (f"2.25.{uuid.uuid4().int}", "P", "{}", NOW, error))


def message(queue: MppsQueue, session: str, kind: str):
    [found] = [m for m in queue.messages() if m.session == session and m.kind == kind]
    return found


def closed(queue: MppsQueue, session: str) -> None:
    assert queue.close_step(session, lambda step, found: ("COMPLETED", "{}")) == "COMPLETED"


def test_only_finished_sessions_past_the_retention_go_with_their_instances(queue):
    # Finished long ago: N-SET delivered; and a step whose dead N-CREATE an operator dropped.
    opened(queue, "done", 3)
    queue.delivered(message(queue, "done", "create").id, 0)
    closed(queue, "done")
    queue.delivered(message(queue, "done", "set").id, 0)
    opened(queue, "dropped", 2, error="cannot build the N-CREATE: x")
    assert queue.drop(message(queue, "dropped", "create").id)[0] == "dropped"
    # Just as old, but not finished: in progress (its N-SET not queued), N-SET pending,
    # N-SET dead, N-CREATE dead with its N-SET held behind it.
    opened(queue, "imaging", 2)
    queue.delivered(message(queue, "imaging", "create").id, 0)
    opened(queue, "set-pending")
    queue.delivered(message(queue, "set-pending", "create").id, 0)
    closed(queue, "set-pending")
    opened(queue, "set-dead")
    queue.delivered(message(queue, "set-dead", "create").id, 0)
    closed(queue, "set-dead")
    queue.dead(message(queue, "set-dead", "set").id, "refused", 0x0106)
    opened(queue, "create-dead", error="cannot build the N-CREATE: y")
    closed(queue, "create-dead")
    # Finished, but recently: and one that imaged long ago whose N-SET went out only now.
    opened(queue, "recent")
    queue.delivered(message(queue, "recent", "create").id, 0)
    closed(queue, "recent")
    queue.delivered(message(queue, "recent", "set").id, 0)
    opened(queue, "late")
    queue.delivered(message(queue, "late", "create").id, 0)
    closed(queue, "late")
    queue.delivered(message(queue, "late", "set").id, 0)

    path = queue.path
    for session in ("done", "dropped", "imaging", "set-pending", "set-dead", "create-dead"):
        age(path, session, 400)
    age(path, "recent", 29)
    with sqlite3.connect(path) as db:     # imaged 400 days ago, its N-SET delivered just now
        db.execute("UPDATE steps SET last_image = last_image - ? WHERE session = 'late'", (400 * DAY,))
    before = rows(path)

    assert queue.prune(NOW - 30 * DAY, batch=2) == (2, 2, 5)      # (batches of 2: the loop goes on)
    after = rows(path)
    for table in after:
        assert "done" not in after[table] and "dropped" not in after[table]
        assert after[table] == {s: n for s, n in before[table].items() if s not in ("done", "dropped")}
    assert queue.step("imaging") is not None and not queue.step("imaging").closed
    assert len(queue.instances("imaging")) == 2
    states = {(m.session, m.kind): (m.state, m.held) for m in queue.messages()}
    assert states[("set-pending", "set")] == ("pending", False)
    assert states[("set-dead", "set")] == ("dead", False)
    assert states[("create-dead", "create")] == ("dead", False)
    assert states[("create-dead", "set")] == ("pending", True)
    assert queue.counts() == {"delivered": 7, "pending": 2, "dead": 2, "held": 1}
    assert queue.prune(NOW - 30 * DAY) == (0, 0, 0)                 # nothing more, ever, for these

    # Once the pending N-SET is delivered, its session goes too, when old enough.
    queue.delivered(message(queue, "set-pending", "set").id, 0)
    assert queue.prune(NOW - 30 * DAY) == (0, 0, 0)                 # just delivered: kept
    age(path, "set-pending", 31)
    assert queue.prune(NOW - 30 * DAY) == (1, 2, 2)


@pytest.fixture
def scp():
    server = MppsScp().start()
    yield server
    server.stop()


def image(session: str) -> ImageQueued:
    return ImageQueued(session_id=session, image_id=str(uuid.uuid4()), image_info=INFO, context=BOUND,
                       pairs=(("pacs", "raw"),))


def deleted(session: str):
    return types.SimpleNamespace(session=types.SimpleNamespace(id=session, deleted=True))


def test_a_restart_after_pruning_still_closes_the_sessions_it_lost(tmp_path, scp, caplog):
    clock = Clock()

    def daemon_life() -> Mpps:
        service = Mpps(tmp_path / "outbox", Peer("127.0.0.1", scp.port, scp.ae_title), ae_title="SENSORD",
                       timeout=5, targets=TARGETS, keep_days=30, clock=clock)
        service.start()
        return service

    first = daemon_life()
    lost, done = image("lost"), image("done")
    first.on_image_queued(lost)
    first.on_image_queued(done)
    first.on_session_changed(deleted("done"))
    first.tick()
    assert first.counts() == {"delivered": 3}
    db = first.queue.path
    for session in ("lost", "done"):
        age(db, session, 45)
    with caplog.at_level(logging.INFO, "sensord.forward.mpps"):
        assert first.prune() == 1
    [line] = [r.getMessage() for r in caplog.records if "pruned" in r.getMessage()]
    assert line == ("MPPS: pruned 1 finished session(s) idle for over 30 day(s): 2 delivered message(s), "
                    "1 recorded instance(s)")
    first.close()                   # the daemon stops: "lost" is still imaging, and vanishes with it

    caplog.clear()
    with caplog.at_level(logging.INFO, "sensord.forward.mpps"):
        second = daemon_life()
        second.tick()
        assert second.prune() == 0      # its N-SET was delivered just now
    assert "session lost ended with the last stop" in caplog.text and "pruned" not in caplog.text
    [n_set] = scp.of("set", messages.mpps_uid("lost"))
    assert n_set.status == 0 and n_set.dataset.PerformedProcedureStepStatus == "COMPLETED"
    assert [r.ReferencedSOPInstanceUID for r in n_set.dataset.PerformedSeriesSequence[0].ReferencedImageSequence] \
        == [dicom.instance_uid(lost.image_id)]
    assert len(scp.of("set", messages.mpps_uid("done"))) == 1      # the pruned one is not closed again
    assert second.queue.step("done") is None and second.counts() == {"delivered": 2}
    second.close()

    clock.now += 31 * DAY
    third = daemon_life()
    assert third.queue.open_steps() == [] and third.prune() == 1 and third.counts() == {}
    third.close()
    assert len(scp.requests) == 4       # create + set of each session, each once


def test_the_daemon_prunes_from_its_scheduler_with_the_configured_retention(serve, scp):
    srv = serve(mpps=scp.config, forward={"keep_delivered_days": 7})
    assert srv.daemon.mpps.keep_days == 7
    job = srv.daemon.scheduler._scheduler.get_job("mpps-prune")
    assert job is not None and job.func is not None
    job.func()                          # the job as the scheduler runs it: nothing to prune, no error
    assert srv.daemon.scheduler.finished_at("mpps-prune") is not None
