"""A REAL kill -9 of `sensord serve` with an MPPS message on its way, then a
restart on the same state folder: the step is reported exactly once.

The whole chain is real: Orthanc's worklist binds the session (accession
ACC-90), Orthanc's DICOMweb archives the image, a pynetdicom MPPS SCP in this
test process takes the MPPS messages.

- queued, not sent: the SCP is down while the image is taken, so the
  N-CREATE waits in ``mpps.db``; the daemon is killed, the SCP comes up,
  the daemon restarts: one N-CREATE, then (the session vanished with the
  kill) the N-SET COMPLETED naming the archived instance.
- sent, answer lost: the SCP takes the N-CREATE (the step exists) and holds
  its answer while the daemon is killed; after the restart the create is
  sent again, answered 0x0111, and counts as created: the SCP still has one
  step, completed once.
"""
from __future__ import annotations

import json
import signal
import sqlite3

import pytest

from sensord.daemon.forward import mpps_messages as messages
from sensord.daemon.forward.platforms import dicom
from tests.support.daemon_process import daemon_process
from tests.support.loopback import wait_until
from tests.support.modality import API, create_session, expose, subscribe_status
from tests.support.mpps_scp import MppsScp
from tests.support.orthanc import ORTHANC_AE, archive, orthanc  # noqa: F401  (fixtures)
from tests.support.worklist import write_item

pytestmark = pytest.mark.process

ADMIN = "/api/sensord/v1"


def config(archive, scp: MppsScp) -> str:  # noqa: F811
    return f"""
[drivers]
urls = ["sim://?models=select0&time_scale=0.01&seed=5"]
[dicom]
timeout_seconds = 5
[worklist]
host = "127.0.0.1"
port = {archive.dicom_port}
called_ae = "{ORTHANC_AE}"
refresh_seconds = 5
[mpps]
host = "127.0.0.1"
port = {scp.port}
called_ae = "{scp.ae_title}"
[[forward.targets]]
name = "pacs"
kind = "dicomweb"
url = "{archive.dicomweb}"
username = "{archive.username}"
password = "{archive.password}"
[[forward.rules]]
target = "pacs"
"""


def mpps_rows(state) -> list[dict]:
    """The MPPS queue as the killed daemon left it on disk."""
    db = sqlite3.connect(f"file:{state / 'outbox' / 'mpps.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT kind, state, dataset FROM messages ORDER BY id")]
    finally:
        db.close()


def mpps_of(srv) -> dict:
    return srv.http.get(srv.url(ADMIN + "/outbox")).json()["mpps"]


@pytest.mark.parametrize("answer_lost", [False, True], ids=["queued-not-sent", "sent-answer-lost"])
def test_kill_9_then_restart_reports_the_step_exactly_once(tmp_path, archive, answer_lost):  # noqa: F811
    item = write_item(archive.worklists, accession="ACC-90", step_id="SPS-90", patient_id="PAT-90",
                      procedure="Periapical 11", step="PA upper incisors")
    scp = MppsScp()
    if answer_lost:
        scp.start()
        arrived, release = scp.hold_next("create")
    try:
        with daemon_process(tmp_path, config(archive, scp)) as srv:
            assert wait_until(lambda: srv.http.get(srv.url(ADMIN + "/worklist")).json()["items"], 15), srv.log()
            device = srv.http.get(srv.url(API + "/devices")).json()[0]["deviceId"]
            sid = create_session(srv, device, context={"accessionNumber": "ACC-90"})["sessionId"]
            _, info = expose(srv, sid, device, subscribe_status(srv, sid))
            if answer_lost:
                assert arrived.wait(20), srv.log()             # the SCP has the create, its answer is held
            else:
                assert wait_until(lambda: mpps_of(srv)["messages"][0]["attempts"] >= 1, 20), srv.log()
            assert wait_until(lambda: len(archive.instances()) == 1, 30), srv.log()
            srv.signal(signal.SIGKILL)
            assert srv.wait(timeout=10) == -signal.SIGKILL

            [row] = mpps_rows(srv.state)                         # durable before anything was sent
            assert (row["kind"], row["state"]) == ("create", "pending")
            step = json.loads(row["dataset"])["00400270"]["Value"][0]
            assert step["00080050"]["Value"] == ["ACC-90"] and step["0020000D"]["Value"] == [item.StudyInstanceUID]
            if answer_lost:
                release.set()
            else:
                scp.start()

            srv.start()                                          # the same state folder
            assert wait_until(lambda: mpps_of(srv)["counts"] == {"delivered": 2}, 30), (mpps_of(srv), srv.log())
            listed = mpps_of(srv)["messages"]
            assert "ended with the last stop; N-SET COMPLETED queued" in srv.log()
    finally:
        scp.stop()

    uid = messages.mpps_uid(sid)
    creates, sets = scp.of("create", uid), scp.of("set", uid)
    if answer_lost:
        assert [c.status for c in creates] == [0x0000, 0x0111]   # the resend found the step
        assert listed[1]["dimseStatus"] == "0x0111" and listed[1]["state"] == "delivered"
    else:
        assert [c.status for c in creates] == [0x0000]           # sent exactly once
    assert len(scp.requests) == len(creates) + 1 and list(scp.steps) == [uid]
    [n_set] = sets
    assert n_set.status == 0 and n_set.dataset.PerformedProcedureStepStatus == "COMPLETED"
    [stored] = [archive.instance_file(i) for i in archive.instances()]
    [series] = n_set.dataset.PerformedSeriesSequence
    [ref] = series.ReferencedImageSequence
    assert (series.SeriesInstanceUID, ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == \
        (stored.SeriesInstanceUID, stored.SOPClassUID, stored.SOPInstanceUID)
    scheduled = creates[0].dataset.ScheduledStepAttributesSequence[0]
    assert stored.StudyInstanceUID == item.StudyInstanceUID == scheduled.StudyInstanceUID
    assert scp.steps[uid].PerformedProcedureStepStatus == "COMPLETED"
    assert stored.SOPInstanceUID == dicom.instance_uid(info["id"])
