"""DICOMweb archives (Orthanc, dcm4chee, a cloud PACS): STOW-RS, then a WADO-RS read-back.

Options (``[[forward.targets]]`` with ``kind = "dicomweb"``):

==================  ========================================================
url                 the DICOMweb root, e.g. ``http://pacs:8042/dicom-web``
username, password  HTTP Basic credentials (both or neither)
institution         Institution Name written in each instance (<= 64 chars)
station             Station Name (<= 16 chars)
verify_readback     decode the stored instance and compare its pixel hash
                    (default true); false only checks that it exists
timeout             seconds per HTTP request (default 30)
deidentify          a de-identified copy (default false): the context is
                    pseudonymised (`forward.deidentify`) and the instance
                    follows PS3.15's Basic Profile (`dicom_deid`); with
                    ``deidentify_dates`` and ``pseudonym_key``
==================  ========================================================

A delivery builds the instance (`daemon.platforms.dicom`: UIDs derive from
the image id and the context, so every attempt sends the same instance),
``POST {url}/studies`` (one ``application/dicom`` part), then reads it back
with ``GET {url}/studies/{study}/series/{series}/instances/{sop}`` and,
with ``verify_readback``, checks that the archive's pixels hash to what was
sent. A retry (attempt > 1) reads back first and skips the STOW when the
instance is already there: after a lost response the archive keeps one
instance (Orthanc ignores a second copy of a SOP Instance UID; a "duplicate"
failure reason, 0x0111, counts as stored, and the read-back decides).

The STOW-RS answer (DICOM JSON, PS3.18 10.5.3; HTTP 200, 202 when some
instances failed or carry warnings, 409 when none was stored) is read for our
SOP Instance UID: listed in Referenced SOP Sequence (0008,1199) it is stored,
and the result (retrieve URL (0008,1190), Warning Reason (0008,1196), logged)
is recorded as step ``stored`` before the read-back; a retry or a restart
that finds ``stored`` goes straight to the read-back, and one that does not
find the instance there forgets ``stored`` so the next attempt sends it again
(safe: the archive keeps one instance per SOP Instance UID). Listed in Failed
SOP Sequence (0008,1198), its Failure Reason (0008,1197) decides, see
``failure_is_retryable``. The WADO-RS read-back stays the proof of delivery.

The PNG is checked against ImageInfo's ``pixelHash`` before anything is
sent (for a filtered copy the forwarder gives the copy's own hash; see
`forward.delivery.filtered_image`), and the read-back is compared with it.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import urlsplit

import numpy as np
from werkzeug.http import parse_options_header

from sensord.filters.pixel_hash import pixel_hash

from . import dicom
from .base import (
    Adapter,
    Delivery,
    PermanentError,
    RetryableError,
    check_response,
    transport,
)
from .dicom_instance import checked_instance

DICOM_PART = "application/dicom"
ACCEPT_INSTANCE = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
# STOW-RS Failure Reason (0008,1197) values that a later attempt may get past. The codes are the
# Storage Service's C-STORE statuses (PS3.4 Table B.2-1) and the general DIMSE ones (PS3.7 Annex C),
# which PS3.18's STOW-RS response (10.5.3, its failure reason table) reuses:
#   0xA7xx  Refused: Out of Resources (PS3.4 B.2-1)                 -> retry
#   0x0110  Processing failure (PS3.7 C.4)                          -> retry
#   0x0213  Resource limitation (PS3.7 C.5)                         -> retry
#   0x0111  Duplicate SOP Instance (PS3.7 C.5)                      -> stored already; the read-back decides
#   0xA9xx  Error: Data Set does not match SOP Class (PS3.4 B.2-1)  -> permanent
#   0xCxxx  Error: Cannot understand (PS3.4 B.2-1); 0xC122 in PS3.18's STOW table: the
#           transfer syntax is not supported                        -> permanent
#   0x0122  Refused: SOP Class not supported (PS3.7 C.5)            -> permanent
#   0x0124  Refused: not authorized; any other code                 -> permanent
RETRYABLE_REASONS = {0x0110, 0x0213}
DUPLICATE_REASON = 0x0111

log = logging.getLogger("sensord.platforms.dicomweb")


def failure_is_retryable(code: int) -> bool:
    """Whether a STOW-RS Failure Reason (0008,1197) is worth another attempt (see the table above)."""
    return code in RETRYABLE_REASONS or 0xA700 <= code <= 0xA7FF


# -- wire formats (pure) ----------------------------------------------------
def multipart_related(parts: list[bytes], *, boundary: str, part_type: str = DICOM_PART) -> tuple[bytes, str]:
    """The body and Content-Type of a ``multipart/related`` request."""
    marker = f"--{boundary}".encode()
    body = b"".join(marker + f"\r\nContent-Type: {part_type}\r\n\r\n".encode() + part + b"\r\n" for part in parts)
    return body + marker + b"--\r\n", f'multipart/related; type="{part_type}"; boundary={boundary}'


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The bodies of the parts of a ``multipart/related`` answer (RFC 2046)."""
    mimetype, options = parse_options_header(content_type or "")
    boundary = options.get("boundary")
    if not mimetype.lower().startswith("multipart/") or not boundary:
        raise ValueError(f"expected a multipart answer with a boundary, got {content_type or 'no Content-Type'}")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    parts: list[bytes] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            return parts
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a multipart part has no header/body separator")
        parts.append(data)
    raise ValueError("multipart answer ends before its closing boundary")


