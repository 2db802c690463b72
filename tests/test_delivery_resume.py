"""Exactly once on every path (issue #12): each step's result is recorded in
the outbox entry before the next, so a lost answer at any step, or a kill -9
between any two steps, ends with one complete item on the platform.

A kill -9 is simulated in-process: the outbox's record_step raises a
BaseException right after the step was committed (nothing of the adapter's
runs after it), and a NEW Outbox and Forwarder on the same folder resume.
The real process kill -9 is test_v7_direct_kill_9_between_put_and_confirm.
"""
from __future__ import annotations

import sqlite3

import pytest
import requests

from sensord.daemon.forward.outbox import Outbox
from tests.support import resume
from tests.support.fake_v7 import FakeV7, Storage
from tests.support.loopback import serving
from tests.support.resume import Clock

FAST = 0.5
LATE = 1.2


def v7_options(base, mode, bucket):
    options = {"url": f"{base}/api/v2", "team_slug": "clinic", "api_key": "key-1", "dataset_slug": "xrays",
               "mode": mode, "timeout": FAST}
    if mode == "external":
        options.update(storage_name="clinic-bucket", storage_folder=str(bucket))
    return options


def run(folder, options, clock, **kwargs):
    return resume.run(folder, "v7", options, clock, target="darwin", **kwargs)


def queue(folder, tmp_path, clock):
    return resume.queue(folder, tmp_path, clock, target="darwin")


def assert_one_complete_item(fake, item, entries):
    [entry] = entries
    assert entry.state == "delivered", entry
    [stored] = fake.items()
    assert stored["name"] == f"{item.image_id}.png"
    assert stored["status"] in ("processing", "new")
    if stored["data"] is not None or "upload" in entry.progress:
        assert stored["data"] == item.png_path.read_bytes()
    return entry


DIRECT_STEPS = ["upload", "put", "confirmed"]


@pytest.mark.parametrize("step", DIRECT_STEPS)
def test_v7_direct_killed_after_each_step_resumes_on_restart(tmp_path, step):
    fake, clock, folder = FakeV7(), Clock(), tmp_path / "state"
    item = queue(folder, tmp_path, clock)
    with serving(fake.app) as base:
        [entry] = run(folder, v7_options(base, "direct", None), clock, kill_after=step)
        assert entry.state == "pending" and step in entry.progress          # durable before the next step
        entries = run(folder, v7_options(base, "direct", None), clock, rounds=3)
    entry = assert_one_complete_item(fake, item, entries)
    assert len(fake.calls("register_upload")) == 1 and len(fake.uploads) == 1
    assert len(fake.calls("/storage/")) == 1                # never PUT again once recorded, once before it
    assert entry.receipt["resumed"] is True and entry.receipt["status"] in ("processing", "new")


@pytest.mark.parametrize("on", ["register_upload", "sign", "/storage/", "confirm", "/api/datasets"])
def test_v7_direct_lost_answer_at_each_step(tmp_path, on):
    fake, clock, folder = FakeV7(), Clock(), tmp_path / "state"
    fake.lose(1, seconds=LATE, on=on)
    item = queue(folder, tmp_path, clock)
    with serving(fake.app) as base:
        entries = run(folder, v7_options(base, "direct", None), clock, rounds=4)
    entry = assert_one_complete_item(fake, item, entries)
    assert len(fake.uploads) == 1 and entry.attempts >= 2


def test_v7_direct_lost_register_answer_then_restart_finishes_the_stuck_item(tmp_path):
    """Issue #12 (a): the upload id was only in the lost answer; the listing gives it back."""
    fake, clock, folder = FakeV7(), Clock(), tmp_path / "state"
    fake.lose(1, seconds=LATE, on="register_upload")
    item = queue(folder, tmp_path, clock)
    with serving(fake.app) as base:
        [entry] = run(folder, v7_options(base, "direct", None), clock)
        assert entry.state == "pending" and fake.items()[0]["status"] == "uploading"
        entries = run(folder, v7_options(base, "direct", None), clock, rounds=2)
    entry = assert_one_complete_item(fake, item, entries)
    assert entry.receipt["duplicate"] is True and len(fake.calls("/storage/")) == 1


