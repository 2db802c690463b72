"""Retention of the image outbox: delivered entries leave ``outbox.db`` once
last changed more than ``forward.keep_delivered_days`` ago, with any file
they still own; pending, committing and dead entries stay, whatever their age.

A real outbox in tmp_path aged through its injectable clock; the daemon's
scheduler job against a real server and a faithful Datamint on loopback,
rows aged through a second SQLite connection as time would.
"""
from __future__ import annotations

import logging
import sqlite3

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sensord.daemon.forward.outbox import Outbox
from sensord.daemon.service import PRUNE_SECONDS
from tests.support import images
from tests.support.filters_api import upload
from tests.support.forward import target
from tests.support.loopback import wait_until

DAY = 86400.0
NOW = 1_700_000_000.0
INFO = {"createdOn": "2023-11-14T22:13:20Z"}
ADMIN = "/api/sensord/v1"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(tmp_path, clock):
    box = Outbox(tmp_path / "outbox", clock=clock)
    box.start()
    yield box
    box.close()


@pytest.fixture
def png() -> bytes:
    return images.png16(images.raw_image(48, 64))


def queue(outbox: Outbox, image_id: str, png: bytes, *targets: str) -> list[int]:
    return outbox.add([(t, "raw") for t in targets], image_id=image_id, image_info=INFO, context={}, png=png)


def files(outbox: Outbox) -> set[str]:
    return {p.name for p in outbox.files.iterdir()}


def test_old_delivered_entries_go_with_their_files_and_nothing_else_does(outbox, clock, png):
    clock.now = NOW - 40 * DAY
    [gone] = queue(outbox, "gone", png, "a")
    outbox.delivered(gone, {"remote": "r-1"})
    # Delivered to one target, still waiting for another: the file is the waiting one's.
    shared, waiting = queue(outbox, "shared", png, "a", "b")
    outbox.delivered(shared, {"remote": "r-2"})
    # Delivered, but its file survived (a crash between the commit and the unlink).
    [crashed] = queue(outbox, "crashed", png, "a")
    outbox.delivered(crashed, {"remote": "r-3"})
    (outbox.files / "crashed.png").write_bytes(png)
    [dead] = queue(outbox, "dead", png, "a")
    outbox.dead(dead, "HTTP 400")
    [committing] = queue(outbox, "committing", png, "a")
    [leased] = outbox.lease_due(exclude=set(), limit=5, lease_seconds=60, target="a")
    assert leased.id == committing
    assert outbox.await_confirmation(committing, NOW + DAY)
    outbox.retry_later(waiting, NOW + DAY, "HTTP 503")     # old, and waiting after a failure
    # Delivered 29 days before the prune, queued 40 days before it: its last change counts.
    [recent] = queue(outbox, "recent", png, "a")
    clock.now = NOW - 29 * DAY
    outbox.delivered(recent, {"remote": "r-4"})
    clock.now = NOW
    before = (outbox.counts(), outbox.depth(), outbox.failures(), outbox.overdue(NOW))
    assert files(outbox) == {"shared.png", "crashed.png", "dead.png", "committing.png"}

    assert outbox.prune(NOW - 30 * DAY) == 3
    assert outbox.get(gone) is outbox.get(shared) is outbox.get(crashed) is None
    assert {e.id: e.state for e in outbox.list()} == {
        waiting: "pending", dead: "dead", committing: "committing", recent: "delivered"}
    assert files(outbox) == {"shared.png", "dead.png", "committing.png"}     # the waiting ones' only
    assert outbox.counts() == {"pending": 1, "dead": 1, "committing": 1, "delivered": 1}
    # What waits reads as it did: depth (the metrics), failures, readiness.
    assert (outbox.depth(), outbox.failures(), outbox.overdue(NOW)) == before[1:]
    assert outbox.by_target()["a"]["counts"] == {"dead": 1, "committing": 1, "delivered": 1}
    assert outbox.by_target()["b"]["counts"] == {"pending": 1}
    assert outbox.prune(NOW - 30 * DAY) == 0
    # Entries of any age in the other states stay; the waiting one still delivers.
    assert outbox.prune(NOW + 365 * DAY) == 1       # (only ``recent`` was delivered)
    assert outbox.counts() == {"pending": 1, "dead": 1, "committing": 1}
    outbox.delivered(waiting, {"remote": "r-5"})
    assert files(outbox) == {"dead.png", "committing.png"}


def test_an_image_whose_entries_were_pruned_may_be_queued_again(outbox, clock, png):
    clock.now = NOW - 31 * DAY
    [first] = queue(outbox, "img", png, "a")
    outbox.delivered(first, {})
    assert queue(outbox, "img", png, "a") == []         # the delivered row still stands for it
    clock.now = NOW
    assert outbox.prune(NOW - 30 * DAY) == 1
    [again] = queue(outbox, "img", png, "a")
    assert again != first and (outbox.files / "img.png").read_bytes() == png