@dataclass(frozen=True)
class StowOutcome:
    stored: bool            # listed in ReferencedSOPSequence (0008,1199)
    failure: int | None     # FailureReason (0008,1197) when listed in FailedSOPSequence (0008,1198)
    warning: int | None     # WarningReason (0008,1196) of a stored instance
    retrieve_url: str | None = None     # RetrieveURL (0008,1190) of a stored instance


def stow_outcome(body: bytes, sop_uid: str) -> StowOutcome:
    """What a STOW-RS answer (DICOM JSON, PS3.18 10.5.3) says about one instance."""
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        answer = {}
    if isinstance(answer, list):
        answer = answer[0] if answer else {}

    def values(item, tag):
        element = item.get(tag) if isinstance(item, dict) else None
        return element.get("Value") or [] if isinstance(element, dict) else []

    def first(item, tag):
        found = values(item, tag)
        return found[0] if found else None

    def code(item, tag):
        value = first(item, tag)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    for item in values(answer, "00081199"):
        if first(item, "00081155") == sop_uid:
            url = first(item, "00081190")
            return StowOutcome(True, None, code(item, "00081196") if code(item, "00081196") is not None
                               else code(answer, "00081196"), url if isinstance(url, str) else None)
    for item in values(answer, "00081198"):
        if first(item, "00081155") == sop_uid:
            return StowOutcome(False, code(item, "00081197") or 0x0110, None)
    return StowOutcome(False, None, None)


# -- the adapter ------------------------------------------------------------
@dataclass(frozen=True)
class Prepared:
    data: bytes
    study: str
    series: str
    sop: str
    alg: str
    digest: str


