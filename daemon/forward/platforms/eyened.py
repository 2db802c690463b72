"""eyened: place the PNG on the platform's image share, then import it by path.

The eyened platform reads image files from its own image base folder
(IMAGES_BASEPATH), usually a network share that is also mounted on the
acquisition PC. A delivery therefore has two steps:

1. write the PNG under ``image_base_folder`` at ``<subfolder>/<image_id>.png``
   (a temporary name, fsync, rename; folders are created below the base
   folder, never the base folder itself: a missing base folder means the share
   is not mounted, and that is worth a retry, not a local copy);
2. ``POST {url}/api/import/image`` with the project / patient / study / series
   hierarchy and ``data.image`` = that path relative to the base folder,
   authenticated with a bearer token from ``POST {url}/api/auth/token``.

The import answers HTTP 200 even when it fails: ``success: false`` with the
server's ``error`` and (we always ask for it) ``stack_trace``. A second import
of the same path or ``SOPInstanceUid`` fails; both derive from the image id, so
after a lost response that failure means the image is there: the receipt says
``duplicate: true``. A duplicate of another row (two deliveries creating the
same new patient at once) is retried once; any other failure is permanent.

Each step's result is recorded in the outbox entry before the next: ``placed``
(the relative path, once the file is durable on the share) and ``imported``
(the import's answer: the receipt). A retry or a restart that finds
``imported`` returns that receipt without calling the platform; one that finds
``placed`` does not write the file again (unless it is gone from the share)
and goes on to the import, whose duplicate answer after a lost response still
means the image is there.

Options (``[[forward.targets]]`` with ``kind = "eyened"``):

==================  ========  ===============================================
url                 required  platform root; the API is under ``/api``
username, password  required  an API user of the platform
image_base_folder   required  local mount of the platform's IMAGES_BASEPATH
subfolder           optional  relative path pattern of ``{name}`` fields: the
                              context's, ``studyDate`` (always set), ``imageId``,
                              ``target``; values reduced to ``[A-Za-z0-9._-]``,
                              ``unknown`` when missing; default
                              ``sensord/{patientId}/{studyDate}``
project_name        required  an existing project (the server cannot create one)
modality            required  one of ``MODALITIES``: the platform knows no
                              dental modality, so the operator picks one
dicom_modality      optional  OP, OPT or SC; default SC
source_info_id      required  ids of rows that exist on the platform, stored as
device_instance_id  required  the image's SourceInfoID, DeviceInstanceID and
modality_id         required  ModalityID
create_patients     optional  bool, default true
create_studies      optional  bool, default true
pixel_hash_prop     optional  image_props key for ``"<alg>:<hash>"`` of the
                              pixels; default ``""`` (left out: eyened knows no
                              such property), e.g. ``PixelHash`` to send it
timeout             optional  seconds per HTTP call, default 30
deidentify          optional  bool, default true: a de-identified copy; the
                              pseudonym is the patient identifier and fills
                              ``{patientId}``; with ``deidentify_dates`` and
                              ``pseudonym_key``, see ``forward.deidentify``
==================  ========  ===============================================
"""
from __future__ import annotations

import re
import string
import threading
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path, PurePosixPath

import requests

from sensord.daemon.durable import write_atomic

from . import options as options_mod
from .base import (
    Adapter,
    Delivery,
    PermanentError,
    RetryableError,
    check_response,
    transport,
)
from .options import REQUIRED
from .options import checker as _checker

MODALITIES = ("AdaptiveOptics", "ColorFundus", "ColorFundusStereo", "RedFreeFundus", "ExternalEye",
              "LensPhotograph", "Ophthalmoscope", "Autofluorescence", "FluoresceinAngiography", "ICGA",
              "InfraredReflectance", "BlueReflectance", "GreenReflectance", "OCT", "OCTA")
DICOM_MODALITIES = ("OP", "OPT", "SC")
DEFAULT_SUBFOLDER = "sensord/{patientId}/{studyDate}"
TOKEN_MARGIN = 60.0          # renew this long before expiry (at most a tenth of the lifetime)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DUPLICATE = re.compile(r"duplicate|already exists?|unique constraint|uniqueviolation", re.IGNORECASE)
_DUPLICATE_ENTRY = re.compile(r"Duplicate entry '([^']*)'", re.IGNORECASE)


