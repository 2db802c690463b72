"""The storage commitment listener: a real pynetdicom server, and the archive's side played
by a pynetdicom requestor that proposes the SCP role for itself, as Orthanc does."""
from __future__ import annotations

import json
import logging
import sqlite3

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from sensord.daemon.dimse import network
from sensord.daemon.dimse import storage_commitment as sc
from sensord.daemon.forward.commitment import CommitmentListener
from sensord.daemon.forward.outbox import Outbox
from sensord.daemon.forward.platforms import dicom
from tests.support.delivery import make_delivery
from tests.support.loopback import free_port

ARCHIVE = "PACS"


@pytest.fixture
def listening(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    outbox.start()
    listener = CommitmentListener(outbox, host="127.0.0.1", port=free_port(), ae_title="SENSORD",
                                  peers={ARCHIVE: {"pacs"}}, timeout=5)
    listener.start()
    yield outbox, listener
    listener.close()
    outbox.close()


def waiting_entry(outbox, tmp_path, transaction: str, target: str = "pacs") -> tuple[int, str]:
    """An entry stored and asked for, committing, as the dimse adapter leaves it."""
    item = make_delivery(tmp_path, height=48, width=64)
    [entry] = outbox.add([(target, "raw")], image_id=item.image_id, image_info=item.image_info,
                         context=item.context, png_path=item.png_path)
    outbox.lease_due(exclude=set(), limit=1, lease_seconds=600)
    sop = dicom.instance_uid(item.image_id)
    outbox.record_step(entry, "stored", {"sop": sop, "study": "2.25.1", "series": "2.25.2",
                                         "transferSyntax": "jpeg-ls-lossless", "status": "0x0000"})
    outbox.record_step(entry, "commitment", {"transaction": transaction, "asked": "2026-11-30T10:00:00Z"})
    assert outbox.await_confirmation(entry, outbox.clock() + 300)
    return entry, sop


def report(listener, transaction: str, *, committed=(), failed=(), event_type=None, calling=ARCHIVE) -> int:
    """Send an N-EVENT-REPORT to the listener as an archive would; its status."""
    info = Dataset()
    info.TransactionUID = transaction

    def items(uids, reason=None):
        out = []
        for uid in uids:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = dicom.SOP_CLASS, uid
            if reason is not None:
                item.FailureReason = reason
            out.append(item)
        return Sequence(out)

    if committed:
        info.ReferencedSOPSequence = items(committed)
    if failed:
        info.FailedSOPSequence = items(failed, 0x0112)
    peer = network.Peer("127.0.0.1", listener.port, "SENSORD")
    with network.association(peer, ae_title=calling, timeout=5, roles=[(sc.SOP_CLASS, False, True)],
                             contexts=[(sc.SOP_CLASS, [ExplicitVRLittleEndian])]) as assoc:
        status, _ = assoc.send_n_event_report(info, event_type or (2 if failed else 1), sc.SOP_CLASS,
                                              sc.SOP_INSTANCE)
    return int(status.Status)


def on_disk(outbox, entry: int) -> tuple[str, dict]:
    """The entry as another process reads it from the database file."""
    db = sqlite3.connect(f"file:{outbox.root / 'outbox.db'}?mode=ro", uri=True)
    try:
        state, progress = db.execute("SELECT state, progress FROM entries WHERE id = ?", (entry,)).fetchone()
    finally:
        db.close()
    return state, json.loads(progress) if progress else {}


def test_a_committed_instance_is_delivered_before_the_report_is_answered(listening, tmp_path):
    outbox, listener = listening
    entry, sop = waiting_entry(outbox, tmp_path, "2.25.100")
    assert report(listener, "2.25.100", committed=[sop]) == 0x0000
    assert on_disk(outbox, entry)[0] == "delivered"             # on disk by the time the answer came
    receipt = outbox.get(entry).receipt
    assert (receipt["sopInstanceUid"], receipt["transactionUid"], receipt["transferSyntax"]) == (
        sop, "2.25.100", "jpeg-ls-lossless")
    assert receipt["committedAt"]


def test_a_failed_instance_is_sent_again_at_once(listening, tmp_path):
    outbox, listener = listening
    kept, kept_sop = waiting_entry(outbox, tmp_path, "2.25.101")
    lost, lost_sop = waiting_entry(outbox, tmp_path, "2.25.101")
    assert report(listener, "2.25.101", committed=[kept_sop], failed=[lost_sop]) == 0x0000
    assert outbox.get(kept).state == "delivered"
    state, progress = on_disk(outbox, lost)
    entry = outbox.get(lost)
    assert (state, progress, entry.next_attempt <= outbox.clock()) == ("pending", {}, True)
    assert "0x0112" in entry.last_error and "no such instance" in entry.last_error


def test_an_unknown_transaction_is_logged_and_answered(listening, tmp_path, caplog):
    outbox, listener = listening
    entry, sop = waiting_entry(outbox, tmp_path, "2.25.102")
    with caplog.at_level(logging.WARNING, logger="sensord.forward.commitment"):
        assert report(listener, "2.25.999", committed=[sop]) == 0x0000
    assert "2.25.999" in caplog.text and "no outbox entry awaits" in caplog.text
    assert outbox.get(entry).state == "committing"


def test_an_archive_reports_only_for_its_own_targets(listening, tmp_path):
    outbox, listener = listening
    entry, sop = waiting_entry(outbox, tmp_path, "2.25.103", target="other-archive")
    assert report(listener, "2.25.103", committed=[sop]) == 0x0000
    assert outbox.get(entry).state == "committing"


def test_a_caller_that_is_no_configured_archive_is_rejected(listening, tmp_path):
    outbox, listener = listening
    entry, sop = waiting_entry(outbox, tmp_path, "2.25.104")
    with pytest.raises(network.DimseError, match="rejected"):
        report(listener, "2.25.104", committed=[sop], calling="INTRUDER")
    assert outbox.get(entry).state == "committing"


def test_a_report_of_another_event_type_is_refused(listening, tmp_path):
    outbox, listener = listening
    entry, sop = waiting_entry(outbox, tmp_path, "2.25.105")
    assert report(listener, "2.25.105", committed=[sop], event_type=7) == 0x0113
    assert outbox.get(entry).state == "committing"


def test_without_a_dimse_target_nothing_listens(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    listener = CommitmentListener(outbox, host="127.0.0.1", port=free_port(), ae_title="SENSORD", peers={},
                                  timeout=5)
    listener.start()
    assert listener.port == 0
    listener.close()
