"""The MPPS service against a real pynetdicom MPPS SCP on loopback: the
queue, the order per session, what each answer does, and a restart.

The service is driven by the events it handles in the daemon (ImageQueued,
a deleted session), with a clock the test moves, so retries need no waiting.
"""
from __future__ import annotations

import logging
import types
import uuid
from datetime import datetime

import pytest
from pydicom.tag import Tag

from sensord.daemon.dimse.network import Peer
from sensord.daemon.forward import mpps_messages as messages
from sensord.daemon.forward.events import ImageQueued
from sensord.daemon.forward.mpps import Mpps, sent_instances
from sensord.daemon.forward.platforms import dicom
from tests.support.mpps_scp import MppsScp
from tests.support.resume import Clock

STUDY = "1.2.826.0.1.3680043.8.498.77"
BOUND = {"worklistBound": True, "patientId": "P-1", "patientName": "Doe^Jane", "birthDate": "1980-02-03",
         "sex": "F", "studyInstanceUid": STUDY, "accessionNumber": "ACC-7", "requestedProcedureId": "RP-7",
         "requestedProcedureDescription": "Bitewings", "scheduledProcedureStepId": "SPS-7",
         "scheduledProcedureStepDescription": "Bitewing pair", "referringPhysician": ""}
TARGETS = {"pacs": types.SimpleNamespace(kind="dicomweb", deid=None),
           "dimse": types.SimpleNamespace(kind="dimse", deid=None),
           "research": types.SimpleNamespace(kind="dicomweb", deid=object()),    # a de-identified copy
           "dm": types.SimpleNamespace(kind="datamint", deid=None)}
INFO = {"createdOn": "2024-05-01T08:15:30Z", "sensorInfo": {"serialNumber": "SN-1"}}


@pytest.fixture
def scp():
    server = MppsScp()
    yield server
    server.stop()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def open_mpps(tmp_path, scp, clock):
    """open_mpps() -> a started Mpps on tmp_path/outbox (closed at the end), as the daemon builds it."""
    opened = []

    def make():
        service = Mpps(tmp_path / "outbox", Peer("127.0.0.1", scp.port, scp.ae_title), ae_title="SENSORD",
                       timeout=5, targets=TARGETS, clock=clock)
        service.sender.backoff_base, service.sender.backoff_max = 1.0, 4.0
        service.start()
        opened.append(service)
        return service
    yield make
    for service in opened:
        service.close()


def image(session: str, pairs=(("pacs", "raw"),), context=None) -> ImageQueued:
    return ImageQueued(session_id=session, image_id=str(uuid.uuid4()), image_info=INFO,
                       context=BOUND if context is None else context, pairs=tuple(pairs))


def deleted(session: str):
    return types.SimpleNamespace(session=types.SimpleNamespace(id=session, deleted=True))


def by_kind(service) -> dict:
    return {(m["sessionId"], m["kind"]): m for m in service.messages()}


def run(service, clock, rounds: int = 1) -> None:
    for _ in range(rounds):
        service.tick()
        clock.now += 10            # past any backoff of these tests


def test_sent_instances_are_the_dicom_copies_with_their_archive_uids():
    event = image("s", pairs=(("pacs", "raw"), ("pacs", "unmap"), ("dimse", "raw"), ("research", "raw"),
                              ("dm", "raw")))
    found = sent_instances(event, TARGETS)
    unmap_id = str(uuid.uuid5(uuid.UUID(event.image_id), "unmap"))
    assert found == [
        messages.Instance(dicom.series_uid(STUDY, INFO), dicom.SOP_CLASS, dicom.instance_uid(event.image_id)),
        messages.Instance(dicom.series_uid(STUDY, {**INFO, "filter": "unmap"}), dicom.SOP_CLASS,
                          dicom.instance_uid(unmap_id))]
    # (the raw image once though sent twice, the unmap copy; neither Datamint nor a de-identified copy)


def test_create_on_the_first_image_completed_on_delete(open_mpps, scp, clock):
    scp.start()
    service = open_mpps()
    first, second = image("s1"), image("s1", pairs=(("pacs", "raw"), ("pacs", "unmap")))
    service.on_image_queued(first)
    run(service, clock)
    [create] = scp.of("create")
    assert create.uid == messages.mpps_uid("s1") and create.status == 0
    assert create.dataset.PerformedProcedureStepStatus == "IN PROGRESS"
    service.on_image_queued(second)
    service.on_session_changed(types.SimpleNamespace(session=types.SimpleNamespace(id="s1", deleted=False)))
    run(service, clock)
    assert len(scp.requests) == 1                   # one create; nothing until the session is deleted
    service.on_session_changed(deleted("s1"))
    service.on_session_changed(deleted("s1"))       # told twice: queued once
    run(service, clock)
    [n_set] = scp.of("set")
    assert n_set.status == 0 and n_set.dataset.PerformedProcedureStepStatus == "COMPLETED"
    referenced = {r.ReferencedSOPInstanceUID for s in n_set.dataset.PerformedSeriesSequence
                  for r in s.ReferencedImageSequence}
    assert referenced == {i.sop_instance for e in (first, second) for i in sent_instances(e, TARGETS)}
    assert len(referenced) == 3 and len(n_set.dataset.PerformedSeriesSequence) == 2
    assert scp.steps[create.uid].PerformedProcedureStepStatus == "COMPLETED"
    assert service.counts() == {"delivered": 2}