# -- options -------------------------------------------------------------------------------------

_text, _boolean = options_mod.text, options_mod.boolean
_integer = _checker(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
_seconds = _checker(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 3600,
                  "a number of seconds in (0, 3600)")
_prop_name = _checker(lambda v: isinstance(v, str) and (v == "" or v.isidentifier()), 'an identifier or ""')


def _one_of(choices):
    return _checker(lambda v: v in choices, f"one of {', '.join(choices)}")


def _url(value):
    if not isinstance(value, str) or not re.match(r"https?://[^/\s]+", value):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _subfolder(value):
    _text(value)
    for _literal, field, spec, conversion in string.Formatter().parse(value):
        if field is not None and (not field.isidentifier() or spec or conversion):
            raise ValueError(f"may only use plain {{name}} fields, got {value!r}")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise ValueError(f"must be a relative path without '..', got {value!r}")
    return value


OPTIONS = {
    "url": (_url, REQUIRED), "username": (_text, REQUIRED), "password": (_text, REQUIRED),
    "image_base_folder": (_text, REQUIRED), "subfolder": (_subfolder, DEFAULT_SUBFOLDER),
    "project_name": (_text, REQUIRED), "modality": (_one_of(MODALITIES), REQUIRED),
    "dicom_modality": (_one_of(DICOM_MODALITIES), "SC"), "source_info_id": (_integer, REQUIRED),
    "device_instance_id": (_integer, REQUIRED), "modality_id": (_integer, REQUIRED),
    "create_patients": (_boolean, True), "create_studies": (_boolean, True),
    "pixel_hash_prop": (_prop_name, ""), "timeout": (_seconds, 30),
}


def parse_options(target: str, options: dict) -> dict:
    """Checked options with defaults; ValueError names the target and the key."""
    return options_mod.parse("eyened", target, options, OPTIONS)


# -- the request, from the delivery (pure) ---------------------------------------------------------

def sop_instance_uid(image_id: str) -> str:
    """A DICOM UID under the UUID root 2.25, the same for every attempt of an image."""
    try:
        value = uuid.UUID(image_id)
    except ValueError:
        value = uuid.uuid5(uuid.NAMESPACE_URL, f"sensord:image:{image_id}")
    return f"2.25.{value.int}"


def _iso_date(value) -> str | None:
    try:
        return date.fromisoformat(value).isoformat() if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        return None


def _created(info: dict) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(info.get("createdOn")))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def study_date(item: Delivery) -> str:
    """The context's studyDate, else the day the image was made (UTC), else today."""
    found = _iso_date(item.context.get("studyDate"))
    if found:
        return found
    created = _created(item.image_info)
    return (created.date() if created else datetime.now(timezone.utc).date()).isoformat()


def relative_path(pattern: str, item: Delivery) -> str:
    """``<subfolder>/<image_id>.png`` below the base folder, as the platform stores it."""
    fields = {k: v for k, v in item.context.items() if v not in (None, "")}
    fields.update(studyDate=study_date(item), imageId=item.image_id, target=item.target)
    safe = _Fields({k: _segment(v) for k, v in fields.items()})
    return str(PurePosixPath(pattern.format_map(safe)) / _segment(item.filename))


def _segment(value) -> str:
    """One path segment: only [A-Za-z0-9._-], never empty, never '.' or '..'."""
    return _UNSAFE.sub("_", str(value)).strip("._") or "unknown"


class _Fields(dict):
    def __missing__(self, key):
        return "unknown"


