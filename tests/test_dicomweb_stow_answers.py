"""The DICOMweb adapter acts on the STOW-RS answer's body (issue #12): each kind of
DICOM JSON answer a real archive gives, against a loopback fake archive."""
from __future__ import annotations

import logging

import pytest

from sensord.daemon.forward.platforms import PermanentError, RetryableError, dicom, open_adapter
from sensord.daemon.forward.platforms.dicomweb import failure_is_retryable
from tests.support.delivery import make_delivery
from tests.support.fake_dicomweb import FakeStow, failed, referenced
from tests.support.loopback import serving


def adapter(url):
    return open_adapter("dicomweb", name="pacs", options={"url": url, "timeout": 5})


def sop_of(item) -> str:
    return dicom.instance_uid(item.image_id)


def test_a_referenced_instance_is_recorded_as_stored_with_its_retrieve_url(tmp_path):
    item = make_delivery(tmp_path)
    fake = FakeStow(body=lambda sop: referenced(sop, url=f"http://pacs/dicom-web/instances/{sop}"))
    with serving(fake) as base:
        receipt = adapter(base).deliver(item)
    assert item.progress["stored"] == {"sop": sop_of(item), "duplicate": False, "warning": None,
                                       "url": f"http://pacs/dicom-web/instances/{sop_of(item)}"}
    assert receipt["alreadyStored"] is False and receipt["retrieveUrl"].endswith(sop_of(item))
    assert fake.stows == 1 and fake.readbacks == 1 and list(fake.instances) == [sop_of(item)]


def test_a_202_with_a_warning_is_stored_logged_and_recorded(tmp_path, caplog):
    item = make_delivery(tmp_path)
    fake = FakeStow(status=202, body=lambda sop: referenced(sop, warning=0xB000))
    with serving(fake) as base, caplog.at_level(logging.WARNING, "sensord.platforms.dicomweb"):
        receipt = adapter(base).deliver(item)
    assert item.progress["stored"]["warning"] == "0xB000" and receipt["warningReason"] == "0xB000"
    assert "warning reason 0xB000" in caplog.text and "HTTP 202" in caplog.text


@pytest.mark.parametrize("status", [202, 409])
@pytest.mark.parametrize("reason", [0xA700, 0xA7FF, 0x0110, 0x0213])
def test_failures_the_archive_may_get_past_are_retried_and_nothing_is_recorded(tmp_path, status, reason):
    item = make_delivery(tmp_path)
    fake = FakeStow(status=status, body=lambda sop: failed(sop, reason), store=False)
    with serving(fake) as base, pytest.raises(RetryableError, match=f"0x{reason:04X}"):
        adapter(base).deliver(item)
    assert "stored" not in item.progress and fake.readbacks == 0


@pytest.mark.parametrize("reason", [0xA900, 0xA9FF, 0xC000, 0xC122, 0x0122, 0x0124, 0xFFFF])
def test_failures_no_retry_can_fix_are_permanent(tmp_path, reason):
    item = make_delivery(tmp_path)
    fake = FakeStow(status=409, body=lambda sop: failed(sop, reason), store=False)
    with serving(fake) as base, pytest.raises(PermanentError, match=f"refused, failure reason 0x{reason:04X}"):
        adapter(base).deliver(item)
    assert "stored" not in item.progress and fake.readbacks == 0


def test_the_mapping_of_failure_reasons():
    assert [failure_is_retryable(c) for c in (0xA700, 0xA710, 0x0110, 0x0213)] == [True] * 4
    assert [failure_is_retryable(c) for c in (0xA900, 0xC000, 0xC122, 0x0122, 0x0111)] == [False] * 5


def test_a_duplicate_failure_is_recorded_as_stored_and_read_back(tmp_path):
    item = make_delivery(tmp_path)
    fake = FakeStow(status=409, body=lambda sop: failed(sop, 0x0111))     # stored by an earlier send
    with serving(fake) as base:
        receipt = adapter(base).deliver(item)
    assert item.progress["stored"]["duplicate"] is True and receipt["alreadyStored"] is True
    assert fake.readbacks == 1


def test_a_409_that_does_not_name_the_instance_is_permanent(tmp_path):
    item = make_delivery(tmp_path)
    fake = FakeStow(status=409, body=lambda sop: failed("1.2.3.4", 0xC000), store=False)
    with serving(fake) as base, pytest.raises(PermanentError, match="HTTP 409"):
        adapter(base).deliver(item)
    assert "stored" not in item.progress


def test_a_200_that_does_not_name_the_instance_leaves_it_to_the_readback(tmp_path):
    item = make_delivery(tmp_path)
    fake = FakeStow(status=200, body=lambda sop: {})
    with serving(fake) as base:
        assert adapter(base).deliver(item)["sopInstanceUid"] == sop_of(item)
    assert "stored" not in item.progress


def test_a_recorded_store_goes_straight_to_the_readback(tmp_path):
    item = make_delivery(tmp_path)
    fake = FakeStow()
    with serving(fake) as base:
        adapter(base).deliver(item)
        again = adapter(base).deliver(item)        # same progress, attempt 1: a restart after the STOW
    assert fake.stows == 1 and fake.readbacks == 2
    assert again["alreadyStored"] is True and len(fake.instances) == 1


def test_a_recorded_store_missing_from_the_archive_is_forgotten_and_sent_again(tmp_path):
    item = make_delivery(tmp_path)
    fake = FakeStow()
    with serving(fake) as base:
        adapter(base).deliver(item)
        fake.instances.clear()                                  # the archive lost it
        with pytest.raises(RetryableError, match="sent again"):
            adapter(base).deliver(item)
        assert "stored" not in item.progress
        adapter(base).deliver(item)
    assert fake.stows == 2 and len(fake.instances) == 1 and "stored" in item.progress
