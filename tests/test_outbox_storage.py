"""The outbox on disk: its PNGs go through durable.py (a hard link where the
disk allows, else a durable write), and each row maps by name onto an Entry."""
from __future__ import annotations

import dataclasses
import errno
import os
import sqlite3

import pytest

from sensord.daemon import durable
from sensord.daemon.forward.outbox import Outbox
from sensord.daemon.forward.outbox_table import Entry
from tests.support import images

INFO = {"lutInfo": None, "pixelHash": {"alg": "MD5", "hash": "0" * 32}}


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox", clock=lambda: 1_000_000.0)
    box.start()
    yield box
    box.close()


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "src.png"
    path.write_bytes(images.png16(images.raw_image(20, 30)))
    return path


def test_a_source_on_the_same_disk_is_hard_linked_not_copied(outbox, source):
    outbox.add([("t", "raw")], image_id="img", image_info=INFO, context={}, png_path=source)
    queued = outbox.files / "img.png"
    assert os.path.samefile(queued, source)
    assert sorted(p.name for p in outbox.files.iterdir()) == ["img.png"]     # no temporary left


def test_where_no_link_can_be_made_the_bytes_are_written_and_fsynced(outbox, source, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(durable.os, "link", no_link)
    monkeypatch.setattr(durable.os, "fsync", fsync)
    outbox.add([("t", "raw")], image_id="img", image_info=INFO, context={}, png_path=source)
    queued = outbox.files / "img.png"
    assert queued.read_bytes() == source.read_bytes() and not os.path.samefile(queued, source)
    # The data under its temporary name, then the folder that holds the rename.
    assert synced[0].startswith(".img.png.tmp-") and synced[1] == "files", synced
    assert sorted(p.name for p in outbox.files.iterdir()) == ["img.png"]


def test_bytes_without_a_source_are_queued_too(outbox):
    png = images.png16(images.raw_image(8, 8))
    [entry_id] = outbox.add([("t", "raw")], image_id="img", image_info=INFO, context={}, png=png)
    assert outbox.get(entry_id).file.read_bytes() == png


def test_link_atomic_replaces_an_existing_name_whole(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    durable.link_atomic(new, old)
    assert old.read_bytes() == b"new" and os.path.samefile(old, new)
    with pytest.raises(FileNotFoundError):
        durable.link_atomic(tmp_path / "gone", tmp_path / "there")
    assert not (tmp_path / "there").exists()


def test_every_entry_field_is_read_from_the_column_of_its_name(outbox, source):
    with sqlite3.connect(outbox.root / "outbox.db") as db:
        table = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
    db.close()
    assert {f.name for f in dataclasses.fields(Entry)} <= table
    [entry_id] = outbox.add([("t", "select:smooth")], image_id="img", image_info=INFO,
                            context={"patientId": "P"}, png_path=source)
    outbox.retry_later(entry_id, 1_000_100.0, "HTTP 503")
    outbox.delivered(entry_id, {"remote": "r-1"})
    assert outbox.get(entry_id) == Entry(
        id=entry_id, target="t", image_id="img", filter="select:smooth", file=outbox.files / "img.png",
        image_info=INFO, context={"patientId": "P"}, state="delivered", attempts=0,
        next_attempt=1_000_000.0, created=1_000_000.0, updated=1_000_000.0,
        last_error="HTTP 503", receipt={"remote": "r-1"})
    assert outbox.counts() == {"delivered": 1}


def _queue_again_while(outbox, source, monkeypatch, meanwhile):
    """Queue ``img`` for a second target, running ``meanwhile`` in the gap between
    add() storing the file and taking the lock: where another thread's delivery,
    drop or prune of the image's first entry lands when it loses the race."""
    real_store = Outbox._store_file
    calls = []

    def store_then_race(self, *args):
        real_store(self, *args)
        if not calls:
            calls.append(1)
            meanwhile()

    monkeypatch.setattr(Outbox, "_store_file", store_then_race)
    return outbox.add([("u", "raw")], image_id="img", image_info=INFO, context={}, png_path=source)


@pytest.mark.parametrize("how", ["delivered", "dropped", "pruned"])
def test_an_image_queued_again_while_its_last_entry_leaves_keeps_its_file(outbox, source, monkeypatch, how):
    [first] = outbox.add([("t", "raw")], image_id="img", image_info=INFO, context={}, png_path=source)
    queued = outbox.files / "img.png"
    if how == "pruned":
        outbox.delivered(first, {"id": "r"})
        os.link(source, queued)          # what a crash between delivery and unlink leaves
    meanwhile = {"delivered": lambda: outbox.delivered(first, {"id": "r"}),
                 "dropped": lambda: outbox.drop(first),
                 "pruned": lambda: outbox.prune(2_000_000.0)}[how]
    [second] = _queue_again_while(outbox, source, monkeypatch, meanwhile)
    assert outbox.get(second).state == "pending"
    assert queued.read_bytes() == source.read_bytes(), f"the waiting entry's file was lost ({how})"
