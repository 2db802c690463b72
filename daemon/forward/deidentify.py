"""De-identified copies for research and annotation platforms.

A target with ``deidentify = true`` (the default for eyened, v7 and
datamint; dicomweb and dimse archives default to false) gets a `Delivery` whose
context and ImageInfo carry no direct patient identifiers:

- the patient id becomes a **pseudonym**, ``P-`` and 20 hex digits of
  HMAC-SHA256(key, patient id): the same for every image of one patient (so
  they still group on the platform), different between patients, and not
  reversible without the key. It is written as ``patientId`` and, when the
  context named the patient, as ``patientName``;
- names, birth dates and other direct identifiers (ids, addresses, phone
  numbers, e-mail, insurance numbers, accession numbers, requested
  procedure and scheduled step ids, staff names, comments) are removed,
  under whatever key spelling the client used: keys are compared
  case-insensitively without ``_``/``-``/spaces, so ``patientName``,
  ``PatientName``, ``patient_name`` and ``name`` (also under a nested
  ``patient`` object) are all the same key;
- UIDs the context gives (``studyInstanceUid``...) are replaced by keyed
  ``2.25.`` UIDs, stable per value;
- dates (``studyDate``, ImageInfo's ``createdOn``, any ``...Date``/
  ``...DateTime`` key) follow ``deidentify_dates``: ``shift`` (the default)
  moves them all back by one per-patient number of days (1 to 730, from the
  same key), so intervals between one patient's images stay true while the
  calendar day, which an appointment book links to a person, is hidden;
  ``keep`` leaves them; ``remove`` drops them (and times), except
  ImageInfo's ``createdOn``, which every consumer needs: it becomes the
  dummy ``1900-01-01T00:00:00Z``;
- a last pass replaces what is left of an identifier inside any other text
  value (a study description naming the patient) with ``[removed]``, or the
  pseudonym for the id.

These are pure functions of the context, the ImageInfo and a key; the key is
32 random bytes in ``<state>/pseudonym.key`` (created mode 0600 on first
use) unless the target gives ``pseudonym_key``. Sex, laterality, tooth and
region are kept: they are what the images are about, not who.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from .platforms.base import Delivery

OPTION_KEYS = ("deidentify", "deidentify_dates", "pseudonym_key")
DEFAULT_ON = {"eyened": True, "v7": True, "datamint": True, "dicomweb": False, "dimse": False}
DATE_POLICIES = ("shift", "keep", "remove")
DEFAULT_DATES = "shift"
KEY_FILE = "pseudonym.key"
MAX_SHIFT_DAYS = 730
REMOVED = "[removed]"
DUMMY_CREATED = "1900-01-01T00:00:00Z"

_ID = {"patientid", "patientsid", "patientidentifier", "pid", "patientnumber", "patientno", "mrn",
       "medicalrecordnumber", "chartnumber", "recordnumber"}
_NAME = {"patientname", "patientsname", "name", "fullname", "firstname", "lastname", "givenname",
         "familyname", "surname", "middlename", "patientfirstname", "patientlastname", "patientgivenname",
         "patientfamilyname", "patientsurname", "patientmiddlename", "birthname", "patientbirthname",
         "patientsbirthname", "mothersmaidenname", "patientmothersbirthname", "othernames",
         "otherpatientnames", "alias", "nickname"}
_BIRTH = {"birthdate", "patientbirthdate", "patientsbirthdate", "dateofbirth", "dob", "birthday",
          "birthtime", "patientbirthtime", "patientsbirthtime", "patientdateofbirth"}
_OTHER = {"otherpatientids", "otherpatientidssequence", "issuerofpatientid", "address", "patientaddress",
          "patientsaddress", "street", "city", "zip", "zipcode", "postalcode", "phone", "phonenumber",
          "telephone", "mobile", "patienttelephonenumbers", "patientstelephonenumbers", "email",
          "emailaddress", "patientemail", "ssn", "socialsecuritynumber", "nationalid", "nationalidnumber",
          "nationalidentificationnumber", "insurancenumber", "insuranceid", "healthinsurancenumber",
          "passportnumber", "accessionnumber", "referringphysician", "referringphysicianname",
          "referringphysiciansname", "physician", "physicianname", "performingphysician",
          "performingphysicianname", "physiciansofrecord", "operator", "operatorname", "operatorsname",
          "dentist", "doctor", "patientcomments", "comments", "comment", "notes", "note",
          "additionalpatienthistory", "medicalalerts", "allergies", "occupation", "ethnicgroup",
          "patientethnicgroup", "medicalrecordlocator", "studyid",
          "requestedprocedureid", "scheduledprocedurestepid"}     # a worklist's ids lead back to the order
_PATIENT_PARENTS = {"patient", "patientinfo", "patientdata", "patientdetails"}
_DATE_NAMES = {"createdon", "acquiredon", "modifiedon", "timestamp"}


def _norm(key) -> str:
    return re.sub(r"[^a-z0-9]", "", str(key).lower())


# -- the key and the pseudonym ----------------------------------------------------------------------

def load_key(state_dir: Path) -> bytes:
    """The pseudonym key in ``state_dir``, created (0600, 32 random bytes, hex) on first use."""
    path = Path(state_dir) / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
    text = path.read_text().strip()
    if len(text) < 32:
        raise ValueError(f"{path} holds no usable key (expected 64 hex digits)")
    return text.encode()


@dataclass(frozen=True)
class Deidentifier:
    """A target's de-identification: its key and what happens to dates."""
    key: bytes
    dates: str = DEFAULT_DATES

    def _mac(self, purpose: str, value: str) -> bytes:
        return hmac.new(self.key, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()

    def pseudonym(self, identity: str) -> str:
        return "P-" + self._mac("patient", identity).hex()[:20]

    def shift_days(self, identity: str) -> int:
        """Days to move one patient's dates back: 1 to MAX_SHIFT_DAYS, the same every time."""
        return 1 + int.from_bytes(self._mac("date-shift", identity)[:4], "big") % MAX_SHIFT_DAYS

    def uid(self, value: str) -> str:
        return "2.25." + str(int.from_bytes(self._mac("uid", value)[:16], "big"))

    def apply(self, item: Delivery) -> Delivery:
        """``item`` with its context and ImageInfo de-identified (see the module docstring)."""
        context, image_info = deidentify(item.context, item.image_info, self)
        return dataclasses.replace(item, context=context, image_info=image_info, deidentified=self.dates)


def policy(target: str, kind: str, raw: dict, *, state_dir: Path | None) -> Deidentifier | None:
    """The Deidentifier for a [[forward.targets]] table, or None when its ``deidentify`` is off."""
    on = raw.get("deidentify", DEFAULT_ON.get(kind, True))
    if not isinstance(on, bool):
        raise ValueError(f"forward target {target!r}: deidentify must be true or false, got {on!r}")
    dates = raw.get("deidentify_dates", DEFAULT_DATES)
    if dates not in DATE_POLICIES:
        raise ValueError(f"forward target {target!r}: deidentify_dates must be one of "
                         f"{', '.join(DATE_POLICIES)}, got {dates!r}")
    given = raw.get("pseudonym_key")
    if given is not None and (not isinstance(given, str) or len(given.strip()) < 16):
        raise ValueError(f"forward target {target!r}: pseudonym_key must be a secret of at least 16 characters")
    if not on:
        return None
    if given is not None:
        return Deidentifier(given.strip().encode(), dates)
    if state_dir is None:
        raise ValueError(f"forward target {target!r}: deidentify needs a state folder or a pseudonym_key")
    return Deidentifier(load_key(state_dir), dates)


# -- the pure part ----------------------------------------------------------------------------------

def _kind(norm: str, parent: str) -> str | None:
    names = {norm, "patient" + norm} if parent in _PATIENT_PARENTS else {norm}
    for kind, keys in (("id", _ID), ("name", _NAME), ("birth", _BIRTH), ("other", _OTHER)):
        if names & keys:
            return kind
    return None


def _collect(obj, parent: str, found: dict[str, list]) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            norm = _norm(key)
            kind = _kind(norm, parent)
            if kind is not None and value not in (None, "") and not isinstance(value, (dict, list)):
                found[kind].append(value)
            _collect(value, norm, found)
    elif isinstance(obj, list):
        for value in obj:
            _collect(value, parent, found)


def _identity(found: dict[str, list]) -> str | None:
    if found["id"]:
        return "id:" + str(found["id"][0]).strip()
    if found["name"]:
        name = " ".join(re.split(r"[\s^,]+", str(found["name"][0]).casefold())).strip()
        birth = str(found["birth"][0]).strip() if found["birth"] else ""
        return f"name:{name}\0{birth}"
    return None


def _scrubber(found: dict[str, list], pseudonym: str | None):
    """A function that replaces what is left of the identifiers inside a text."""
    pairs: list[tuple[str, str]] = []
    for value in found["id"]:
        pairs.append((str(value).strip(), pseudonym or REMOVED))
    for value in found["name"] + found["other"]:
        text = str(value).strip()
        pairs.append((text, REMOVED))
        pairs.extend((part, REMOVED) for part in re.split(r"[\s^,]+", text) if len(part) >= 3)
    for value in found["birth"]:
        text = str(value).strip()
        pairs.append((text, REMOVED))
        parsed = _parse_date(text)
        if parsed is not None:
            day = parsed.date() if isinstance(parsed, datetime) else parsed
            pairs += [(day.isoformat(), REMOVED), (day.strftime("%Y%m%d"), REMOVED),
                      (day.strftime("%d.%m.%Y"), REMOVED), (day.strftime("%d/%m/%Y"), REMOVED),
                      (day.strftime("%m/%d/%Y"), REMOVED)]
    pairs = sorted({(a, b) for a, b in pairs if len(a) >= 3 and a != pseudonym}, key=lambda p: -len(p[0]))
    if not pairs:
        return lambda text: text
    lookup = {a.casefold(): b for a, b in pairs}
    pattern = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(re.escape(a) for a, _ in pairs) + r")(?![A-Za-z0-9])",
                         re.IGNORECASE)
    return lambda text: pattern.sub(lambda m: lookup.get(m.group(0).casefold(), REMOVED), text)


