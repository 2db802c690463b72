"""Ask the worklist for today's scheduled steps of this station (C-FIND,
Modality Worklist Information Model) and turn each answer into a plain dict.

The request names our station (Scheduled Station AE Title = our AE title),
the modality and today's date (this machine's, the clinic's day); the
other keys are asked for empty, so the worklist returns them. Each answer
becomes an item with our own camelCase keys (``KEYS``).

What a worklist can cost is bounded: at most ``max_items`` items are kept
(beyond that the association is aborted and the first ones kept, noted);
every value is checked against its VR and cut to its length, a UID or date
that is not one is dropped; an answer that cannot be read, or names
neither an accession number nor a step id (nothing to bind a session to),
is skipped. An answer for another station, modality or day (a worklist
that ignores a key) is left out. Each such event becomes a note on the
answer, which the caller logs.

Statuses: Pending (0xFF00, 0xFF01) carries an item, Success ends the
answer, anything else is an error naming the status.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]  # made at import
from pynetdicom.status import code_to_category

from sensord.daemon.dimse.network import DimseError, Peer, association, check_established

log = logging.getLogger("sensord.worklist")

MODEL = str(ModalityWorklistInformationFind)
SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
MAX_ITEMS = 1000
PENDING = (0xFF00, 0xFF01)
SUCCESS = 0x0000

KEYS = ("patientId", "patientName", "birthDate", "sex", "studyInstanceUid", "accessionNumber",
        "referringPhysician", "requestedProcedureId", "requestedProcedureDescription",
        "scheduledProcedureStepId", "scheduledProcedureStepDescription", "scheduledStart", "modality",
        "scheduledStationAeTitle")

# Top-level attributes: our key -> (keyword, VR, longest value).
_TOP = {"patientId": ("PatientID", "LO", 64), "patientName": ("PatientName", "PN", 64),
        "birthDate": ("PatientBirthDate", "DA", 8), "sex": ("PatientSex", "CS", 16),
        "studyInstanceUid": ("StudyInstanceUID", "UI", 64), "accessionNumber": ("AccessionNumber", "SH", 16),
        "referringPhysician": ("ReferringPhysicianName", "PN", 64),
        "requestedProcedureId": ("RequestedProcedureID", "SH", 16),
        "requestedProcedureDescription": ("RequestedProcedureDescription", "LO", 64)}
# Inside the (first) Scheduled Procedure Step Sequence item.
_STEP = {"scheduledProcedureStepId": ("ScheduledProcedureStepID", "SH", 16),
         "scheduledProcedureStepDescription": ("ScheduledProcedureStepDescription", "LO", 64),
         "modality": ("Modality", "CS", 16), "scheduledStationAeTitle": ("ScheduledStationAETitle", "AE", 16)}
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Answer:
    items: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)     # what was skipped, cut or left out, for the log


def request(ae_title: str, modality: str, day: date) -> Dataset:
    """The C-FIND identifier: this station's steps of ``modality`` on ``day``, every key returned."""
    ds = Dataset()
    for keyword, _vr, _size in _TOP.values():
        setattr(ds, keyword, "")
    step = Dataset()
    step.ScheduledStationAETitle = ae_title
    step.Modality = modality
    step.ScheduledProcedureStepStartDate = day.strftime("%Y%m%d")
    step.ScheduledProcedureStepStartTime = ""
    step.ScheduledProcedureStepID = ""
    step.ScheduledProcedureStepDescription = ""
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def _text(raw: object, vr: str, size: int, key: str, notes: list[str]) -> str:
    """One value checked against its VR: the first of several, no control characters, cut to ``size``."""
    if isinstance(raw, (MultiValue, list, tuple)):
        raw = raw[0] if len(raw) else None
    if raw is None:
        return ""
    if vr == "PN":
        groups = [_CONTROL.sub("", g).strip() for g in str(raw).split("=")[:3]]
        cut = [g[:size] for g in groups]
        if cut != groups:
            notes.append(f"{key} cut to {size} characters per name group")
        return "=".join(cut).rstrip("=")
    text = _CONTROL.sub("", str(raw)).replace("\\", "").strip()
    if vr == "UI":
        if text and (len(text) > size or not _UID.fullmatch(text)):
            notes.append(f"{key} {text[:70]!r} is not a UID: dropped")
            return ""
        return text
    if vr == "DA":
        return _iso_date(text, key, notes)
    if vr == "CS" and key == "sex":
        return text.upper() if text.upper() in ("M", "F", "O") else ""
    if len(text) > size:
        notes.append(f"{key} cut to {size} characters")
        text = text[:size].rstrip()
    return text


