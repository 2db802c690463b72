"""The worklist's rules without a network: binding a session to an item,
the context an image of a bound session carries, the cached list's states
and log lines, and the checks on each answer (query.parse_item)."""
from __future__ import annotations

import logging
from datetime import date
from types import SimpleNamespace

import pytest
from pydicom.dataset import Dataset

from sensord.daemon.dimse.network import DimseError
from sensord.daemon.settings import DicomSettings, WorklistSettings
from sensord.daemon.worklist import binding, query
from sensord.daemon.worklist.binding import Bindings
from sensord.daemon.worklist.items import Worklist


def item(accession="ACC-1", step="SPS-1", **extra) -> dict:
    base = {"patientId": "PAT-1", "patientName": "Doe^Jane", "birthDate": "1980-04-02", "sex": "F",
            "studyInstanceUid": "1.2.3.4", "accessionNumber": accession, "referringPhysician": "Smith^Ann",
            "requestedProcedureId": "RP-1", "requestedProcedureDescription": "Bitewings",
            "scheduledProcedureStepId": step, "scheduledProcedureStepDescription": "Bitewing left",
            "scheduledStart": "2026-11-30T09:30:00", "modality": "IO", "scheduledStationAeTitle": "SENSORD"}
    return {**base, **extra}


class FakeQuery:
    """Stands in for query.query: answers with ``items`` or raises ``error``."""

    def __init__(self, items=(), error=None):
        self.items, self.error, self.calls = list(items), error, []

    def __call__(self, peer, **kwargs):
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        return query.Answer(items=[dict(i) for i in self.items])


def worklist(fake: FakeQuery, host="127.0.0.1") -> Worklist:
    return Worklist(WorklistSettings(host=host, port=104, called_ae="WL"), DicomSettings(),
                    query=fake, today=lambda: date(2026, 11, 30))


def session(sid="s1", **context):
    return SimpleNamespace(id=sid, context=context, deleted=False)


def mine(caplog) -> list[str]:
    """What the worklist logged about session s1 (other tests' threads may still log)."""
    return [r.getMessage() for r in caplog.records if r.name == "sensord.worklist" and "s1" in r.getMessage()]


def changed(s):
    return SimpleNamespace(session=s)


def acquired(s, exposure_context=None):
    info = {"acquisitionInfo": {"context": exposure_context}} if exposure_context else {}
    return SimpleNamespace(session=s, image=SimpleNamespace(image_info=info))


# -- the pure rules ---------------------------------------------------------------
def test_match_needs_one_item_with_every_value_named():
    items = [item("A", "S1"), item("A", "S2"), item("B", "S3")]
    assert binding.match(items, "B", "") == (items[2], None)
    assert binding.match(items, "", "S2") == (items[1], None)
    assert binding.match(items, "A", "S1") == (items[0], None)
    none, reason = binding.match(items, "C", "")
    assert none is None and "no worklist item has accessionNumber 'C'" in reason
    none, reason = binding.match(items, "A", "")
    assert none is None and "matches 2 scheduled steps" in reason and "scheduledProcedureStepId" in reason
    none, reason = binding.match(items, "B", "S1")          # both named: both must agree
    assert none is None and "accessionNumber 'B' and scheduledProcedureStepId 'S1'" in reason
    assert binding.match(items, "", "") == (None, binding.NO_KEYS)


def test_wanted_reads_the_keys_in_any_spelling():
    assert binding.wanted({"AccessionNumber": " A-1 ", "scheduled_procedure_step_id": 7}) == ("A-1", "7")
    assert binding.wanted({"accessionNumber": None, "scheduledProcedureStepId": {"x": 1}}) == ("", "")
    assert binding.wanted({}) == ("", "")


