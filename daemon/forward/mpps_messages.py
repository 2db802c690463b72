"""The two Modality Performed Procedure Step messages of a session, as
pydicom Datasets: pure builders (context and times in, a Dataset out).

What PS3.4 F.7.2 asks of the SCU, in short (our reading of Table F.7.2-1):

**N-CREATE** (status IN PROGRESS, the only status a create may carry).
Must have a value: the Scheduled Step Attributes Sequence with the Study
Instance UID in each item; Performed Procedure Step ID; Performed Station
AE Title; start date and time; the status; Modality. Must be present, empty
when unknown: in the scheduled step item, Referenced Study Sequence,
Accession Number, Requested Procedure ID and Description, Scheduled
Procedure Step ID and Description, Scheduled Protocol Code Sequence;
Patient's Name, ID, Birth Date, Sex and Referenced Patient Sequence;
Performed Station Name and Location; step Description and Type
Description; Procedure Code Sequence; end date and time (empty until the
N-SET); Study ID; Performed Protocol Code Sequence; Performed Series
Sequence (empty at first). Specific Character Set when a value needs more
than ASCII: we always send ISO_IR 192. An attribute can only be set later
if the create made it, so the Discontinuation Reason Code Sequence is
created empty, to be filled by a DISCONTINUED N-SET.

**N-SET** (the final one, COMPLETED or DISCONTINUED). Only the step's
status, descriptions, codes, end date and time, and the Performed Series
Sequence may be set; the patient, the scheduled step, the station, the
start and the modality may not. In the final state the end date and time
need values and the Performed Series Sequence at least one item (a series
even when no instance was made). Each series item carries Protocol Name and
Series Instance UID with values, and Performing Physician's Name,
Operators' Name, Series Description, Retrieve AE Title, the Referenced
Image Sequence and the Referenced Non-Image Composite SOP Instance
Sequence, present and possibly empty. A sequence is sent whole, every item,
and the final N-SET lists every instance the step made; no N-SET follows it.
Specific Character Set goes with an N-SET only when a value it sets needs it.
"""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.valuerep import validate_value

from .platforms import dicom

SOP_CLASS = dicom.MPPS_SOP_CLASS             # Modality Performed Procedure Step
IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
MODALITY = "IO"                             # what our images are (platforms/dicom.py)
DEFAULT_PROTOCOL = "Intraoral radiography"  # Protocol Name needs a value; when the step names none
UNICODE = "ISO_IR 192"


class Instance(NamedTuple):
    """One SOP instance sent during the step."""
    series_uid: str
    sop_class: str
    sop_instance: str


def mpps_uid(session_id: str) -> str:
    """The step's SOP Instance UID: derived from the session, so every retry names the same step."""
    return dicom.uid_from_uuid(uuid.uuid5(dicom.NAMESPACE, f"mpps\0{session_id}"))


def is_bound(context: dict) -> bool:
    """A context the worklist binding filled in (its ``worklistBound`` flag, nothing less)."""
    return context.get("worklistBound") is True


def protocol_name(context: dict) -> str:
    for key in ("scheduledProcedureStepDescription", "requestedProcedureDescription"):
        value = _text(context.get(key))
        if value:
            return value[:64]
    return DEFAULT_PROTOCOL


def fallback_series_uid(step_uid: str) -> str:
    """The series named when the step made no instance (the final state needs one)."""
    return dicom.uid_from_uuid(uuid.uuid5(dicom.NAMESPACE, f"mpps-series\0{step_uid}"))


def build_create(context: dict, *, step_uid: str, study_uid: str, station_ae: str,
                 started: datetime) -> Dataset:
    """The N-CREATE attribute list (IN PROGRESS) of a bound session.

    ``context`` holds the worklist item's keys (patientId, patientName,
    birthDate YYYY-MM-DD, sex, accessionNumber, requestedProcedureId and
    Description, scheduledProcedureStepId and Description); ``study_uid`` is
    the study the session's images are in; ``started`` an aware datetime
    in the clinic's zone. ValueError names a value that does not fit its VR.
    """
    ds = Dataset()
    ds.SpecificCharacterSet = UNICODE
    step = Dataset()
    step.StudyInstanceUID = study_uid
    step.ReferencedStudySequence = Sequence()
    step.AccessionNumber = _text(context.get("accessionNumber"))
    step.RequestedProcedureID = _text(context.get("requestedProcedureId"))
    step.RequestedProcedureDescription = _text(context.get("requestedProcedureDescription"))
    step.ScheduledProcedureStepID = _text(context.get("scheduledProcedureStepId"))
    step.ScheduledProcedureStepDescription = _text(context.get("scheduledProcedureStepDescription"))
    step.ScheduledProtocolCodeSequence = Sequence()
    ds.ScheduledStepAttributesSequence = Sequence([step])
    ds.PatientName = _text(context.get("patientName"))
    ds.PatientID = _text(context.get("patientId"))
    ds.PatientBirthDate = _date(context.get("birthDate"))
    ds.PatientSex = _sex(context.get("sex"))
    ds.ReferencedPatientSequence = Sequence()
    ds.PerformedProcedureStepID = step_id(step_uid)
    ds.PerformedStationAETitle = station_ae
    ds.PerformedStationName = ""
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = started.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = started.strftime("%H%M%S")
    ds.PerformedProcedureStepStatus = IN_PROGRESS
    ds.PerformedProcedureStepDescription = _text(context.get("scheduledProcedureStepDescription"))
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = Sequence()
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = Sequence()
    ds.Modality = MODALITY
    ds.StudyID = study_id(study_uid)
    ds.PerformedProtocolCodeSequence = Sequence()
    ds.PerformedSeriesSequence = Sequence()
    _validate(ds)
    return ds


