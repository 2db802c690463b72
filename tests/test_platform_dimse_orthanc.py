"""The dimse target against a real Orthanc (tests/support/orthanc.py): JPEG-LS stored with
the same pixels and SOP Instance UID, a fallback when the archive refuses JPEG-LS, and
storage commitment reported to our listener on an association of Orthanc's own."""
from __future__ import annotations

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless

from sensord.daemon.forward.commitment import CommitmentListener, listener_peers
from sensord.daemon.forward.delivery import Forwarder, build_targets
from sensord.daemon.forward.outbox import Outbox
from sensord.daemon.forward.platforms import dicom, open_adapter
from sensord.daemon.settings import DicomSettings
from sensord.filters.pixel_hash import pixel_hash
from tests.support.delivery import make_delivery
from tests.support.loopback import wait_until
from tests.support.orthanc import MODALITY_AE, ORTHANC_AE, archive, launch, orthanc, stop  # noqa: F401

pytestmark = pytest.mark.process

REPORT_WAIT = 30     # Orthanc runs storage commitment as a job: its report comes within this


def target(server, **extra) -> dict:
    return {"name": "pacs", "kind": "dimse", "host": "127.0.0.1", "port": server.dicom_port,
            "called_ae": ORTHANC_AE, **extra}


def adapter(server, **extra):
    options = {k: v for k, v in target(server, **extra).items() if k not in ("name", "kind")}
    return open_adapter("dimse", name="pacs", options=options, ae_title=MODALITY_AE, timeout=10)


def archived(server) -> dict:
    """SOP Instance UID -> the file as Orthanc keeps it (its REST /instances/{id}/file)."""
    files = [server.instance_file(i) for i in server.instances()]
    return {ds.SOPInstanceUID: ds for ds in files}


def test_jpeg_ls_is_archived_with_the_same_pixels_and_uid(tmp_path, archive):
    item = make_delivery(tmp_path, height=48, width=64)
    receipt = adapter(archive).deliver(item)
    [ds] = archived(archive).values()
    assert ds.SOPInstanceUID == dicom.instance_uid(item.image_id) == receipt["sopInstanceUid"]
    assert ds.file_meta.TransferSyntaxUID == JPEGLSLossless and receipt["transferSyntax"] == "jpeg-ls-lossless"
    assert pixel_hash(ds.pixel_array, alg="MD5") == item.image_info["pixelHash"]


def test_an_archive_that_refuses_jpeg_ls_gets_explicit_vr(tmp_path):
    (tmp_path / "orthanc").mkdir()
    server = launch(tmp_path / "orthanc", AcceptedTransferSyntaxes=[ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    try:
        item = make_delivery(tmp_path, height=48, width=64)
        receipt = adapter(server).deliver(item)
        [ds] = archived(server).values()
    finally:
        stop(server)
    assert receipt["transferSyntax"] == "explicit-vr-little-endian"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPInstanceUID == dicom.instance_uid(item.image_id)
    assert pixel_hash(ds.pixel_array, alg="MD5") == item.image_info["pixelHash"]


def test_committed_through_the_listener_is_delivered(tmp_path, archive):
    targets = build_targets([target(archive, storage_commitment=True, commitment_timeout_seconds=REPORT_WAIT)],
                            dicom=DicomSettings(ae_title=MODALITY_AE, timeout_seconds=10))
    outbox = Outbox(tmp_path / "outbox")
    outbox.start()
    listener = CommitmentListener(outbox, host="127.0.0.1", port=archive.modality_port, ae_title=MODALITY_AE,
                                  peers=listener_peers(targets), timeout=10)
    listener.start()
    forwarder = Forwarder(outbox, targets, work_dir=tmp_path / "work")
    forwarder.start()
    items = [make_delivery(tmp_path, height=48, width=64) for _ in range(2)]
    try:
        for item in items:
            outbox.add([("pacs", "raw")], image_id=item.image_id, image_info=item.image_info, context=item.context,
                       png_path=item.png_path)
        forwarder.tick()
        assert wait_until(lambda: outbox.counts() == {"delivered": 2}, REPORT_WAIT), \
            [(e.state, e.last_error) for e in outbox.list()]
        receipts = [e.receipt for e in outbox.list()]
        assert wait_until(lambda: forwarder.in_flight == 0, 10)
    finally:
        forwarder.close()
        listener.close()
        outbox.close()
    [transaction] = {r["transactionUid"] for r in receipts}             # one transaction for the batch
    assert transaction.startswith("2.25.") and all(r["committedAt"] for r in receipts)
    assert set(archived(archive)) == {dicom.instance_uid(i.image_id) for i in items}
