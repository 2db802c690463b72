"""The clinic's DICOM world in one run: worklist to committed archive.

A real Orthanc is the clinic's worklist and archive (C-STORE taken only from
SENSORD, storage commitment reported on an association of its own to
sensord's listener); a pynetdicom SCP stands in for the RIS's MPPS (Orthanc
has none). The daemon runs its real HTTP server with the simulated sensor.
A session naming the scheduled accession number takes one image, which is
stored as JPEG-LS and counted delivered only once Orthanc commits to it; the
procedure step is reported IN PROGRESS on the first image and COMPLETED,
naming that instance, when the session ends.
"""
from __future__ import annotations

import pytest
from pydicom.uid import JPEGLSLossless

from sensord.daemon.forward.platforms import dicom
from sensord.filters.pixel_hash import pixel_hash
from tests.support.loopback import wait_until
from tests.support.modality import API, create_session, device_of, expose, subscribe_status
from tests.support.mpps_scp import MppsScp
from tests.support.orthanc import MODALITY_AE, ORTHANC_AE, archive, orthanc  # noqa: F401  (fixtures)
from tests.support.worklist import write_item

pytestmark = pytest.mark.process

COMMIT_WAIT = 40        # Orthanc commits in a job of its own; its report comes within this


SOP_MPPS = "1.2.840.10008.3.1.2.3.3"


def test_from_worklist_to_committed_archive(serve, archive):  # noqa: F811
    step = write_item(archive.worklists, accession="ACC-900", step_id="SPS-900", patient_id="PAT-900",
                      patient_name="Doe^Jane", procedure_id="RP-900", procedure="Periapical 36",
                      step="PA lower left molar")
    pacs = {"name": "pacs", "kind": "dimse", "host": "127.0.0.1", "port": archive.dicom_port,
            "called_ae": ORTHANC_AE, "storage_commitment": True, "commitment_timeout_seconds": COMMIT_WAIT,
            "transfer_syntaxes": ["jpeg-ls-lossless", "explicit-vr-little-endian"]}
    with MppsScp() as ris:
        srv = serve(dicom={"ae_title": MODALITY_AE, "listen_host": "127.0.0.1",
                           "listen_port": archive.modality_port, "timeout_seconds": 10},
                    worklist={"host": "127.0.0.1", "port": archive.dicom_port, "called_ae": ORTHANC_AE,
                              "refresh_seconds": 5},
                    mpps=ris.config,
                    forward={"targets": [pacs], "rules": [{"target": "pacs"}]})
        worklist = srv.url("/api/sensord/v1/worklist")
        assert wait_until(lambda: srv.http.get(worklist).json()["items"], 15), srv.http.get(worklist).json()

        device = device_of(srv, "Simradix Select")["deviceId"]
        sid = create_session(srv, device, context={"accessionNumber": "ACC-900", "tooth": "36"})["sessionId"]
        stream = subscribe_status(srv, sid)
        try:
            _, info = expose(srv, sid, device, stream)
        finally:
            stream.close()

        # Delivered only once committed: the entry passes through "committing".
        outbox = srv.url("/api/sensord/v1/outbox")
        assert wait_until(lambda: srv.http.get(outbox).json()["counts"].get("delivered") == 1, COMMIT_WAIT), \
            srv.http.get(outbox).json()
        [entry] = srv.http.get(outbox, params={"state": "delivered"}).json()["entries"]
        assert entry["imageId"] == info["id"]
        assert entry["receipt"]["transactionUid"] and entry["receipt"]["committedAt"]
        assert entry["receipt"]["transferSyntax"] == "jpeg-ls-lossless"

        # The archive holds one instance: our UID, the worklist's patient and study, the same pixels.
        [held] = [archive.instance_file(i) for i in archive.instances()]
        assert held.SOPInstanceUID == dicom.instance_uid(info["id"])
        assert held.file_meta.TransferSyntaxUID == JPEGLSLossless
        assert (held.PatientID, str(held.PatientName), held.AccessionNumber) == ("PAT-900", "Doe^Jane", "ACC-900")
        assert held.StudyInstanceUID == step.StudyInstanceUID
        [request] = held.RequestAttributesSequence
        assert (request.RequestedProcedureID, request.ScheduledProcedureStepID) == ("RP-900", "SPS-900")
        assert pixel_hash(held.pixel_array, alg=info["pixelHash"]["alg"]) == info["pixelHash"]

        # MPPS: IN PROGRESS with the scheduled step, then COMPLETED naming the instance.
        assert ris.wait_for(1)
        [create] = ris.of("create")
        assert create.dataset.PerformedProcedureStepStatus == "IN PROGRESS"
        [scheduled] = create.dataset.ScheduledStepAttributesSequence
        assert (scheduled.ScheduledProcedureStepID, scheduled.AccessionNumber) == ("SPS-900", "ACC-900")
        # ... and the archived instance names that very step.
        [performed] = held.ReferencedPerformedProcedureStepSequence
        assert (performed.ReferencedSOPClassUID, performed.ReferencedSOPInstanceUID) == (SOP_MPPS, create.uid)
        assert held.PerformedProcedureStepID == create.dataset.PerformedProcedureStepID
        assert srv.http.delete(srv.url(f"{API}/acquisition/{sid}")).status_code in (200, 204)
        assert ris.wait_for(2)
        [done] = ris.of("set")
        assert done.uid == create.uid and done.dataset.PerformedProcedureStepStatus == "COMPLETED"
        referenced = {image.ReferencedSOPInstanceUID for series in done.dataset.PerformedSeriesSequence
                      for image in series.ReferencedImageSequence}
        assert referenced == {held.SOPInstanceUID}
