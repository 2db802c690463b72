"""Exactly once on every path for eyened, Datamint and DICOMweb (issue #12): each
step's result is recorded in the outbox entry before the next, so a lost answer at
any step, or a kill -9 right after any step, ends with the image on the platform
once.

As in test_delivery_resume.py, a kill -9 is simulated in-process: the outbox's
record_step raises a BaseException right after the step was committed, and a NEW
Outbox and Forwarder on the same folder resume.
"""
from __future__ import annotations

import pytest

from sensord.daemon.forward.platforms import dicom
from tests.support.fake_datamint import FakeDatamint
from tests.support.fake_dicomweb import FakeStow
from tests.support.fake_eyened import FakeEyened
from tests.support.loopback import serving, serving_fake
from tests.support.resume import Clock, queue, run

FAST = 0.5
LATE = 1.2


def delivered(entries):
    [entry] = entries
    assert entry.state == "delivered", entry
    return entry


# -- eyened: place on the share ("placed"), then import ("imported") ------------------------------

def eyened_options(base, share):
    return {"url": base, "username": "sensord", "password": "s3cret", "image_base_folder": str(share),
            "project_name": "Dental", "modality": "ColorFundus", "source_info_id": 1,
            "device_instance_id": 1, "modality_id": 1, "timeout": FAST}


@pytest.fixture
def share(tmp_path):
    folder = tmp_path / "share"
    folder.mkdir()
    return folder


def assert_one_eyened_image(fake, item, share):
    [image] = fake.images
    assert image["bytes"] == item.png_path.read_bytes()
    assert (share / image["DatasetIdentifier"]).read_bytes() == image["bytes"]
    assert image["SOPInstanceUid"].startswith("2.25.")
    return image


@pytest.mark.parametrize("step", ["placed", "imported"])
def test_eyened_killed_after_each_step_resumes_on_restart(tmp_path, share, step):
    fake, clock, folder = FakeEyened(share), Clock(), tmp_path / "state"
    item = queue(folder, tmp_path, clock)
    with serving_fake(fake) as (_, base):
        [entry] = run(folder, "eyened", eyened_options(base, share), clock, kill_after=step)
        assert entry.state == "pending" and step in entry.progress          # durable before the next step
        placed = share / entry.progress["placed"]
        inode = placed.stat().st_ino
        entry = delivered(run(folder, "eyened", eyened_options(base, share), clock, rounds=2))
    image = assert_one_eyened_image(fake, item, share)
    assert fake.import_calls == 1                       # never imported again once recorded
    assert placed.stat().st_ino == inode                # nor placed again
    assert entry.progress["imported"]["image"] == image["DatasetIdentifier"] == entry.progress["placed"]
    assert entry.receipt["duplicate"] is False
    assert entry.receipt.get("resumed") is (True if step == "imported" else None)


@pytest.mark.parametrize("on", ["/api/auth/token", "/api/import/image"])
def test_eyened_lost_answer_at_each_step(tmp_path, share, on):
    fake, clock, folder = FakeEyened(share), Clock(), tmp_path / "state"
    fake.faults.lose(LATE, path=on)
    item = queue(folder, tmp_path, clock)
    with serving_fake(fake) as (_, base):
        entry = delivered(run(folder, "eyened", eyened_options(base, share), clock, rounds=4))
    assert_one_eyened_image(fake, item, share)
    assert entry.attempts == 2 and "placed" in entry.progress and "imported" in entry.progress
    assert entry.receipt["duplicate"] is (on == "/api/import/image")     # the import had happened


def test_eyened_lost_import_answer_then_killed_after_recording_it(tmp_path, share):
    fake, clock, folder = FakeEyened(share), Clock(), tmp_path / "state"
    fake.faults.lose(LATE, path="/api/import/image")
    item = queue(folder, tmp_path, clock)
    with serving_fake(fake) as (_, base):
        [entry] = run(folder, "eyened", eyened_options(base, share), clock, rounds=2, kill_after="imported")
        assert entry.state == "pending" and entry.progress["imported"]["duplicate"] is True
        entry = delivered(run(folder, "eyened", eyened_options(base, share), clock))
    assert_one_eyened_image(fake, item, share)
    assert fake.import_calls == 2 and entry.receipt["resumed"] is True


def test_eyened_placed_file_gone_from_the_share_is_placed_again(tmp_path, share):
    fake, clock, folder = FakeEyened(share), Clock(), tmp_path / "state"
    item = queue(folder, tmp_path, clock)
    with serving_fake(fake) as (_, base):
        [entry] = run(folder, "eyened", eyened_options(base, share), clock, kill_after="placed")
        (share / entry.progress["placed"]).unlink()                     # someone cleaned the share
        delivered(run(folder, "eyened", eyened_options(base, share), clock))
    assert_one_eyened_image(fake, item, share)