def _parse_date(text: str):
    text = text.strip()
    try:
        if re.fullmatch(r"\d{8}", text):
            return datetime.strptime(text, "%Y%m%d").date()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _shift(value, days: int):
    """``value`` (a date or date-time text) ``days`` earlier in its own format; None if not a date."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    parsed = _parse_date(text)
    if parsed is None:
        return None
    moved = parsed - timedelta(days=days)
    if re.fullmatch(r"\d{8}", text):
        return moved.strftime("%Y%m%d")
    if isinstance(moved, datetime):
        out = moved.isoformat()
        return out[:-6] + "Z" if text.endswith("Z") and out.endswith("+00:00") else out
    return moved.isoformat()


def _is_date_key(norm: str) -> bool:
    return norm.endswith("date") or norm.endswith("datetime") or norm in _DATE_NAMES


def _clean(obj, parent: str, deid: Deidentifier, pseudonym: str | None, days: int, scrub, *, rules: bool):
    """``obj`` de-identified: with ``rules``, identifier keys dropped (a patient id replaced by the
    pseudonym) and UIDs replaced; always dates per the policy and identifiers scrubbed from text."""
    if isinstance(obj, dict):
        out: dict = {}
        for key, value in obj.items():
            norm = _norm(key)
            kind = _kind(norm, parent) if rules else None
            if kind is not None:
                if kind == "id" and pseudonym is not None and (norm == "patientid" or norm == "patientsid"
                                                               or (norm == "id" and parent in _PATIENT_PARENTS)):
                    out[key] = pseudonym
                continue
            if rules and norm.endswith("uid") and isinstance(value, str) and value.strip():
                out[key] = deid.uid(value.strip())
                continue
            if _is_date_key(norm) and not isinstance(value, (dict, list)):
                if value in (None, "") or deid.dates == "keep":
                    out[key] = value
                elif deid.dates == "shift" and _shift(value, days) is not None:
                    out[key] = _shift(value, days)
                # "remove", or a "date" that is no date: left out
                continue
            if rules and deid.dates == "remove" and norm.endswith("time") and norm != "exposuretime" \
                    and not isinstance(value, (dict, list)):
                continue
            out[key] = _clean(value, norm, deid, pseudonym, days, scrub, rules=rules)
        return out
    if isinstance(obj, list):
        return [_clean(value, parent, deid, pseudonym, days, scrub, rules=rules) for value in obj]
    if isinstance(obj, str):
        return scrub(obj)
    return obj


def deidentify(context: dict, image_info: dict, deid: Deidentifier) -> tuple[dict, dict]:
    """The context and ImageInfo of a de-identified copy (pure; the inputs are not changed).

    The pseudonym and the date shift come from the patient id (in whatever
    spelling, in the context or else ImageInfo's acquisitionInfo.context);
    without one, from the name and birth date; without those the context
    names nobody and dates move by a shift of the key alone.
    """
    found: dict[str, list] = {"id": [], "name": [], "birth": [], "other": []}
    _collect(context, "", found)
    acquisition = image_info.get("acquisitionInfo")
    inner = acquisition.get("context") if isinstance(acquisition, dict) else None
    if isinstance(inner, dict):
        _collect(inner, "", found)
    identity = _identity(found)
    pseudonym = deid.pseudonym(identity) if identity is not None else None
    days = deid.shift_days(identity or "")
    scrub = _scrubber(found, pseudonym)

    def clean_context(ctx: dict) -> dict:
        out = _clean(ctx, "", deid, pseudonym, days, scrub, rules=True)
        if pseudonym is not None:
            out["patientId"] = pseudonym
            if found["name"]:
                out["patientName"] = pseudonym
        return out

    clean_info = _clean({k: v for k, v in image_info.items() if k != "acquisitionInfo"}, "", deid, pseudonym,
                        days, scrub, rules=False)
    if isinstance(acquisition, dict):
        clean_acq = _clean({k: v for k, v in acquisition.items() if k != "context"}, "acquisitioninfo", deid,
                           pseudonym, days, scrub, rules=False)
        if "context" in acquisition:
            clean_acq["context"] = clean_context(inner) if isinstance(inner, dict) else inner
        clean_info["acquisitionInfo"] = clean_acq
    elif "acquisitionInfo" in image_info:
        clean_info["acquisitionInfo"] = acquisition
    if deid.dates == "remove" and "createdOn" in image_info:
        clean_info["createdOn"] = DUMMY_CREATED     # ImageInfo needs one (PS3.15's "D": a dummy value)
    return clean_context(context), clean_info
