"""MPPS datasets and what each DIMSE answer means: pure, no network."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from sensord.daemon.forward import mpps_messages as messages
from sensord.daemon.forward.mpps_sender import DEAD, DELIVERED, RETRY, judge
from sensord.daemon.forward.platforms import dicom

BOUND = {"worklistBound": True, "patientId": "P-1", "patientName": "Doe^Jane", "birthDate": "1980-02-03",
         "sex": "F", "studyInstanceUid": "1.2.826.0.1.3680043.8.498.1", "accessionNumber": "ACC-7",
         "requestedProcedureId": "RP-7", "requestedProcedureDescription": "Bitewings",
         "scheduledProcedureStepId": "SPS-7", "scheduledProcedureStepDescription": "Bitewing pair",
         "referringPhysician": "Who^Doctor"}
CLINIC = timezone(timedelta(hours=2))
START = datetime(2024, 5, 1, 10, 15, 30, tzinfo=CLINIC)
UID = messages.mpps_uid("session-1")


def create(**context):
    return messages.build_create({**BOUND, **context}, step_uid=UID, study_uid=BOUND["studyInstanceUid"],
                                 station_ae="SENSORD", started=START)


def test_the_step_uid_is_a_stable_dicom_uid_per_session():
    assert messages.mpps_uid("session-1") == UID != messages.mpps_uid("session-2")
    assert dicom.is_valid_uid(UID) and UID.startswith("2.25.")


def test_only_a_real_binding_counts():
    assert messages.is_bound(BOUND)
    assert not messages.is_bound({**BOUND, "worklistBound": "true"}) and not messages.is_bound({})


def test_n_create_carries_the_scheduled_step_patient_station_and_start():
    ds = create()
    assert ds.PerformedProcedureStepStatus == "IN PROGRESS"
    [step] = ds.ScheduledStepAttributesSequence
    assert (step.StudyInstanceUID, step.AccessionNumber, step.RequestedProcedureID,
            step.RequestedProcedureDescription, step.ScheduledProcedureStepID,
            step.ScheduledProcedureStepDescription) == (
        BOUND["studyInstanceUid"], "ACC-7", "RP-7", "Bitewings", "SPS-7", "Bitewing pair")
    assert step.ReferencedStudySequence == [] and step.ScheduledProtocolCodeSequence == []
    assert (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate, ds.PatientSex) == \
        ("Doe^Jane", "P-1", "19800203", "F")
    assert ds.PerformedStationAETitle == "SENSORD" and ds.Modality == "IO"
    assert (ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime) == ("20240501", "101530")
    assert ds.PerformedProcedureStepEndDate == "" and ds.PerformedProcedureStepEndTime == ""
    assert ds.PerformedSeriesSequence == [] and ds.PerformedProcedureStepDiscontinuationReasonCodeSequence == []
    assert len(ds.PerformedProcedureStepID) <= 16 and ds.PerformedProcedureStepID == messages.step_id(UID)
    # The images of that study carry the same Study ID (platforms/dicom.py).
    assert ds.StudyID == messages.study_id(BOUND["studyInstanceUid"])


def test_n_create_has_every_attribute_the_scu_must_send():
    """Type 1 with a value, type 2 present (PS3.4 Table F.7.2-1, N-CREATE column)."""
    ds = create(accessionNumber="", requestedProcedureId=None, patientName="", birthDate="", sex="")
    type1 = ("ScheduledStepAttributesSequence", "PerformedProcedureStepID", "PerformedStationAETitle",
             "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
             "PerformedProcedureStepStatus", "Modality")
    type2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferencedPatientSequence",
             "PerformedStationName", "PerformedLocation", "PerformedProcedureStepDescription",
             "PerformedProcedureTypeDescription", "ProcedureCodeSequence", "PerformedProcedureStepEndDate",
             "PerformedProcedureStepEndTime", "StudyID", "PerformedProtocolCodeSequence",
             "PerformedSeriesSequence")
    assert all(ds.get(k) not in (None, "") for k in type1)
    assert all(k in ds for k in type2)
    step = ds.ScheduledStepAttributesSequence[0]
    assert step.StudyInstanceUID
    assert all(k in step for k in ("ReferencedStudySequence", "AccessionNumber", "RequestedProcedureID",
                                   "RequestedProcedureDescription", "ScheduledProcedureStepID",
                                   "ScheduledProcedureStepDescription", "ScheduledProtocolCodeSequence"))


@pytest.mark.filterwarnings("ignore:The value length")     # pydicom's own word on the same value
@pytest.mark.parametrize("field, value, named", [
    ("accessionNumber", "A" * 17, "AccessionNumber"),          # SH: 16 at most
    ("birthDate", "3rd of May", "birthDate"),
    ("patientId", "P\n1", "PatientID"),
])
def test_a_value_that_does_not_fit_is_refused_by_name(field, value, named):
    with pytest.raises(ValueError, match=named):
        create(**{field: value})


def test_n_set_completed_lists_every_instance_per_series_in_order():
    a, b = "1.2.3.1", "1.2.3.2"
    sent = [messages.Instance(a, dicom.SOP_CLASS, "1.2.3.1.1"), messages.Instance(b, dicom.SOP_CLASS, "1.2.3.2.1"),
            messages.Instance(a, dicom.SOP_CLASS, "1.2.3.1.2")]
    ds = messages.build_set(step_uid=UID, instances=sent, ended=START + timedelta(minutes=5), protocol="Bitewing pair")
    assert ds.PerformedProcedureStepStatus == "COMPLETED"
    assert (ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime) == ("20240501", "102030")
    assert [s.SeriesInstanceUID for s in ds.PerformedSeriesSequence] == [a, b]
    first = ds.PerformedSeriesSequence[0]
    assert [r.ReferencedSOPInstanceUID for r in first.ReferencedImageSequence] == ["1.2.3.1.1", "1.2.3.1.2"]
    assert {r.ReferencedSOPClassUID for r in first.ReferencedImageSequence} == {dicom.SOP_CLASS}
    for item in ds.PerformedSeriesSequence:     # final state: 1 with a value, 2 present
        assert item.ProtocolName == "Bitewing pair" and item.SeriesInstanceUID
        assert all(k in item for k in ("PerformingPhysicianName", "OperatorsName", "SeriesDescription",
                                       "RetrieveAETitle", "ReferencedNonImageCompositeSOPInstanceSequence"))
    # Nothing the N-SET may not set (patient, scheduled step, station, start, modality).
    assert not {"PatientID", "ScheduledStepAttributesSequence", "PerformedStationAETitle",
                "PerformedProcedureStepStartDate", "Modality"} & set(ds.dir())
    assert "SpecificCharacterSet" not in ds          # all ASCII


def test_n_set_discontinued_when_nothing_was_sent_still_names_a_series():
    ds = messages.build_set(step_uid=UID, instances=[], ended=START, protocol="Zahnfilm Übersicht")
    assert ds.PerformedProcedureStepStatus == "DISCONTINUED"
    [series] = ds.PerformedSeriesSequence                      # the final state needs one
    assert series.ReferencedImageSequence == [] and series.SeriesInstanceUID == messages.fallback_series_uid(UID)
    [reason] = ds.PerformedProcedureStepDiscontinuationReasonCodeSequence
    assert (reason.CodeValue, reason.CodingSchemeDesignator) == ("110513", "DCM")
    assert ds.SpecificCharacterSet == "ISO_IR 192"          # the protocol name needs it


def test_the_json_form_round_trips():
    ds = create()
    assert messages.from_json(messages.to_json(ds)) == ds


def test_protocol_name_falls_back_to_the_requested_procedure_then_a_default():
    assert messages.protocol_name(BOUND) == "Bitewing pair"
    assert messages.protocol_name({**BOUND, "scheduledProcedureStepDescription": ""}) == "Bitewings"
    assert messages.protocol_name({}) == messages.DEFAULT_PROTOCOL


def status(code=None, **extra) -> Dataset:
    ds = Dataset()
    if code is not None:
        ds.Status = code
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize("kind, answer, verdict", [
    ("create", status(0x0000), DELIVERED),
    ("set", status(0x0000), DELIVERED),
    ("create", status(0x0107), DELIVERED),                     # warning: kept as a note
    ("create", status(0x0111), DELIVERED),                     # created by an earlier try
    ("set", status(0x0111), DEAD),
    ("set", status(0x0110, ErrorID=0xA710), DELIVERED),        # final already
    ("create", status(0x0110), RETRY),
    ("set", status(0x0110), RETRY),
    ("create", status(0x0213), RETRY),
    ("create", status(0xA700), RETRY),
    ("create", status(), RETRY),                               # no answer
    ("create", status(0x0120), DEAD),
    ("set", status(0x0106), DEAD),
    ("set", status(0x0112), DEAD),
    ("create", status(0x0122), DEAD),
    ("create", status(0xC000), DEAD),
])
def test_each_answer_has_one_meaning(kind, answer, verdict):
    assert judge(kind, answer)[0] == verdict


def test_an_attribute_error_names_the_status_and_the_offending_tags():
    answer = status(0x0120, AttributeIdentifierList=[Tag("PatientID"), Tag("PerformedStationAETitle")],
                    ErrorComment="missing what we need")
    verdict, text, code = judge("set", answer)
    assert verdict == DEAD and code == 0x0120
    assert "0x0120" in text and "missing attribute" in text
    assert "(0010,0020) PatientID" in text and "(0040,0241) PerformedStationAETitle" in text
    assert "missing what we need" in text