# -- Datamint: lookup, upload ("uploaded") -----------------------------------------------------------

def datamint_options(base):
    return {"url": base, "api_key": "key-1", "timeout": FAST}


def assert_one_datamint_resource(fake, item):
    [resource] = [r for r in fake.resources if not r["deleted"]]
    assert resource["filename"] == item.filename and resource["bytes"] == item.png_path.read_bytes()
    return resource


def test_datamint_killed_after_upload_resumes_on_restart(tmp_path):
    fake, clock, folder = FakeDatamint(), Clock(), tmp_path / "state"
    item = queue(folder, tmp_path, clock)
    with serving_fake(fake) as (_, base):
        [entry] = run(folder, "datamint", datamint_options(base), clock, kill_after="uploaded")
        assert entry.state == "pending" and entry.progress["uploaded"]["duplicate"] is False
        entry = delivered(run(folder, "datamint", datamint_options(base), clock, rounds=2))
    resource = assert_one_datamint_resource(fake, item)
    assert fake.upload_calls == 1 and fake.lookup_calls == 1            # nothing asked again
    assert entry.receipt["id"] == resource["id"] == entry.progress["uploaded"]["id"]
    assert entry.receipt["resumed"] is True


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_datamint_lost_answer_at_each_step(tmp_path, method):
    fake, clock, folder = FakeDatamint(), Clock(), tmp_path / "state"
    fake.faults.lose(LATE, path="/resources", method=method)
    item = queue(folder, tmp_path, clock)
    with serving_fake(fake) as (_, base):
        entry = delivered(run(folder, "datamint", datamint_options(base), clock, rounds=4))
    resource = assert_one_datamint_resource(fake, item)
    assert fake.upload_calls == 1 and entry.attempts == 2
    assert entry.receipt["id"] == resource["id"] == entry.progress["uploaded"]["id"]
    assert entry.receipt["duplicate"] is (method == "POST")             # found by the lookup


def test_datamint_lost_upload_answer_then_killed_after_the_lookup_recorded_it(tmp_path):
    fake, clock, folder = FakeDatamint(), Clock(), tmp_path / "state"
    fake.faults.lose(LATE, path="/resources", method="POST")
    item = queue(folder, tmp_path, clock)
    with serving_fake(fake) as (_, base):
        [entry] = run(folder, "datamint", datamint_options(base), clock, rounds=2, kill_after="uploaded")
        assert entry.state == "pending" and entry.progress["uploaded"]["duplicate"] is True
        entry = delivered(run(folder, "datamint", datamint_options(base), clock))
    assert_one_datamint_resource(fake, item)
    assert fake.upload_calls == 1 and fake.lookup_calls == 2 and entry.receipt["duplicate"] is True


# -- DICOMweb: STOW ("stored"), then the read-back -------------------------------------------------------

def dicomweb_options(base):
    return {"url": base, "timeout": FAST}


def test_dicomweb_killed_after_the_store_goes_straight_to_the_readback(tmp_path):
    fake, clock, folder = FakeStow(), Clock(), tmp_path / "state"
    item = queue(folder, tmp_path, clock)
    with serving(fake) as base:
        [entry] = run(folder, "dicomweb", dicomweb_options(base), clock, kill_after="stored")
        assert entry.state == "pending" and entry.progress["stored"]["sop"] == dicom.instance_uid(item.image_id)
        assert fake.readbacks == 0
        entry = delivered(run(folder, "dicomweb", dicomweb_options(base), clock, rounds=2))
    assert fake.stows == 1 and fake.readbacks == 1 and list(fake.instances) == [dicom.instance_uid(item.image_id)]
    assert entry.receipt["alreadyStored"] is True and entry.receipt["verified"] is True


def test_dicomweb_lost_stow_answer_is_read_back_not_sent_again(tmp_path):
    fake, clock, folder = FakeStow(), Clock(), tmp_path / "state"
    fake.lose_next_stow(LATE)
    item = queue(folder, tmp_path, clock)
    try:
        with serving(fake) as base:
            entry = delivered(run(folder, "dicomweb", dicomweb_options(base), clock, rounds=3))
    finally:
        fake.release()
    assert fake.stows == 1 and list(fake.instances) == [dicom.instance_uid(item.image_id)]
    assert entry.attempts == 2 and entry.receipt["alreadyStored"] is True
