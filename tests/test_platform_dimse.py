"""The dimse adapter against a real pynetdicom archive on loopback (tests/support/storage_scp.py):
C-STORE in the syntax the archive takes, statuses by their meaning, storage commitment
reported on the same association, failed or never reported; one association per batch."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless

from sensord.daemon.forward.platforms import dimse as dimse_platform
from sensord.daemon.forward.platforms import dimse_steps
from sensord.daemon.forward.delivery import Forwarder, Target
from sensord.daemon.forward.outbox import Outbox
from sensord.daemon.forward.platforms import (
    AwaitingConfirmation,
    PermanentError,
    RetryableError,
    dicom,
    open_adapter,
)
from sensord.daemon.forward.platforms.dimse import OPTIONS
from sensord.filters.pixel_hash import pixel_hash
from tests.support.delivery import make_delivery
from tests.support.loopback import free_port, wait_until
from tests.support.resume import Clock
from tests.support.storage_scp import StorageArchive

SMALL = {"height": 48, "width": 64}


REPORT_WAIT = 20.0      # a report ends the wait when it comes: generous, for a loaded machine
SILENT_WAIT = 0.5       # an archive that stays silent costs the whole wait: short where none comes


@pytest.fixture(autouse=True)
def report_wait(monkeypatch):
    """report_wait(seconds): how long the adapter waits for a report on its own association."""
    def wait(seconds: float) -> None:
        monkeypatch.setattr(dimse_platform, "SAME_ASSOCIATION_WAIT", seconds)
    wait(REPORT_WAIT)
    return wait


def adapter(archive: StorageArchive, **extra):
    return open_adapter("dimse", name="pacs", options=archive.options(**extra), ae_title="SENSORD", timeout=5)


def recorded(item):
    """A Delivery that keeps its recorded steps (as the outbox would) across attempts."""
    steps: dict = {}
    return dataclasses.replace(item, recorder=lambda step, value: steps.__setitem__(step, value)), steps


def test_stores_jpeg_ls_with_its_uid_and_pixels(tmp_path):
    item = make_delivery(tmp_path, **SMALL)
    with StorageArchive() as archive:
        receipt = adapter(archive).deliver(item)
        [(sop, syntax)] = archive.stores
        ds = archive.instances[sop]
    assert sop == dicom.instance_uid(item.image_id) == receipt["sopInstanceUid"] == ds.SOPInstanceUID
    assert syntax == JPEGLSLossless and receipt["transferSyntax"] == "jpeg-ls-lossless"
    assert pixel_hash(np.asarray(ds.pixel_array), alg="MD5") == item.image_info["pixelHash"]
    assert receipt["storeStatus"] == "0x0000" and "transactionUid" not in receipt


def test_each_syntax_in_a_context_of_its_own_in_order(tmp_path):
    with StorageArchive() as archive:
        adapter(archive, transfer_syntaxes=["explicit-vr-little-endian", "jpeg-ls-lossless"]).deliver(
            make_delivery(tmp_path, **SMALL))
        assert archive.proposed[:2] == [(dicom.SOP_CLASS, [ExplicitVRLittleEndian]),
                                        (dicom.SOP_CLASS, [JPEGLSLossless])]
        assert archive.stores[0][1] == ExplicitVRLittleEndian      # the first one accepted


def test_falls_back_when_the_archive_refuses_jpeg_ls(tmp_path):
    item = make_delivery(tmp_path, **SMALL)
    with StorageArchive(accepted=[ExplicitVRLittleEndian]) as archive:
        receipt = adapter(archive).deliver(item)
        assert archive.stores == [(dicom.instance_uid(item.image_id), ExplicitVRLittleEndian)]
    assert receipt["transferSyntax"] == "explicit-vr-little-endian"


def test_no_syntax_in_common_is_permanent(tmp_path):
    with StorageArchive(accepted=[ExplicitVRLittleEndian]) as archive, \
            pytest.raises(PermanentError, match="accepts none of the transfer syntaxes"):
        adapter(archive, transfer_syntaxes=["jpeg-ls-lossless"]).deliver(make_delivery(tmp_path, **SMALL))


@pytest.mark.parametrize("status, error", [(0xA700, RetryableError), (0x0110, RetryableError),
                                           (0xC000, PermanentError), (0xA900, PermanentError),
                                           (0x0122, PermanentError)])
def test_a_failure_status_is_retried_or_not_by_its_meaning(tmp_path, status, error):
    with StorageArchive(store_statuses=[status]) as archive, pytest.raises(error, match=f"0x{status:04X}"):
        adapter(archive).deliver(make_delivery(tmp_path, **SMALL))


def test_a_warning_status_is_stored(tmp_path):
    with StorageArchive(store_statuses=[0xB000]) as archive:
        assert adapter(archive).deliver(make_delivery(tmp_path, **SMALL))["storeStatus"] == "0xB000"


def test_the_forwarder_retries_a_busy_archive_and_dead_letters_a_refusal(tmp_path):
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox", clock=clock)
    outbox.start()
    with StorageArchive(store_statuses=[0xA700, 0xC000]) as archive:
        target = Target(name="pacs", kind="dimse", adapter=adapter(archive), backoff_base=1, backoff_max=1)
        forwarder = Forwarder(outbox, {"pacs": target}, work_dir=tmp_path / "work", clock=clock)
        forwarder.start()
        try:
            first, second = (make_delivery(tmp_path, **SMALL) for _ in range(2))
            for item in (first, second):
                outbox.add([("pacs", "raw")], image_id=item.image_id, image_info=item.image_info,
                           context=item.context, png_path=item.png_path)
            forwarder.tick()                                  # one batch, one association
            assert wait_until(lambda: forwarder.in_flight == 0)
            by_image = {e.image_id: e for e in outbox.list()}
            assert by_image[first.image_id].state == "pending" and "0xA700" in by_image[first.image_id].last_error
            assert by_image[second.image_id].state == "dead" and "0xC000" in by_image[second.image_id].last_error
            clock.now += 5
            forwarder.tick()
            assert wait_until(lambda: forwarder.in_flight == 0)
            assert outbox.get(by_image[first.image_id].id).state == "delivered"
            assert archive.associations == 2
        finally:
            forwarder.close()
            outbox.close()


def test_committed_on_the_same_association(tmp_path):
    item, steps = recorded(make_delivery(tmp_path, **SMALL))
    with StorageArchive(commit=["commit"]) as archive:
        receipt = adapter(archive, storage_commitment=True).deliver(item)
        [(transaction, uids)] = archive.actions
    assert uids == [receipt["sopInstanceUid"]] and receipt["transactionUid"] == transaction
    assert receipt["committedAt"] and steps["committed"]["transaction"] == transaction
    assert steps["commitment"]["transaction"] == transaction and steps["stored"]["status"] == "0x0000"


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("mode", ["commit", "fail"])
def test_the_report_is_answered_before_the_association_is_released(tmp_path, monkeypatch, mode):
    """However late pynetdicom's thread sends our answer to the report, it goes before our
    release request (released first, pynetdicom refused the answer in its reactor thread, which
    died, and the release waited out the whole timeout with the archive unanswered)."""
    taken = dimse_steps.ReportBox.handle

    def slow_to_answer(box, event):
        answer = taken(box, event)
        time.sleep(0.3)                     # the thread that sends the answer goes on late
        return answer

    monkeypatch.setattr(dimse_steps.ReportBox, "handle", slow_to_answer)
    item = make_delivery(tmp_path, **SMALL)
    with StorageArchive(commit=[mode]) as archive:
        try:
            adapter(archive, storage_commitment=True).deliver(item)
        except RetryableError as err:
            assert mode == "fail" and "did not commit" in str(err)
        assert wait_until(lambda: archive.answers, 10)      # (recorded once its send returns)
        assert archive.answers == [0x0000]


def test_a_failure_in_the_report_forgets_the_steps_and_is_due_at_once(tmp_path):
    item, steps = recorded(make_delivery(tmp_path, **SMALL))
    with StorageArchive(commit=["fail"]) as archive:
        with pytest.raises(RetryableError, match="did not commit .*0x0110") as caught:
            adapter(archive, storage_commitment=True).deliver(item)
    assert caught.value.retry_after == 0
    assert steps == {"stored": None, "commitment": None}            # forgotten: sent again from scratch


def test_no_report_on_the_association_means_waiting(tmp_path, report_wait):
    report_wait(SILENT_WAIT)
    item, steps = recorded(make_delivery(tmp_path, **SMALL))
    with StorageArchive(commit=["silent"]) as archive:
        with pytest.raises(AwaitingConfirmation) as caught:
            adapter(archive, storage_commitment=True, commitment_timeout_seconds=42).deliver(item)
        [(transaction, _)] = archive.actions
    assert caught.value.seconds == 42
    assert steps["commitment"]["transaction"] == transaction and "committed" not in steps


def test_stored_before_is_not_stored_again(tmp_path, report_wait):
    """A retry after ``stored`` without a commitment only asks for it."""
    item, steps = recorded(make_delivery(tmp_path, **SMALL))
    with StorageArchive(commit=["silent", "commit"]) as archive:
        target = adapter(archive, storage_commitment=True)
        report_wait(SILENT_WAIT)
        with pytest.raises(AwaitingConfirmation):
            target.deliver(item)
        report_wait(REPORT_WAIT)
        again = dataclasses.replace(item, attempt=2, progress={k: v for k, v in steps.items() if k == "stored"})
        receipt = target.deliver(again)
        assert len(archive.stores) == 1 and len(archive.actions) == 2
    assert receipt["transactionUid"] == archive.actions[1][0]


def test_a_batch_is_one_association_and_one_transaction(tmp_path):
    items = [make_delivery(tmp_path, entry_id=n, **SMALL) for n in range(3)]
    with StorageArchive(commit=["commit"]) as archive:
        outcomes = adapter(archive, storage_commitment=True).deliver_batch(items)
        assert archive.associations == 1 and len(archive.actions) == 1
        assert sorted(archive.actions[0][1]) == sorted(dicom.instance_uid(i.image_id) for i in items)
    assert [o["sopInstanceUid"] for o in outcomes] == [dicom.instance_uid(i.image_id) for i in items]


def test_a_bad_item_does_not_hold_back_the_others(tmp_path):
    good, bad = make_delivery(tmp_path, **SMALL), make_delivery(tmp_path, **SMALL)
    bad = dataclasses.replace(bad, image_info={**bad.image_info, "pixelHash": {"alg": "MD5", "hash": "0" * 32}})
    with StorageArchive() as archive:
        ok, refused = adapter(archive).deliver_batch([good, bad])
        assert len(archive.stores) == 1
    assert ok["sopInstanceUid"] == dicom.instance_uid(good.image_id)
    assert isinstance(refused, PermanentError) and "pixelHash" in str(refused)


def test_a_closed_port_is_retryable(tmp_path):
    options = {"host": "127.0.0.1", "port": free_port(), "called_ae": "NOBODY"}
    target = open_adapter("dimse", name="pacs", options=options, timeout=2)
    with pytest.raises(RetryableError, match="NOBODY@127.0.0.1"):
        target.deliver(make_delivery(tmp_path, **SMALL))


def test_options_have_defaults():
    target = open_adapter("dimse", name="pacs", options={"host": "pacs", "called_ae": "PACS"})
    assert (target.peer.port, target.storage_commitment, target.commitment_timeout, target.syntaxes) == (
        104, False, 300.0, ["jpeg-ls-lossless", "explicit-vr-little-endian"])
    assert target.batch_size > 1 and (target.ae_title, target.timeout) == ("SENSORD", 30.0)
    assert set(OPTIONS) == {"host", "port", "called_ae", "storage_commitment", "commitment_timeout_seconds",
                            "transfer_syntaxes", "institution", "station"}


@pytest.mark.parametrize("options, key", [
    ({"called_ae": "PACS"}, "host"),
    ({"host": "pacs"}, "called_ae"),
    ({"host": "pacs", "called_ae": "A" * 17}, "called_ae"),
    ({"host": "pacs", "called_ae": "PACS", "port": 0}, "port"),
    ({"host": "pacs", "called_ae": "PACS", "port": True}, "port"),
    ({"host": "pacs", "called_ae": "PACS", "storage_commitment": "yes"}, "storage_commitment"),
    ({"host": "pacs", "called_ae": "PACS", "commitment_timeout_seconds": 0}, "commitment_timeout_seconds"),
    ({"host": "pacs", "called_ae": "PACS", "transfer_syntaxes": []}, "transfer_syntaxes"),
    ({"host": "pacs", "called_ae": "PACS", "transfer_syntaxes": ["jpeg-2000"]}, "transfer_syntaxes"),
    ({"host": "pacs", "called_ae": "PACS", "transfer_syntaxes": ["jpeg-ls-lossless"] * 2}, "transfer_syntaxes"),
    ({"host": "pacs", "called_ae": "PACS", "station": "x" * 17}, "station"),
    ({"host": "pacs", "called_ae": "PACS", "colour": "blue"}, "colour"),
])
def test_bad_options_are_refused_by_name(options, key):
    with pytest.raises(ValueError, match=key):
        open_adapter("dimse", name="pacs", options=options)


def test_build_targets_gives_the_station_and_deidentifies_only_when_asked(tmp_path):
    from sensord.daemon.forward.delivery import build_targets
    from sensord.daemon.settings import DicomSettings

    item = make_delivery(tmp_path, **SMALL)
    with StorageArchive() as archive:
        targets = build_targets([{"name": "pacs", "kind": "dimse", **archive.options()},
                                 {"name": "research", "kind": "dimse", **archive.options(), "deidentify": True,
                                  "pseudonym_key": "k" * 32}],
                                dicom=DicomSettings(ae_title="OP2", timeout_seconds=7))
        pacs, research = targets["pacs"], targets["research"]
        assert (pacs.adapter.ae_title, pacs.adapter.timeout, pacs.deid) == ("OP2", 7, None)
        assert research.deid is not None
        copy = research.deid.apply(item)
        receipt = research.adapter.deliver(copy)
        ds = archive.instances[receipt["sopInstanceUid"]]
    assert ds.PatientID == copy.context["patientId"] != item.context["patientId"]
    assert "Doe" not in str(ds.PatientName) and ds.PatientBirthDate == ""