class DicomWebAdapter(Adapter):
    kind = "dicomweb"

    def __init__(self, *, name: str, options: dict, http=None):
        super().__init__(name=name, options=options, http=http)
        opts = parse_options(name, options)
        self.url = opts["url"]
        self.auth = (opts["username"], opts["password"]) if opts["username"] else None
        self.institution = opts["institution"]
        self.station = opts["station"]
        self.verify_readback = opts["verify_readback"]
        self.timeout = opts["timeout"]

    def deliver(self, item: Delivery) -> dict:
        prepared = self._prepare(item)
        stored = item.progress.get("stored")
        if not (isinstance(stored, dict) and stored.get("sop") == prepared.sop):
            stored = None
        if stored is not None or item.attempt > 1:
            found = self._read_back(prepared)
            if found is not None:
                return self._receipt(prepared, url=found, already_stored=True, stored=stored)
            if stored is not None:          # recorded as stored, yet not there: send it again next time
                item.record("stored", None)
                raise RetryableError(f"{self.name}: the archive stored instance {prepared.sop} (recorded) "
                                     f"but does not return it; it is sent again on the next attempt")
        outcome = self._stow(prepared)
        stored = None
        if outcome.stored or outcome.failure == DUPLICATE_REASON:
            stored = {"sop": prepared.sop, "duplicate": not outcome.stored, "url": outcome.retrieve_url,
                      "warning": None if outcome.warning is None else f"0x{outcome.warning:04X}"}
            item.record("stored", stored)
        found = self._read_back(prepared)
        if found is None:
            raise RetryableError(f"{self.name}: the archive accepted instance {prepared.sop} "
                                 f"but does not return it (yet)")
        return self._receipt(prepared, url=found, already_stored=outcome.failure == DUPLICATE_REASON,
                             stored=stored)

    # -- steps ---------------------------------------------------------------
    def _prepare(self, item: Delivery) -> Prepared:
        instance = checked_instance(item, target=self.name, institution=self.institution, station=self.station)
        ds = instance.dataset
        return Prepared(dicom.to_bytes(ds), ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                        instance.alg, instance.digest)

    def _stow(self, prepared: Prepared) -> StowOutcome:
        boundary = uuid.uuid4().hex
        body, content_type = multipart_related([prepared.data], boundary=boundary)
        what = f"{self.name}: STOW-RS of {prepared.sop}"
        response = transport(lambda: self.http.post(
            f"{self.url}/studies", data=body, auth=self.auth, timeout=self.timeout,
            headers={"Content-Type": content_type, "Accept": "application/dicom+json"}), what)
        if response.status_code not in (200, 202, 409):
            check_response(response, what)
        outcome = stow_outcome(response.content, prepared.sop)
        if outcome.warning is not None:
            log.warning("%s: stored with warning reason 0x%04X (HTTP %d)", what, outcome.warning,
                        response.status_code)
        if outcome.stored or outcome.failure == DUPLICATE_REASON:
            return outcome
        if outcome.failure is not None:
            reason = f"failure reason 0x{outcome.failure:04X}"
            if failure_is_retryable(outcome.failure):
                raise RetryableError(f"{what}: {reason}")
            raise PermanentError(f"{what}: refused, {reason}")
        check_response(response, what)     # a 409 that does not name the instance
        return outcome                      # a 2xx that does not: the read-back decides

    def _read_back(self, prepared: Prepared) -> str | None:
        """The instance's URL if the archive has it (with the same pixels when verifying), else None."""
        url = f"{self.url}/studies/{prepared.study}/series/{prepared.series}/instances/{prepared.sop}"
        what = f"{self.name}: WADO-RS of {prepared.sop}"
        if self.verify_readback:
            target, accept = url, ACCEPT_INSTANCE
        else:
            target, accept = f"{url}/metadata", "application/dicom+json"
        response = transport(lambda: self.http.get(target, auth=self.auth, timeout=self.timeout,
                                                   headers={"Accept": accept}), what)
        if response.status_code in (204, 404):
            return None
        check_response(response, what)
        if self.verify_readback:
            self._verify(prepared, response, what)
        return url

    def _verify(self, prepared: Prepared, response, what: str) -> None:
        try:
            parts = split_multipart(response.content, response.headers.get("Content-Type", ""))
            if not parts:
                raise ValueError("no part in the answer")
            ds, pixels = dicom.read_pixels(parts[0])
        except Exception as err:        # whatever pydicom or the archive's encoding throws
            raise PermanentError(f"{what}: cannot decode the stored instance ({err}); "
                                 f"set verify_readback = false to only check that it exists") from None
        if ds.SOPInstanceUID != prepared.sop:
            raise PermanentError(f"{what}: the archive returned instance {ds.SOPInstanceUID}")
        pixels = np.asarray(pixels)
        gray16 = pixels.dtype == np.uint16 and pixels.ndim == 2 and pixels.size > 0
        digest = pixel_hash(pixels, alg=prepared.alg)["hash"] if gray16 else f"{pixels.dtype} {pixels.shape}"
        if digest != prepared.digest:
            raise PermanentError(f"{what}: the archive's pixels differ from the image's "
                                 f"({prepared.alg} {digest}, expected {prepared.digest})")

    def _receipt(self, prepared: Prepared, *, url: str, already_stored: bool, stored: dict | None = None) -> dict:
        receipt = {"studyInstanceUid": prepared.study, "seriesInstanceUid": prepared.series,
                   "sopInstanceUid": prepared.sop, "url": url, "alreadyStored": already_stored,
                   "verified": self.verify_readback,
                   "pixelHash": {"alg": prepared.alg, "hash": prepared.digest}}
        if stored is not None:
            if stored.get("warning"):
                receipt["warningReason"] = stored["warning"]
            if stored.get("url"):
                receipt["retrieveUrl"] = stored["url"]
        return receipt


class DicomWebOptions(TypedDict):
    url: str                    # the DICOMweb root, without a trailing slash
    username: str               # "" for no authentication
    password: str
    institution: str
    station: str
    verify_readback: bool
    timeout: float              # seconds


def parse_options(name: str, options: dict) -> DicomWebOptions:
    """Checked options with defaults; ValueError names the key."""
    where = f"dicomweb target {name!r}"
    known = {"url", "username", "password", "institution", "station", "verify_readback", "timeout"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{where}: unknown option {unknown[0]!r} (known: {', '.join(sorted(known))})")
    url = options.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{where}: url is required (the DICOMweb root, e.g. http://pacs:8042/dicom-web)")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{where}: url must be an http(s) URL without query, got {url!r}")
    text: dict[str, str] = {}
    for key, limit in (("username", None), ("password", None), ("institution", 64), ("station", 16)):
        value = options.get(key, "")
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key} must be a string")
        if limit is not None and (len(value) > limit or "\\" in value or any(ord(c) < 32 for c in value)):
            raise ValueError(f"{where}: {key} must be at most {limit} characters, without backslashes")
        text[key] = value
    if bool(text["username"]) != bool(text["password"]):
        missing = "password" if text["username"] else "username"
        other = "username" if missing == "password" else "password"
        raise ValueError(f"{where}: {missing} is required with {other}")
    verify = options.get("verify_readback", True)
    if not isinstance(verify, bool):
        raise ValueError(f"{where}: verify_readback must be true or false")
    timeout = options.get("timeout", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"{where}: timeout must be a positive number of seconds")
    return DicomWebOptions(url=url.strip().rstrip("/"), username=text["username"], password=text["password"],
                           institution=text["institution"], station=text["station"],
                           verify_readback=verify, timeout=float(timeout))


ADAPTER_CLASS = DicomWebAdapter