def test_each_batch_is_a_transaction_of_its_own(outbox, clock, png):
    clock.now = NOW - 31 * DAY
    ids = queue(outbox, "many", png, *(f"t{i}" for i in range(450)))
    kept = queue(outbox, "many", png, "kept")
    for entry_id in ids + kept:
        outbox.delivered(entry_id, {})
    clock.now = NOW
    with sqlite3.connect(outbox.root / "outbox.db") as db:     # as if ``kept`` were delivered yesterday
        db.execute("UPDATE entries SET updated = ? WHERE id = ?", (NOW - DAY, kept[0]))
    db.close()
    statements: list[str] = []
    outbox._conn.set_trace_callback(statements.append)
    try:
        assert outbox.prune(NOW - 30 * DAY, batch=200) == 450
    finally:
        outbox._conn.set_trace_callback(None)
    transactions: list[int] = []
    for sql in statements:
        if sql == "BEGIN IMMEDIATE":
            transactions.append(0)
        elif sql.startswith("DELETE FROM entries"):
            transactions[-1] += 1
    assert transactions == [200, 200, 50]
    assert statements.count("COMMIT") == 3
    assert [e.id for e in outbox.list()] == kept


def test_the_daemon_prunes_delivered_entries_hourly_and_the_outbox_api_follows(serve, datamint, caplog):
    fake, url = datamint
    srv = serve(forward={"targets": [target(url, deidentify=False, max_attempts=1)], "keep_delivered_days": 7})
    job = srv.daemon.scheduler._scheduler.get_job("outbox-prune")
    assert job is not None and job.trigger.interval.total_seconds() == PRUNE_SECONDS

    def forward(seed: int) -> int:
        res = upload(srv, media=images.png16(images.raw_image(48, 64, seed=seed))).json()
        answer = srv.http.post(srv.url(ADMIN + "/forward"), json={"target": "dm", "resourceId": res["id"]})
        assert answer.status_code == 202, answer.text
        return answer.json()["entries"][0]

    old, old_too, recent = forward(1), forward(2), forward(3)
    assert wait_until(lambda: srv.http.get(srv.url(ADMIN + "/outbox")).json()["counts"] == {"delivered": 3})
    fake.faults.fail(1, status=400, path="/resources", method="POST")
    dead = forward(4)
    assert wait_until(lambda: srv.http.get(srv.url(ADMIN + "/outbox")).json()["counts"]
                      == {"delivered": 3, "dead": 1})
    with sqlite3.connect(srv.daemon.outbox.root / "outbox.db") as db:     # eight days go by for three
        db.execute("UPDATE entries SET updated = updated - ? WHERE id IN (?, ?, ?)", (8 * DAY, old, old_too, dead))
    db.close()

    with caplog.at_level(logging.INFO, logger="sensord"):
        job.func()                      # the job as the scheduler runs it
    assert srv.daemon.scheduler.finished_at("outbox-prune") is not None
    assert [r.getMessage() for r in caplog.records if "pruned" in r.getMessage()] == [
        "outbox: pruned 2 delivered entries last changed over 7 day(s) ago"]

    box = srv.http.get(srv.url(ADMIN + "/outbox"))
    assert box.status_code == 200
    assert box.json()["counts"] == {"delivered": 1, "dead": 1}
    assert {e["id"]: e["state"] for e in box.json()["entries"]} == {recent: "delivered", dead: "dead"}
    assert [e["id"] for e in srv.http.get(srv.url(ADMIN + "/outbox?state=delivered")).json()["entries"]] == [recent]
    assert srv.http.post(srv.url(f"{ADMIN}/outbox/{old}/retry")).status_code == 404
    assert srv.http.post(srv.url(f"{ADMIN}/outbox/{dead}/retry")).status_code == 200   # the dead one waits on
    assert wait_until(lambda: srv.http.get(srv.url(ADMIN + "/outbox")).json()["counts"] == {"delivered": 2})
    [dm] = [t for t in srv.http.get(srv.url(ADMIN + "/status")).json()["outbox"]["targets"] if t["name"] == "dm"]
    assert dm["counts"] == {"delivered": 2}
    # The delivered counter counts deliveries, not rows: the pruned ones still count.
    def scrape() -> dict:
        return {(s.name, s.labels.get("result") or s.labels.get("state")): s.value
                for family in text_string_to_metric_families(srv.http.get(srv.url("/metrics")).text)
                for s in family.samples if s.labels.get("target") == "dm"}
    # (counted once the outbox has recorded the delivery, a moment after: wait for it)
    assert wait_until(lambda: scrape()[("sensord_deliveries_total", "delivered")] == 4), scrape()
    scraped = scrape()
    assert scraped[("sensord_outbox_entries", "dead")] == scraped[("sensord_outbox_entries", "pending")] == 0
    assert job.func() is None and srv.http.get(srv.url(ADMIN + "/outbox")).json()["counts"] == {"delivered": 2}