def import_request(opts: dict, item: Delivery, image_path: str) -> dict:
    """The body of ``POST /api/import/image`` for ``item`` stored at ``image_path``."""
    ctx, info = item.context, item.image_info
    image_props = {
        "Modality": opts["modality"], "DICOMModality": opts["dicom_modality"],
        "SOPInstanceUid": sop_instance_uid(item.image_id), "PhotometricInterpretation": "MONOCHROME2",
        "SourceInfoID": opts["source_info_id"], "DeviceInstanceID": opts["device_instance_id"],
        "ModalityID": opts["modality_id"],
    }
    for prop, key in (("Rows_y", "height"), ("Columns_x", "width")):
        if isinstance(info.get(key), int) and not isinstance(info.get(key), bool):
            image_props[prop] = info[key]
    for prop, key in (("ResolutionHorizontal", "pixelSizeX"), ("ResolutionVertical", "pixelSizeY")):
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            image_props[prop] = float(value)                # mm per pixel, as both sides count it
    laterality = str(ctx.get("laterality") or "").upper()
    if laterality in ("L", "R"):
        image_props["Laterality"] = laterality
    created = _created(info)
    if created is not None:
        image_props["AcquisitionDateTime"] = created.strftime("%Y-%m-%d %H:%M:%S")   # UTC
    pixel_hash = info.get("pixelHash") or {}
    if opts["pixel_hash_prop"] and pixel_hash.get("hash"):
        image_props[opts["pixel_hash_prop"]] = f"{pixel_hash.get('alg', '')}:{pixel_hash['hash']}"

    patient_props = {}
    if _iso_date(ctx.get("birthDate")):
        patient_props["BirthDate"] = _iso_date(ctx["birthDate"])
    if str(ctx.get("sex") or "").upper() in ("M", "F"):
        patient_props["Sex"] = ctx["sex"].upper()
    day = study_date(item)
    study_props = {"StudyDate": day}
    if ctx.get("studyDescription"):
        study_props["StudyDescription"] = str(ctx["studyDescription"])

    return {
        "data": {
            "project_name": opts["project_name"], "patient_identifier": str(ctx["patientId"]),
            "patient_props": patient_props, "study_date": day, "study_props": study_props,
            "series_props": {}, "image": image_path, "image_props": image_props,
        },
        "options": {
            "create_patients": opts["create_patients"], "create_studies": opts["create_studies"],
            "create_series": True, "create_project": False, "include_stack_trace": True,
        },
    }


def names_this_image(text: str, names: tuple[str, ...]) -> bool:
    """Whether a duplicate report is about one of ``names`` (our path or UID).

    MySQL cuts the value in "Duplicate entry '...'" short, so a long enough
    prefix of one of our names counts too.
    """
    return any(name in text for name in names) or any(
        len(value) >= 20 and any(name.startswith(value) for name in names)
        for value in _DUPLICATE_ENTRY.findall(text))


# -- the adapter ---------------------------------------------------------------------------------