def test_discontinued_when_no_instance_was_sent(open_mpps, scp, clock):
    scp.start()
    service = open_mpps()
    service.on_image_queued(image("s1", pairs=(("dm", "raw"),)))      # imaged, but nothing went out as DICOM
    service.on_session_changed(deleted("s1"))
    run(service, clock)
    assert [r.kind for r in scp.requests] == ["create", "set"]
    n_set = scp.of("set")[0].dataset
    assert n_set.PerformedProcedureStepStatus == "DISCONTINUED"
    assert [len(s.ReferencedImageSequence) for s in n_set.PerformedSeriesSequence] == [0]


def test_unbound_or_never_imaged_sessions_send_nothing(open_mpps, scp, clock, tmp_path):
    scp.start()
    service = open_mpps()
    service.on_image_queued(image("unbound", context={"patientId": "P-1", "worklistBound": "yes"}))
    service.on_session_changed(deleted("unbound"))
    service.on_session_changed(deleted("bound-but-never-imaged"))
    run(service, clock)
    assert scp.requests == [] and service.counts() == {}


def test_in_order_per_session_when_the_scp_is_down_then_up(open_mpps, scp, clock):
    service = open_mpps()                         # the SCP is not started: connections are refused
    service.on_image_queued(image("a"))
    service.on_image_queued(image("b"))
    service.on_session_changed(deleted("a"))
    service.on_image_queued(image("c"))
    service.on_session_changed(deleted("b"))
    run(service, clock, rounds=2)
    queued = by_kind(service)
    assert {m["state"] for m in queued.values()} == {"pending"} and len(queued) == 5
    creates = [m for (_, kind), m in queued.items() if kind == "create"]
    assert all(m["attempts"] == 2 and f"@127.0.0.1:{scp.port}" in m["lastError"] for m in creates)
    assert all(queued[(s, "set")]["attempts"] == 0 for s in ("a", "b"))     # never before their create
    scp.start()
    run(service, clock, rounds=2)
    assert service.counts() == {"delivered": 5}
    for session in ("a", "b", "c"):
        uid = messages.mpps_uid(session)
        kinds = [r.kind for r in scp.requests if r.uid == uid]
        assert kinds == (["create", "set"] if session != "c" else ["create"])     # each once, create first
    assert all(r.status == 0 for r in scp.requests)


def test_a_duplicate_on_create_counts_as_created(open_mpps, scp, clock):
    """An earlier N-CREATE arrived and its answer was lost: the SCP knows the step."""
    scp.start()
    service = open_mpps()
    service.on_image_queued(image("s1"))
    scp.steps[messages.mpps_uid("s1")] = messages.from_json(service.queue.messages()[0].dataset)
    service.on_session_changed(deleted("s1"))
    run(service, clock)
    assert [(r.kind, r.status) for r in scp.requests] == [("create", 0x0111), ("set", 0x0000)]
    create = by_kind(service)[("s1", "create")]
    assert create["state"] == "delivered" and create["dimseStatus"] == "0x0111"
    assert "created already" in create["lastError"]
    assert scp.steps[messages.mpps_uid("s1")].PerformedProcedureStepStatus == "COMPLETED"


def test_a_lost_answer_is_retried_and_the_duplicate_counts_as_created(open_mpps, scp, clock):
    """No answer within [dicom] timeout_seconds: the SCP did create the step; the retry finds it."""
    scp.start()
    service = open_mpps()
    service.sender.timeout = 2.0                  # the association and the request must fit in it, loaded
    arrived, release = scp.hold_next("create")
    service.on_image_queued(image("s1"))
    service.tick()                                # waits 2 s for the held answer, then aborts
    release.set()
    assert arrived.is_set()
    create = by_kind(service)[("s1", "create")]
    assert create["state"] == "pending" and "no answer" in create["lastError"]
    clock.now += 10
    service.tick()
    assert [(r.kind, r.status) for r in scp.requests] == [("create", 0), ("create", 0x0111)]
    assert by_kind(service)[("s1", "create")]["state"] == "delivered"


def test_out_of_resources_is_retried_with_backoff(open_mpps, scp, clock):
    scp.start()
    service = open_mpps()
    scp.answer_next("create", 0xA700)
    service.on_image_queued(image("s1"))
    service.tick()
    create = by_kind(service)[("s1", "create")]
    assert create["state"] == "pending" and "out of resources" in create["lastError"]
    assert clock.now < create["nextAttempt"] <= clock.now + 4.0       # the backoff, within its cap
    service.tick()
    assert len(scp.requests) == 1                                       # not before it is due
    clock.now = create["nextAttempt"]
    service.tick()
    assert [r.status for r in scp.requests] == [0xA700, 0] and service.counts() == {"delivered": 1}


