"""Context and ImageInfo values as DICOM values, and the check that every text value fits its VR.

Pure helpers for ``dicom.py`` (the dataset) and ``dicom_anatomy.py`` (teeth,
laterality, orientation): how a client's loosely typed value (a date with or
without dashes, "female", a number) becomes the strict DICOM form, or a
ValueError naming the field. Separate because both builders use them and
they know nothing of the IOD's modules.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timezone, tzinfo

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VM
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import validate_value


def text(raw) -> str:
    return "" if raw is None else str(raw).strip()


def ds_number(value: float) -> str:
    """A Decimal String (DS) value."""
    return format(float(value), ".10g")


def created_time(raw, tz: tzinfo | None) -> datetime:
    """ImageInfo's ``createdOn`` (UTC when it names no zone) in the zone ``tz`` (None: this machine's)."""
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        raise ValueError(f"imageInfo.createdOn is not an ISO 8601 date-time: {raw!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(tz)


def as_date(raw, field: str) -> str:
    """A DA value (YYYYMMDD) from YYYY-MM-DD or YYYYMMDD (a time after it is ignored); "" for none."""
    if raw is None or raw == "":
        return ""
    match = re.fullmatch(r"(\d{4})-?(\d\d)-?(\d\d)(?:[T ].*)?", str(raw).strip())
    if match is None:
        raise ValueError(f"{field} is not a date (YYYY-MM-DD): {raw!r}")
    try:
        return date(int(match[1]), int(match[2]), int(match[3])).strftime("%Y%m%d")
    except ValueError:
        raise ValueError(f"{field} is not a date (YYYY-MM-DD): {raw!r}") from None


def as_time(raw, field: str) -> str:
    """A TM value from HH:MM[:SS[.ffffff]], colons optional; "" for none."""
    if raw is None or raw == "":
        return ""
    match = re.fullmatch(r"(\d\d):?(\d\d)(?::?(\d\d)(\.\d{1,6})?)?", str(raw).strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59 or int(match[3] or 0) > 60:
        raise ValueError(f"{field} is not a time (HH:MM[:SS]): {raw!r}")
    return "".join(part or "" for part in match.groups())


def as_sex(raw) -> str:
    """Patient's Sex (M, F, O) from a letter or word; "" (unknown) for anything else."""
    value = text(raw).upper()
    return {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F", "O": "O", "OTHER": "O"}.get(value, "")


def validate(ds: Dataset) -> None:
    """Every text value fits its VR (length, characters); a context value that does not is refused."""
    for element in ds.iterall():
        if element.VR not in _TEXT_VRS or element.value in ("", None):
            continue
        values = element.value if isinstance(element.value, MultiValue) else [element.value]
        if len(values) > 1 and dictionary_VM(element.tag) == "1":
            raise ValueError(f"{element.keyword}: a backslash would split the value: {element.value!r}")
        for value in map(str, values):
            if any(ord(c) < 32 for c in value) and element.VR not in ("LT", "ST", "UT"):
                raise ValueError(f"{element.keyword}: control characters are not allowed: {value!r}")
            try:
                validate_value(element.VR, value, pydicom_config.RAISE)
            except ValueError as err:
                raise ValueError(f"{element.keyword}: {err}") from None


_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