def test_overlay_puts_the_item_over_the_context_and_says_so():
    context = {"PatientID": "typed-by-hand", "patientName": "Wrong^Name", "tooth": "36",
               "WorklistBound": False, "sex": "M", "studyDate": "2026-11-30"}
    out = binding.overlay(context, item(sex=""))
    assert out["patientId"] == "PAT-1" and "PatientID" not in out          # every spelling replaced
    assert out["patientName"] == "Doe^Jane" and out["tooth"] == "36" and out["studyDate"] == "2026-11-30"
    assert out["sex"] == "M"                     # the item leaves it empty: the context's stays
    assert out["worklistBound"] is True and "WorklistBound" not in out
    for key in binding.CARRIED:
        if key != "sex":
            assert out[key] == item()[key], key
    assert "scheduledStart" not in out and "modality" not in out
    assert binding.without_claim({"worklistBound": True, "a": 1}) == {"a": 1}


# -- Bindings over a worklist ------------------------------------------------------
def test_a_session_is_bound_when_created_and_its_images_carry_the_item(caplog):
    wl = worklist(FakeQuery([item("ACC-1", "SPS-1"), item("ACC-2", "SPS-2", patientId="PAT-2")]))
    wl.refresh()
    bindings = Bindings(wl)
    s = session(accessionNumber="ACC-2", tooth="11", worklistBound=True)
    bindings.on_session_changed(changed(s))
    context = bindings.context_for("s1", {**s.context, "laterality": "R"})
    assert context["patientId"] == "PAT-2" and context["accessionNumber"] == "ACC-2"
    assert context["worklistBound"] is True and context["tooth"] == "11" and context["laterality"] == "R"
    [report] = bindings.report([s])
    assert report == {"sessionId": "s1", "bound": True, "accessionNumber": "ACC-2",
                      "scheduledProcedureStepId": "SPS-2", "reason": None}
    assert bindings.item_of("s1")["patientId"] == "PAT-2"


def test_an_unmatched_session_is_warned_once_and_goes_on_unbound(caplog):
    wl = worklist(FakeQuery([item("ACC-1")]))
    wl.refresh()
    bindings = Bindings(wl)
    s = session(accessionNumber="NOPE", worklistBound=True, patientId="typed")
    with caplog.at_level(logging.WARNING, logger="sensord.worklist"):
        for _ in range(3):                       # status changes: several events, one warning
            bindings.on_session_changed(changed(s))
        context = bindings.context_for("s1", dict(s.context))
    warnings = [r.getMessage() for r in caplog.records if "not bound" in r.getMessage()]
    assert len(warnings) == 1 and "NOPE" in warnings[0]
    assert context == {"accessionNumber": "NOPE", "patientId": "typed"}      # unchanged, minus the claim
    [report] = bindings.report([s])
    assert report["bound"] is False and report["accessionNumber"] == "NOPE"
    assert "no worklist item has accessionNumber 'NOPE'" in report["reason"]


def test_a_session_naming_nothing_is_not_warned_about(caplog):
    wl = worklist(FakeQuery([item()]))
    wl.refresh()
    bindings = Bindings(wl)
    with caplog.at_level(logging.WARNING, logger="sensord.worklist"):
        bindings.on_session_changed(changed(session(tooth="36")))
    assert mine(caplog) == []
    assert bindings.report([session(tooth="36")])[0]["reason"] == binding.NO_KEYS


def test_a_session_unbound_at_first_is_bound_once_the_worklist_answers():
    fake = FakeQuery(error=DimseError("cannot reach WL@127.0.0.1:104", retryable=True))
    wl = worklist(fake)
    bindings = Bindings(wl)
    wl.changed.connect(bindings.on_worklist_changed)
    wl.refresh()
    s = session(scheduledProcedureStepId="SPS-1")
    bindings.on_session_changed(changed(s))
    [report] = bindings.report([s])
    assert not report["bound"] and "does not answer: cannot reach" in report["reason"]
    fake.error, fake.items = None, [item()]
    wl.refresh()                                  # the worklist is back: the session is matched again
    assert bindings.item_of("s1")["accessionNumber"] == "ACC-1"
    assert bindings.context_for("s1", s.context)["worklistBound"] is True


