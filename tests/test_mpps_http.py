"""MPPS through the running daemon: real exposures on the simulated sensor, a
DICOMweb archive the images go to, a real pynetdicom MPPS SCP, the HTTP API
and the `sensord outbox` command.

The worklist binding is another room's work; here the context hook it
installs is stood in for by one that binds a session naming accession
ACC-7, exactly as the contract says a bound context looks.
"""
from __future__ import annotations

import io

import pydicom
import pytest

from sensord.daemon.forward import mpps_messages as messages
from sensord.daemon.host import cli
from tests.support.fake_dicomweb import FakeStow
from tests.support.loopback import serving, wait_until
from tests.support.modality import API, ADMIN, create_session
from tests.support.mpps_daemon import ITEM, SIM, acquire, mpps_of, prepare
from tests.support.mpps_scp import MppsScp
from tests.support.server import PASSWORD, USER


@pytest.fixture
def scp():
    with MppsScp() as server:
        yield server


def test_create_on_the_first_image_completed_on_delete_with_what_the_archive_got(serve, scp):
    archive = FakeStow()
    with serving(archive) as base:
        srv = serve(prepare=prepare, mpps=scp.config, drivers={"urls": [SIM]}, forward={
            "targets": [{"name": "pacs", "kind": "dicomweb", "url": base, "timeout": 10}],
            "rules": [{"target": "pacs"}, {"target": "pacs", "filter": "unmap"}]})
        device = srv.http.get(srv.url(API + "/devices")).json()[0]["deviceId"]
        sid = create_session(srv, device, context={"accessionNumber": "ACC-7", "tooth": "36"})["sessionId"]
        acquire(srv, sid, device, 1)
        assert scp.wait_for(1), mpps_of(srv)
        [create] = scp.requests
        assert create.kind == "create" and create.uid == messages.mpps_uid(sid) and create.status == 0
        acquire(srv, sid, device, 1)
        assert wait_until(lambda: len(archive.instances) == 4, 60)      # 2 images, raw and unmap
        assert len(scp.requests) == 1                                   # the second image made no message
        assert srv.http.delete(srv.url(f"{API}/acquisition/{sid}")).status_code == 200
        assert scp.wait_for(2), mpps_of(srv)

    stored = [pydicom.dcmread(io.BytesIO(part)) for part in archive.instances.values()]
    ds = create.dataset
    [step] = ds.ScheduledStepAttributesSequence
    assert {s.StudyInstanceUID for s in stored} == {step.StudyInstanceUID} == {ITEM["studyInstanceUid"]}
    assert (step.AccessionNumber, step.RequestedProcedureID, step.ScheduledProcedureStepID) == \
        ("ACC-7", "RP-7", "SPS-7")
    assert {(s.PatientID, str(s.PatientName)) for s in stored} == {(ds.PatientID, str(ds.PatientName))}
    assert ds.PerformedStationAETitle == "SENSORD" and ds.Modality == "IO"
    assert {s.StudyID for s in stored} == {ds.StudyID}
    # Every image of the step (raw and unmap) names it, with the ID the N-CREATE gave it.
    assert {(s.ReferencedPerformedProcedureStepSequence[0].ReferencedSOPInstanceUID, s.PerformedProcedureStepID)
            for s in stored} == {(create.uid, ds.PerformedProcedureStepID)}

    n_set = scp.requests[1]
    assert n_set.kind == "set" and n_set.uid == create.uid and n_set.status == 0
    assert n_set.dataset.PerformedProcedureStepStatus == "COMPLETED"
    referenced = {(series.SeriesInstanceUID, ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID)
                  for series in n_set.dataset.PerformedSeriesSequence for ref in series.ReferencedImageSequence}
    # Exactly the instances the archive holds, in their series: two series (raw, unmap) of two.
    assert referenced == {(s.SeriesInstanceUID, s.SOPClassUID, s.SOPInstanceUID) for s in stored}
    assert len(n_set.dataset.PerformedSeriesSequence) == 2
    assert scp.steps[create.uid].PerformedProcedureStepStatus == "COMPLETED"

    # The SCP has answered; the daemon records the outcome a moment later.
    assert wait_until(lambda: mpps_of(srv)["counts"] == {"delivered": 2}, 10), mpps_of(srv)
    listed = mpps_of(srv)
    assert [(m["kind"], m["ppsStatus"], m["state"]) for m in listed["messages"]] == [
        ("set", "COMPLETED", "delivered"), ("create", "IN PROGRESS", "delivered")]
    assert srv.http.get(srv.url(ADMIN + "/status")).json()["mpps"] == {"counts": {"delivered": 2}}


def test_unbound_and_never_imaged_sessions_send_nothing(serve, scp):
    srv = serve(prepare=prepare, mpps=scp.config, drivers={"urls": [SIM]})
    device = srv.http.get(srv.url(API + "/devices")).json()[0]["deviceId"]
    unbound = create_session(srv, device, context={"accessionNumber": "NOT-SCHEDULED",
                                                   "worklistBound": True})["sessionId"]
    acquire(srv, unbound, device, 1)
    assert srv.http.delete(srv.url(f"{API}/acquisition/{unbound}")).status_code == 200
    idle = create_session(srv, device, context={"accessionNumber": "ACC-7"})["sessionId"]
    assert srv.http.delete(srv.url(f"{API}/acquisition/{idle}")).status_code == 200
    # Queueing happens in the image and delete handlers themselves: nothing queued is nothing sent.
    assert mpps_of(srv) == {"configured": True, "counts": {}, "messages": []}
    assert scp.requests == []


def test_a_dead_create_shows_in_the_api_and_on_the_command_line(serve, scp, monkeypatch, capsys):
    scp.answer_next("create", 0x0120, ErrorComment="Patient ID is required")
    srv = serve(prepare=prepare, mpps=scp.config, drivers={"urls": [SIM]})
    device = srv.http.get(srv.url(API + "/devices")).json()[0]["deviceId"]
    sid = create_session(srv, device, context={"accessionNumber": "ACC-7"})["sessionId"]
    acquire(srv, sid, device, 1)
    assert wait_until(lambda: mpps_of(srv)["counts"] == {"dead": 1}, 20), mpps_of(srv)
    assert srv.http.delete(srv.url(f"{API}/acquisition/{sid}")).status_code == 200
    listed = mpps_of(srv)
    assert listed["counts"] == {"dead": 1, "pending": 1, "held": 1}
    held, dead = listed["messages"]
    assert (held["kind"], held["ppsStatus"], held["held"]) == ("set", "DISCONTINUED", True)
    assert dead["dimseStatus"] == "0x0120" and "missing attribute" in dead["lastError"]
    assert srv.http.get(srv.url(ADMIN + "/outbox?state=dead")).json()["mpps"]["messages"] == [dead]

    monkeypatch.setenv("SENSORD_USER", USER)
    monkeypatch.setenv("SENSORD_PASSWORD", PASSWORD)
    assert cli.main(["outbox", "list", "--url", srv.base]) == 0
    out = capsys.readouterr().out
    assert "MPPS  dead: 1  held: 1  pending: 1" in out
    assert f"{dead['id']:>6}  dead      N-CREATE" in out and "0x0120" in out and "Patient ID is required" in out
    assert f"{held['id']:>6}  held      N-SET     DISCONTINUED" in out
    assert len(scp.requests) == 1                                  # the held set never went
