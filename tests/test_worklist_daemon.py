"""The worklist through the running daemon (real HTTP server, simulated
sensor) against Orthanc's worklist: a session naming an accession number is
bound, and its image carries the scheduled step into the outbox, into the
DICOM object built from it (dciodvfy-clean, de-identified without a trace
of the step) and into the archive; an unmatched one is shown, logged and
acquires unbound; only operators see the worklist."""
from __future__ import annotations

import logging

import pytest

from sensord.daemon.forward import deidentify
from sensord.daemon.forward.platforms import dicom, dicom_deid
from sensord.daemon.forward.platforms.base import Delivery
from tests.support import images
from tests.support.dicom3tools import dciodvfy, problems, validate  # noqa: F401  (a fixture)
from tests.support.loopback import wait_until
from tests.support.modality import create_session, device_of, expose, subscribe_status
from tests.support.orthanc import ORTHANC_AE, archive, orthanc  # noqa: F401  (fixtures)
from tests.support.server import CLIENT, CLIENT_PASSWORD
from tests.support.worklist import write_item

pytestmark = pytest.mark.process

WORKLIST = "/api/sensord/v1/worklist"
KEY = b"0123456789abcdef0123456789abcdef"


def worklist_settings(port: int) -> dict:
    return {"host": "127.0.0.1", "port": port, "called_ae": ORTHANC_AE, "refresh_seconds": 5}


def worklist_of(srv) -> dict:
    response = srv.http.get(srv.url(WORKLIST))
    assert response.status_code == 200, response.text
    return response.json()


def session_entry(body: dict, sid: str) -> dict:
    return next(s for s in body["sessions"] if s["sessionId"] == sid)


def test_a_bound_session_s_image_carries_the_scheduled_step(serve, archive, tmp_path, dciodvfy):  # noqa: F811
    step = write_item(archive.worklists, accession="ACC-77", step_id="SPS-77", patient_id="PAT-77",
                      patient_name="Doe^Jane", procedure_id="RP-77", procedure="Bitewings right",
                      step="Bitewing 46-47")
    write_item(archive.worklists, accession="ACC-78", step_id="SPS-78", patient_id="PAT-78",
               patient_name="Roe^Rick")
    pacs = {"name": "pacs", "kind": "dicomweb", "url": archive.dicomweb, "username": archive.username,
            "password": archive.password}
    srv = serve(worklist=worklist_settings(archive.dicom_port), dicom={"timeout_seconds": 5},
                forward={"targets": [pacs], "rules": [{"target": "pacs"}]})
    assert wait_until(lambda: len(worklist_of(srv)["items"]) == 2, 10), worklist_of(srv)
    dev = device_of(srv, "Simradix Select")["deviceId"]
    context = {"accessionNumber": "ACC-77", "PatientID": "typed-by-hand", "worklistBound": True, "tooth": "46"}
    sid = create_session(srv, dev, context=context)["sessionId"]
    body = worklist_of(srv)
    assert body["configured"] and body["error"] is None and body["refreshedAt"]
    assert body["peer"] == f"{ORTHANC_AE}@127.0.0.1:{archive.dicom_port}"
    assert session_entry(body, sid) == {"sessionId": sid, "bound": True, "accessionNumber": "ACC-77",
                                        "scheduledProcedureStepId": "SPS-77", "reason": None}

    _, info = expose(srv, sid, dev, subscribe_status(srv, sid))
    [entry] = [e for e in srv.daemon.outbox.list() if e.image_id == info["id"]]
    carried = {"patientId": "PAT-77", "patientName": "Doe^Jane", "birthDate": "1980-04-02", "sex": "F",
               "studyInstanceUid": step.StudyInstanceUID, "accessionNumber": "ACC-77",
               "requestedProcedureId": "RP-77", "requestedProcedureDescription": "Bitewings right",
               "scheduledProcedureStepId": "SPS-77", "scheduledProcedureStepDescription": "Bitewing 46-47",
               "referringPhysician": "Smith^Ann", "worklistBound": True, "tooth": "46"}
    assert entry.context == carried                    # the hand-typed id and the client's claim are gone

    # The DICOM object built from the outbox's record, as the DICOM adapters build it.
    pixels = images.decode(entry.file.read_bytes())
    ds = dicom.build_dataset(pixels, entry.image_info, entry.context, image_id=entry.image_id)
    assert (ds.PatientID, str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex) == \
        ("PAT-77", "Doe^Jane", "19800402", "F")
    assert ds.StudyInstanceUID == step.StudyInstanceUID and ds.AccessionNumber == "ACC-77"
    [request] = ds.RequestAttributesSequence
    assert (request.RequestedProcedureID, request.ScheduledProcedureStepID) == ("RP-77", "SPS-77")
    assert request.RequestedProcedureDescription == "Bitewings right"
    assert request.ScheduledProcedureStepDescription == "Bitewing 46-47"
    path = tmp_path / "bound.dcm"
    path.write_bytes(dicom.to_bytes(ds))
    output = validate(dciodvfy, path)
    assert problems(output) == [], output

    # A de-identified copy keeps nothing of the step that leads back to the patient.
    item = Delivery(entry_id=entry.id, target="research", image_id=entry.image_id, png_path=entry.file,
                    image_info=entry.image_info, context=entry.context)
    copy = deidentify.Deidentifier(KEY, "shift").apply(item)
    assert not {"accessionNumber", "requestedProcedureId", "scheduledProcedureStepId"} & set(copy.context)
    anonymous = dicom.build_dataset(pixels, copy.image_info, copy.context, image_id=entry.image_id)
    dicom_deid.apply_profile(anonymous, dates="shift", pseudonym=copy.context.get("patientId"))
    data = dicom.to_bytes(anonymous)
    for secret in ("ACC-77", "RP-77", "SPS-77", "PAT-77", "Doe", step.StudyInstanceUID, "Smith"):
        assert secret.encode() not in data, secret
    assert "RequestAttributesSequence" not in anonymous
    path.write_bytes(data)
    output = validate(dciodvfy, path)
    assert problems(output) == [], output

    # And the archive has it as the worklist said.
    assert wait_until(lambda: srv.daemon.outbox.get(entry.id).state == "delivered", 20), \
        srv.daemon.outbox.get(entry.id)
    [stored] = [archive.instance_file(i) for i in archive.instances()]
    assert (stored.PatientID, stored.AccessionNumber, stored.StudyInstanceUID) == \
        ("PAT-77", "ACC-77", step.StudyInstanceUID)
    assert stored.RequestAttributesSequence[0].ScheduledProcedureStepID == "SPS-77"