def build_set(*, step_uid: str, instances: Iterable[Instance], ended: datetime, protocol: str) -> Dataset:
    """The final N-SET modification list: COMPLETED with one Performed Series
    item per series of ``instances`` (in the order first seen), each listing
    its images; DISCONTINUED, with one empty series item, when there are none."""
    series: dict[str, list[Instance]] = {}
    for instance in instances:
        series.setdefault(instance.series_uid, []).append(instance)
    ds = Dataset()
    if not protocol.isascii():
        ds.SpecificCharacterSet = UNICODE
    ds.PerformedProcedureStepStatus = COMPLETED if series else DISCONTINUED
    ds.PerformedProcedureStepEndDate = ended.strftime("%Y%m%d")
    ds.PerformedProcedureStepEndTime = ended.strftime("%H%M%S")
    if not series:
        reason = codes.cid9300.DiscontinuedForUnspecifiedReason
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = \
            reason.value, reason.scheme_designator, reason.meaning
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = Sequence([code])
    items = []
    for series_uid, members in (series or {fallback_series_uid(step_uid): []}).items():
        item = Dataset()
        item.PerformingPhysicianName = ""
        item.ProtocolName = protocol
        item.OperatorsName = ""
        item.SeriesInstanceUID = series_uid
        item.SeriesDescription = ""
        item.RetrieveAETitle = ""
        refs = []
        for member in members:
            ref = Dataset()
            ref.ReferencedSOPClassUID = member.sop_class
            ref.ReferencedSOPInstanceUID = member.sop_instance
            refs.append(ref)
        item.ReferencedImageSequence = Sequence(refs)
        item.ReferencedNonImageCompositeSOPInstanceSequence = Sequence()
        items.append(item)
    ds.PerformedSeriesSequence = Sequence(items)
    _validate(ds)
    return ds


def step_id(step_uid: str) -> str:
    """Performed Procedure Step ID (SH, 16): stable, from the step's UID."""
    return dicom.performed_step_id(step_uid)      # the images of the step carry the same


def study_id(study_uid: str) -> str:
    """Study ID as platforms/dicom.py writes it into the images of that study."""
    return uuid.uuid5(dicom.NAMESPACE, f"study-id\0{study_uid}").hex[:16].upper()


def status_of(ds: Dataset) -> str:
    return str(ds.get("PerformedProcedureStepStatus", ""))


def to_json(ds: Dataset) -> str:
    """pydicom's DICOM JSON form (PS3.18 F.2), as stored in the queue."""
    return json.dumps(ds.to_json_dict())


def from_json(text: str) -> Dataset:
    return Dataset.from_json(text)


# -- values -------------------------------------------------------------------
def _text(raw) -> str:
    return "" if raw is None else str(raw).strip()


def _date(raw) -> str:
    text = _text(raw)
    match = re.fullmatch(r"(\d{4})-?(\d\d)-?(\d\d)", text)
    if text and match is None:
        raise ValueError(f"context.birthDate is not a date (YYYY-MM-DD): {raw!r}")
    return "".join(match.groups()) if match else ""


def _sex(raw) -> str:
    return {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F", "O": "O", "OTHER": "O"}.get(_text(raw).upper(), "")


_TEXT_VRS = {"AE", "CS", "DA", "LO", "PN", "SH", "TM", "UI"}


def _validate(ds: Dataset) -> None:
    """Every text value fits its VR; the SCP would refuse the message otherwise."""
    for element in ds.iterall():
        if element.VR not in _TEXT_VRS or element.value in ("", None):
            continue
        values = element.value if isinstance(element.value, MultiValue) else [element.value]
        for value in map(str, values):
            if any(ord(c) < 32 for c in value):
                raise ValueError(f"{element.keyword}: control characters are not allowed: {value!r}")
            try:
                validate_value(element.VR, value, pydicom_config.RAISE)
            except ValueError as err:
                raise ValueError(f"{element.keyword}: {err}") from None