def test_an_attribute_error_is_dead_with_a_clear_error_and_holds_the_set(open_mpps, scp, clock, caplog):
    scp.start()
    service = open_mpps()
    scp.answer_next("create", 0x0120, ErrorComment="Patient ID (0010,0020) is required")
    service.on_image_queued(image("s1"))
    service.on_session_changed(deleted("s1"))
    with caplog.at_level(logging.ERROR, "sensord.forward.mpps"):
        run(service, clock, rounds=3)
    assert len(scp.requests) == 1                                       # the set never went
    queued = by_kind(service)
    create, n_set = queued[("s1", "create")], queued[("s1", "set")]
    assert create["state"] == "dead" and create["dimseStatus"] == "0x0120"
    assert "0x0120" in create["lastError"] and "missing attribute" in create["lastError"]
    assert "(0010,0020) is required" in create["lastError"]
    assert n_set["state"] == "pending" and n_set["held"] and n_set["attempts"] == 0
    assert service.counts() == {"dead": 1, "pending": 1, "held": 1}
    assert "failed for good" in caplog.text


def test_an_n_set_refused_for_an_attribute_names_the_tags(open_mpps, scp, clock):
    scp.start()
    service = open_mpps()
    scp.answer_next("set", 0x0106, AttributeIdentifierList=[Tag("PerformedSeriesSequence")],
                    ErrorComment="series without protocol")
    service.on_image_queued(image("s1"))
    service.on_session_changed(deleted("s1"))
    run(service, clock)
    n_set = by_kind(service)[("s1", "set")]
    assert n_set["state"] == "dead" and "invalid attribute value" in n_set["lastError"]
    assert "(0040,0340) PerformedSeriesSequence" in n_set["lastError"]


def test_a_step_already_final_takes_the_set_as_delivered(open_mpps, scp, clock):
    scp.start()
    service = open_mpps()
    service.on_image_queued(image("s1"))
    run(service, clock)
    scp.steps[messages.mpps_uid("s1")].PerformedProcedureStepStatus = "COMPLETED"   # the RIS closed it
    service.on_session_changed(deleted("s1"))
    run(service, clock)
    assert scp.of("set")[0].status == 0x0110
    n_set = by_kind(service)[("s1", "set")]
    assert n_set["state"] == "delivered" and "final already" in n_set["lastError"]


def test_an_image_after_the_set_is_not_referenced(open_mpps, scp, clock, caplog):
    scp.start()
    service = open_mpps()
    service.on_image_queued(image("s1"))
    service.on_session_changed(deleted("s1"))
    with caplog.at_level(logging.WARNING, "sensord.forward.mpps"):
        service.on_image_queued(image("s1"))
    run(service, clock)
    assert len(service.queue.instances("s1")) == 1 and "after the step's N-SET" in caplog.text


def test_sessions_that_vanished_with_a_restart_get_their_set_at_start(open_mpps, scp, clock, caplog):
    first = open_mpps()
    imaged_at = datetime.fromtimestamp(clock.now).astimezone()
    imaged = image("imaged")
    first.on_image_queued(imaged)
    first.on_image_queued(image("nothing-sent", pairs=()))
    clock.now += 60
    first.close()                                 # the daemon stops; its sessions end with it
    scp.start()
    with caplog.at_level(logging.WARNING, "sensord.forward.mpps"):
        second = open_mpps()
    assert "ended with the last stop" in caplog.text
    run(second, clock)
    assert second.counts() == {"delivered": 4}
    [done] = scp.of("set", messages.mpps_uid("imaged"))
    [stopped] = scp.of("set", messages.mpps_uid("nothing-sent"))
    assert done.dataset.PerformedProcedureStepStatus == "COMPLETED"
    assert [r.ReferencedSOPInstanceUID for r in done.dataset.PerformedSeriesSequence[0].ReferencedImageSequence] \
        == [dicom.instance_uid(imaged.image_id)]
    assert stopped.dataset.PerformedProcedureStepStatus == "DISCONTINUED"
    # Ended at its last image, not at the restart a minute later.
    assert (done.dataset.PerformedProcedureStepEndDate, done.dataset.PerformedProcedureStepEndTime) == \
        (imaged_at.strftime("%Y%m%d"), imaged_at.strftime("%H%M%S"))
    third = open_mpps()                           # and only once
    assert third.counts() == {"delivered": 4}


def test_a_context_no_dataset_can_be_built_from_is_shown_dead(open_mpps, scp, clock):
    scp.start()
    service = open_mpps()
    service.on_image_queued(image("s1", pairs=(), context={**BOUND, "birthDate": "the third of May"}))
    run(service, clock)
    [create] = service.messages()
    assert create["state"] == "dead" and "birthDate" in create["lastError"] and scp.requests == []