class EyenedAdapter(Adapter):
    kind = "eyened"

    def __init__(self, *, name: str, options: dict, http: requests.Session | None = None):
        self.opts = parse_options(name, options)
        super().__init__(name=name, options=options, http=http)
        self.api = self.opts["url"] + "/api"
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def deliver(self, item: Delivery) -> dict:
        if item.context.get("patientId") in (None, ""):
            raise PermanentError("eyened: the image has no patientId in its context; the import needs one")
        image_path = relative_path(self.opts["subfolder"], item)
        imported = item.progress.get("imported")
        if isinstance(imported, dict) and imported.get("image") == image_path:
            return {**imported, "resumed": True}            # imported before: nothing left to do
        base = Path(self.opts["image_base_folder"])
        placed = item.progress.get("placed") == image_path \
            and base.joinpath(*PurePosixPath(image_path).parts).is_file()
        if not placed:
            self._place(item, image_path)
            item.record("placed", image_path)
        body = import_request(self.opts, item, image_path)
        answer = self._call("POST", "/import/image", "eyened import", json=body)
        receipt = {"platform": "eyened", "image": image_path,
                   "sop_instance_uid": body["data"]["image_props"]["SOPInstanceUid"],
                   "project": self.opts["project_name"], "patient": body["data"]["patient_identifier"],
                   "study_date": body["data"]["study_date"]}
        done = self._outcome(answer, item, receipt)
        item.record("imported", done)
        return done

    # -- step 1: the file on the share

    def _place(self, item: Delivery, image_path: str) -> None:
        base = Path(self.opts["image_base_folder"])
        if not base.is_dir():
            raise RetryableError(f"eyened: image_base_folder {str(base)!r} is not a folder (share not mounted?)")
        try:
            data = item.png_path.read_bytes()
        except OSError as err:
            raise PermanentError(f"eyened: cannot read the image to deliver: {err}") from None
        dest = base.joinpath(*PurePosixPath(image_path).parts)
        try:
            if dest.is_file() and dest.stat().st_size == len(data) and dest.read_bytes() == data:
                return                              # placed by an earlier attempt
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(dest, data)
        except OSError as err:
            raise RetryableError(f"eyened: cannot write {str(dest)!r}: {err}") from None

    # -- step 2: the import call

    def _outcome(self, answer: requests.Response, item: Delivery, receipt: dict) -> dict:
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
            raise PermanentError(f"eyened import: unexpected answer: {answer.text[:300]!r}")
        if body["success"]:
            return {**receipt, "duplicate": False, "message": body.get("message"), "data": body.get("data")}
        error = str(body.get("error") or body.get("message") or "no error given")
        trace = str(body.get("stack_trace") or "")
        text = f"{error}\n{trace}"
        last = trace.strip().splitlines()[-1] if trace.strip() else ""
        detail = error if not last or last in error else f"{error} ({last[:300]})"
        names = (receipt["image"], receipt["sop_instance_uid"], item.image_id)
        scrubbed = text
        for name in (*names, receipt["patient"]):      # a patient id may well contain "duplicate"
            scrubbed = scrubbed.replace(name, "")
        if _DUPLICATE.search(scrubbed):
            if names_this_image(text, names):
                return {**receipt, "duplicate": True, "message": error}
            if item.attempt <= 1:     # another row (a patient or study created at the same time): once more
                raise RetryableError(f"eyened import failed on a duplicate row: {detail}")
        raise PermanentError(f"eyened import failed: {detail}")

    def _call(self, method: str, path: str, what: str, **kwargs) -> requests.Response:
        """An authenticated call: the token is renewed once on a 401, a second 401 is permanent."""
        for _ in range(2):
            token = self._bearer()
            response = self._send(method, self.api + path, what,
                                  headers={"Authorization": f"Bearer {token}"}, **kwargs)
            if response.status_code != 401:
                check_response(response, what)
                return response
            with self._lock:
                if self._token == token:
                    self._token = None
        raise PermanentError(f"{what}: HTTP 401 with a renewed token for {self.opts['username']!r}: "
                             f"{response.text[:200].strip()}")

    def _bearer(self) -> str:
        with self._lock:
            if self._token is not None and time.monotonic() < self._renew_at:
                return self._token
        asked = time.monotonic()
        response = self._send("POST", self.api + "/auth/token", "eyened token",
                              json={"username": self.opts["username"], "password": self.opts["password"]})
        if response.status_code in (401, 403):
            raise PermanentError(f"eyened token: HTTP {response.status_code}: the platform refuses "
                                 f"user {self.opts['username']!r} ({response.text[:200].strip()})")
        check_response(response, "eyened token")
        try:
            body = response.json()
            token = body["access_token"]
        except (ValueError, KeyError, TypeError):
            raise PermanentError(f"eyened token: unexpected answer: {response.text[:200]!r}") from None
        lifetime = body.get("expires_in")
        if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or lifetime <= 0:
            lifetime = 1800
        with self._lock:
            self._token = str(token)
            self._renew_at = asked + lifetime - min(TOKEN_MARGIN, lifetime / 10)
            return self._token

    def _send(self, method: str, url: str, what: str, **kwargs) -> requests.Response:
        try:
            return transport(lambda: self.http.request(method, url, timeout=self.opts["timeout"], **kwargs), what)
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as err:
            raise RetryableError(f"{what}: answer cut short: {err}") from None
        except requests.RequestException as err:
            raise PermanentError(f"{what}: {type(err).__name__}: {err}") from None


ADAPTER_CLASS = EyenedAdapter