def test_the_binding_is_matched_again_at_image_time_and_then_fixed():
    fake = FakeQuery([item("ACC-1", "SPS-1")])
    wl = worklist(fake)
    bindings = Bindings(wl)
    s = session(accessionNumber="ACC-1")
    bindings.on_session_changed(changed(s))      # before the first refresh: nothing to match
    assert bindings.item_of("s1") is None
    wl.refresh()                                  # (no signal connected: found at image time)
    bindings.on_acquired(acquired(s))
    assert bindings.item_of("s1")["scheduledProcedureStepId"] == "SPS-1"
    # Fixed: neither a new context nor the item leaving the worklist moves the session's images.
    s.context = {"accessionNumber": "ACC-2"}
    fake.items = [item("ACC-2", "SPS-2", patientId="PAT-2")]
    wl.refresh()
    bindings.on_session_changed(changed(s))
    assert bindings.context_for("s1", s.context)["patientId"] == "PAT-1"
    assert bindings.report([s])[0]["accessionNumber"] == "ACC-1"


def test_before_any_image_a_new_context_binds_anew():
    wl = worklist(FakeQuery([item("ACC-1", "SPS-1"), item("ACC-2", "SPS-2", patientId="PAT-2")]))
    wl.refresh()
    bindings = Bindings(wl)
    s = session(accessionNumber="ACC-1")
    bindings.on_session_changed(changed(s))
    s.context = {"accessionNumber": "ACC-2"}      # a PUT of the context: no signal, the report sees it
    assert bindings.report([s])[0]["scheduledProcedureStepId"] == "SPS-2"
    s.context = {}
    assert bindings.report([s])[0]["bound"] is False


def test_the_exposure_context_may_name_the_step():
    wl = worklist(FakeQuery([item("ACC-1", "SPS-1")]))
    wl.refresh()
    bindings = Bindings(wl)
    s = session()
    bindings.on_session_changed(changed(s))
    bindings.on_acquired(acquired(s, {"accessionNumber": "ACC-1"}))
    assert bindings.item_of("s1")["accessionNumber"] == "ACC-1"


def test_a_deleted_session_is_forgotten():
    wl = worklist(FakeQuery([item()]))
    wl.refresh()
    bindings = Bindings(wl)
    s = session(accessionNumber="ACC-1")
    bindings.on_session_changed(changed(s))
    s.deleted = True
    bindings.on_session_changed(changed(s))
    assert bindings.item_of("s1") is None and bindings._bindings == {}


def test_no_worklist_configured_binds_nothing_but_still_drops_the_claim(caplog):
    fake = FakeQuery([item()])
    wl = worklist(fake, host="")
    wl.start()
    assert wl.refresh() is False and fake.calls == []
    bindings = Bindings(wl)
    s = session(accessionNumber="ACC-1", worklistBound=True)
    with caplog.at_level(logging.WARNING, logger="sensord.worklist"):
        bindings.on_session_changed(changed(s))
        assert bindings.context_for("s1", s.context) == {"accessionNumber": "ACC-1"}
    assert mine(caplog) == []
    assert bindings.report([s])[0]["reason"] == binding.NOT_CONFIGURED
    assert wl.to_json() == {"configured": False, "peer": None, "refreshedAt": None, "error": None, "items": []}


def test_a_failing_binding_never_fails_the_exposure(caplog):
    wl = worklist(FakeQuery([item()]))
    bindings = Bindings(wl)
    bindings.on_acquired(SimpleNamespace(session=session(), image=None))      # broken event: logged only
    assert "binding at image time failed" in caplog.text