def test_an_unmatched_session_is_shown_logged_and_acquires(serve, archive, caplog):  # noqa: F811
    write_item(archive.worklists, accession="ACC-1", step_id="SPS-1")
    srv = serve(worklist=worklist_settings(archive.dicom_port), dicom={"timeout_seconds": 5})
    assert wait_until(lambda: worklist_of(srv)["items"], 10)
    dev = device_of(srv, "Simradix Select")["deviceId"]
    with caplog.at_level(logging.WARNING, logger="sensord.worklist"):
        sid = create_session(srv, dev, context={"accessionNumber": "ACC-404"})["sessionId"]
        entry = session_entry(worklist_of(srv), sid)
        _, info = expose(srv, sid, dev, subscribe_status(srv, sid))
    assert entry["bound"] is False and entry["accessionNumber"] == "ACC-404"
    assert entry["reason"] == "no worklist item has accessionNumber 'ACC-404'"
    warnings = [r.getMessage() for r in caplog.records if sid in r.getMessage()]
    assert len(warnings) == 1 and "ACC-404" in warnings[0]
    assert info["id"]                                      # acquired all the same
    status = srv.http.get(srv.url("/api/sensord/v1/status")).json()
    assert status["worklist"]["count"] == 1 and status["worklist"]["error"] is None
    shown = next(s for s in status["sessions"] if s["sessionId"] == sid)
    assert shown["worklist"]["bound"] is False and "ACC-404" in shown["worklist"]["reason"]
    client = srv.as_user(CLIENT, CLIENT_PASSWORD)
    refused = client.http.get(client.url(WORKLIST))
    assert refused.status_code == 403 and "operator role" in refused.json()["message"]


def test_a_worklist_that_answers_later_binds_the_waiting_session(serve, archive):  # noqa: F811
    """Orthanc's worklist is empty at first; the item is written while the session waits."""
    srv = serve(worklist=worklist_settings(archive.dicom_port), dicom={"timeout_seconds": 5})
    assert wait_until(lambda: worklist_of(srv)["refreshedAt"], 10)
    dev = device_of(srv, "Simradix Select")["deviceId"]
    sid = create_session(srv, dev, context={"scheduledProcedureStepId": "SPS-LATE"})["sessionId"]
    assert session_entry(worklist_of(srv), sid)["bound"] is False
    write_item(archive.worklists, accession="ACC-LATE", step_id="SPS-LATE", patient_id="PAT-LATE")
    assert srv.daemon.worklist.refresh()                   # what the scheduler does every refresh_seconds
    entry = session_entry(worklist_of(srv), sid)
    assert entry["bound"] is True and entry["accessionNumber"] == "ACC-LATE"
    context = srv.daemon.worklist_bindings.context_for(sid, {"scheduledProcedureStepId": "SPS-LATE"})
    assert context["patientId"] == "PAT-LATE" and context["worklistBound"] is True