def test_v7_direct_stuck_item_without_a_pending_upload_is_registered_again(tmp_path):
    fake, clock, folder = FakeV7(), Clock(), tmp_path / "state"
    item = queue(folder, tmp_path, clock)
    with serving(fake.app) as base:
        # Someone else's registration of the same name whose upload is gone.
        requests.post(f"{base}/api/v2/teams/clinic/items/register_upload", headers={"Authorization": "ApiKey key-1"},
                      json={"dataset_slug": "xrays", "items": [{"path": "/sensord/P-0001",
                            "name": f"{item.image_id}.png", "slots": [{"slot_name": "0",
                                                                        "file_name": f"{item.image_id}.png"}]}]})
        fake.uploads.clear()
        entries = run(folder, v7_options(base, "direct", None), clock, rounds=3)
    assert_one_complete_item(fake, item, entries)
    assert len([c for c in fake.requests if c["method"] == "DELETE"]) == 1


def test_v7_external_killed_after_registration_and_lost_answer(tmp_path):
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    fake, clock, folder = FakeV7(storages={"clinic-bucket": Storage(bucket)}), Clock(), tmp_path / "state"
    item = queue(folder, tmp_path, clock)
    with serving(fake.app) as base:
        [entry] = run(folder, v7_options(base, "external", bucket), clock, kill_after="registered")
        assert entry.progress["registered"]["duplicate"] is False
        entries = run(folder, v7_options(base, "external", bucket), clock, rounds=2)
    entry = assert_one_complete_item(fake, item, entries)
    assert len(fake.calls("register_existing")) == 1            # resumed at the lookup


def test_v7_external_lost_register_answer_is_confirmed_by_lookup(tmp_path):
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    fake, clock, folder = FakeV7(storages={"clinic-bucket": Storage(bucket)}), Clock(), tmp_path / "state"
    fake.lose(1, seconds=LATE, on="register_existing")
    item = queue(folder, tmp_path, clock)
    with serving(fake.app) as base:
        entries = run(folder, v7_options(base, "external", bucket), clock, rounds=3)
    entry = assert_one_complete_item(fake, item, entries)
    assert entry.receipt["duplicate"] is True and entry.progress["registered"]["reason"] == "ALREADY_EXISTS"


# -- the outbox's side ----------------------------------------------------------

def test_progress_survives_reopen_and_operator_retry_and_is_gone_with_a_drop(tmp_path):
    clock = Clock()
    outbox = Outbox(tmp_path, clock=clock)
    outbox.start()
    [entry_id] = outbox.add([("t", "raw")], image_id="a", image_info={}, context={}, png=b"x")
    outbox.record_step(entry_id, "upload", {"upload_id": "u1"})
    outbox.record_step(entry_id, "put", "u1")
    outbox.record_step(entry_id, "put", None)                   # None forgets a step
    outbox.dead(entry_id, "boom")
    assert outbox.retry(entry_id)
    outbox.close()
    outbox = Outbox(tmp_path, clock=clock)
    outbox.start()
    entry = outbox.get(entry_id)
    assert entry is not None and entry.progress == {"upload": {"upload_id": "u1"}}
    assert outbox.drop(entry_id) and outbox.get(entry_id) is None
    outbox.close()


def test_an_outbox_from_before_progress_gets_the_column(tmp_path):
    db = sqlite3.connect(tmp_path / "outbox.db")
    db.executescript("""CREATE TABLE entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, image_id TEXT NOT NULL,
        filter TEXT NOT NULL DEFAULT 'raw', file TEXT NOT NULL, image_info TEXT NOT NULL, context TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
        leased INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, created REAL NOT NULL,
        updated REAL NOT NULL, last_error TEXT, receipt TEXT, UNIQUE (target, image_id, filter));
        INSERT INTO entries (target, image_id, file, image_info, context, next_attempt, created, updated)
        VALUES ('t', 'a', 'a.png', '{}', '{}', 0, 0, 0);""")
    db.close()
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.png").write_bytes(b"x")
    outbox = Outbox(tmp_path)
    outbox.start()
    [entry] = outbox.list()
    assert entry.progress == {}
    outbox.record_step(entry.id, "upload", {"upload_id": "u1"})
    assert outbox.get(entry.id).progress == {"upload": {"upload_id": "u1"}}
    outbox.close()