def _iso_date(text: str, key: str, notes: list[str]) -> str:
    if not text:
        return ""
    try:
        if not re.fullmatch(r"\d{8}", text):
            raise ValueError(text)
        return date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
    except ValueError:
        notes.append(f"{key} {text[:20]!r} is not a date: dropped")
        return ""


def _iso_start(step: Dataset, notes: list[str]) -> str:
    day = _iso_date(str(step.get("ScheduledProcedureStepStartDate") or "").strip(), "scheduledStart", notes)
    raw = str(step.get("ScheduledProcedureStepStartTime") or "").strip()
    match = re.fullmatch(r"(\d\d)(\d\d)?(\d\d)?(\.\d{1,6})?", raw)
    if not day or not match or int(match[1]) > 23 or int(match[2] or 0) > 59 or int(match[3] or 0) > 60:
        return day
    return f"{day}T{match[1]}:{match[2] or '00'}:{min(int(match[3] or 0), 59):02d}"


def parse_item(identifier: Dataset, notes: list[str] | None = None) -> dict:
    """One C-FIND answer as an item (``KEYS``); ValueError when it cannot be used."""
    notes = notes if notes is not None else []
    steps = identifier.get("ScheduledProcedureStepSequence")
    if not steps:
        raise ValueError("no Scheduled Procedure Step Sequence")
    step = steps[0]
    item = {key: _text(identifier.get(kw), vr, size, key, notes) for key, (kw, vr, size) in _TOP.items()}
    item.update({key: _text(step.get(kw), vr, size, key, notes) for key, (kw, vr, size) in _STEP.items()})
    item["scheduledStart"] = _iso_start(step, notes)
    if not item["accessionNumber"] and not item["scheduledProcedureStepId"]:
        raise ValueError("neither an accession number nor a scheduled procedure step id")
    return {key: item[key] for key in KEYS}


def _for_us(item: dict, *, ae_title: str, modality: str, day: date) -> bool:
    """Whether an answer is one we asked for (empty values: the worklist did not say)."""
    return ((not item["scheduledStationAeTitle"] or item["scheduledStationAeTitle"] == ae_title.strip())
            and (not item["modality"] or item["modality"] == modality)
            and (not item["scheduledStart"] or item["scheduledStart"][:10] == day.isoformat()))


def query(peer: Peer, *, ae_title: str, modality: str, timeout: float, day: date | None = None,
          max_items: int = MAX_ITEMS) -> Answer:
    """Today's (or ``day``'s) scheduled steps of this station at ``peer``; DimseError when it does not answer."""
    day = day or date.today()
    answer = Answer()
    skipped = foreign = 0
    with association(peer, ae_title=ae_title, timeout=timeout, contexts=[(MODEL, SYNTAXES)]) as assoc:
        if not any(c.abstract_syntax == MODEL for c in assoc.accepted_contexts):
            raise DimseError(f"{peer} does not offer the Modality Worklist Information Model", retryable=True)
        for status, identifier in assoc.send_c_find(request(ae_title, modality, day), MODEL):
            code = status.get("Status") if status is not None else None
            if code is None:
                check_established(assoc, peer)
                raise DimseError(f"{peer} sent no C-FIND answer within {timeout:g} s", retryable=True)
            if code == SUCCESS:
                break
            if code not in PENDING:
                raise DimseError(f"{peer} answered the worklist query with status 0x{code:04X} "
                                 f"({code_to_category(code)})", retryable=True)
            if len(answer.items) >= max_items:
                answer.notes.append(f"more than {max_items} items: kept the first {max_items}")
                assoc.abort()       # the rest is not read at all
                break
            notes: list[str] = []
            try:
                item = parse_item(identifier if identifier is not None else Dataset(), notes)
            except Exception as err:        # a malformed answer costs only itself
                skipped += 1
                answer.notes.append(f"an answer was skipped: {err}")
                continue
            if not _for_us(item, ae_title=ae_title, modality=modality, day=day):
                foreign += 1
                continue
            answer.notes += [f"item {item['accessionNumber'] or item['scheduledProcedureStepId']}: {n}"
                             for n in notes]
            answer.items.append(item)
    if foreign:
        answer.notes.append(f"{foreign} answer(s) for another station, modality or day were left out")
    return answer