# -- the cached list ----------------------------------------------------------------
def test_the_worklist_keeps_its_items_when_it_stops_answering_and_logs_changes_only(caplog):
    fake = FakeQuery([item("ACC-1"), item("ACC-2", "SPS-2")])
    wl = worklist(fake)
    seen = []
    wl.changed.connect(seen.append)
    with caplog.at_level(logging.INFO, logger="sensord.worklist"):
        assert wl.refresh() and wl.refresh()
        fake.error = DimseError("cannot reach WL@127.0.0.1:104 (refused)", retryable=True)
        assert not wl.refresh() and not wl.refresh()
        assert [i["accessionNumber"] for i in wl.items] == ["ACC-1", "ACC-2"]     # kept
        assert wl.to_json()["error"] == "cannot reach WL@127.0.0.1:104 (refused)"
        fake.error = None
        assert wl.refresh()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "worklist at WL@127.0.0.1:104: 2 items"
    assert lines[1].startswith("worklist at WL@127.0.0.1:104 does not answer: cannot reach")
    assert "keeping the 2 items" in lines[1]
    assert lines[2] == "worklist at WL@127.0.0.1:104: 2 items" and len(lines) == 3
    assert len(seen) == 3 and wl.error is None and wl.refreshed_at is not None
    assert fake.calls[0] == {"ae_title": "SENSORD", "modality": "IO", "timeout": 30.0, "day": date(2026, 11, 30)}


def test_the_first_refresh_does_not_hold_up_start():
    import threading
    gate = threading.Event()

    def slow(peer, **kwargs):
        gate.wait(5)
        return query.Answer(items=[item()])

    wl = Worklist(WorklistSettings(host="127.0.0.1", called_ae="WL"), DicomSettings(), query=slow)
    wl.start()                                    # returns at once
    assert wl.items == ()
    gate.set()
    wl.close()
    assert len(wl.items) == 1


# -- what an answer may hold --------------------------------------------------------
def answer(**top) -> Dataset:
    ds = Dataset()
    ds.PatientID, ds.PatientName, ds.AccessionNumber = "PAT-1", "Doe^Jane", "ACC-1"
    ds.StudyInstanceUID, ds.PatientBirthDate, ds.PatientSex = "1.2.3", "19800402", "F"
    step = Dataset()
    step.ScheduledProcedureStepID, step.Modality, step.ScheduledStationAETitle = "SPS-1", "IO", "SENSORD"
    step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime = "20261130", "0930"
    ds.ScheduledProcedureStepSequence = [step]
    for keyword, value in top.items():
        setattr(ds, keyword, value)
    return ds


def test_an_answer_becomes_an_item_with_our_keys():
    got = query.parse_item(answer())
    assert list(got) == list(query.KEYS)
    assert got["patientName"] == "Doe^Jane" and got["birthDate"] == "1980-04-02"
    assert got["scheduledStart"] == "2026-11-30T09:30:00" and got["requestedProcedureId"] == ""


@pytest.mark.filterwarnings("ignore::UserWarning")     # pydicom warns about the bad values we set
def test_values_are_checked_and_cut_per_vr():
    notes: list[str] = []
    ds = answer(PatientID="X" * 100, StudyInstanceUID="1.2.abc", PatientBirthDate="19801302",
                PatientSex="female", RequestedProcedureDescription="Bite\x07wing")
    ds.PatientName = "A" * 80 + "^B"
    got = query.parse_item(ds, notes)
    assert got["patientId"] == "X" * 64 and got["studyInstanceUid"] == "" and got["birthDate"] == ""
    assert got["sex"] == "" and got["requestedProcedureDescription"] == "Bitewing"
    assert got["patientName"] == "A" * 64
    assert any("not a UID" in n for n in notes) and any("not a date" in n for n in notes)
    assert any("patientId cut to 64" in n for n in notes)


@pytest.mark.parametrize("broken", ["no step", "no ids"])
def test_an_answer_that_cannot_be_bound_is_refused(broken):
    ds = answer()
    if broken == "no step":
        del ds.ScheduledProcedureStepSequence
    else:
        ds.AccessionNumber = ""
        ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID = ""
    with pytest.raises(ValueError):
        query.parse_item(ds)


def test_the_request_names_our_station_modality_and_day():
    ds = query.request("SENSORD", "IO", date(2026, 11, 30))
    [step] = ds.ScheduledProcedureStepSequence
    assert (step.ScheduledStationAETitle, step.Modality, step.ScheduledProcedureStepStartDate) == \
        ("SENSORD", "IO", "20261130")
    assert ds.PatientID == "" and ds.AccessionNumber == "" and step.ScheduledProcedureStepID == ""
