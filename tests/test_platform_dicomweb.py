"""The DICOMweb adapter: against a real Orthanc (tests/orthanc.py), and its wire formats on bytes."""
from __future__ import annotations

import dataclasses
import http
import json
import threading
import time
import uuid

import numpy as np
import pytest
import requests

from sensord.daemon.forward.delivery import Forwarder, Target
from sensord.daemon.forward.outbox import Outbox
from sensord.daemon.forward.platforms import (
    PermanentError,
    RetryableError,
    dicom,
    open_adapter,
)
from sensord.daemon.forward.platforms.dicomweb import (
    DicomWebAdapter,
    StowOutcome,
    multipart_related,
    parse_options,
    split_multipart,
    stow_outcome,
)
from sensord.filters.lut import Lut, lut_map, lut_unmap
from sensord.filters.pixel_hash import pixel_hash
from tests.support import images
from tests.support.delivery import make_delivery
from tests.support.loopback import closed_port_url, serving
from tests.support.orthanc import archive, orthanc  # noqa: F401  (fixtures)

# The lost-response test: the adapter's timeout, which its lookups through the proxy must beat
# on a loaded machine too; the STOW answer is held back until the test is done.
FAST = 3.0


def adapter(url, *, user="sensord", password="archive-secret", **extra) -> DicomWebAdapter:
    options = {"url": url, "institution": "Clinic Nord", "station": "OP-2", **extra}
    if user:
        options.update(username=user, password=password)
    return open_adapter("dicomweb", name="pacs", options=options)


def stored(archive) -> list:
    return [archive.instance_file(i) for i in archive.instances()]


# -- against Orthanc -----------------------------------------------------------

@pytest.mark.process
def test_stores_one_instance_with_the_same_pixels_and_tags(tmp_path, archive):
    item = make_delivery(tmp_path)
    receipt = adapter(archive.dicomweb).deliver(item)
    [ds] = stored(archive)
    pixels = images.decode(item.png_path.read_bytes())
    assert np.array_equal(ds.pixel_array, pixels)
    assert ds.SOPInstanceUID == f"2.25.{uuid.UUID(item.image_id).int}" == receipt["sopInstanceUid"]
    assert ds.StudyInstanceUID == receipt["studyInstanceUid"]
    assert ds.SeriesInstanceUID == receipt["seriesInstanceUid"]
    assert (ds.SOPClassUID, ds.Modality, ds.PatientID, str(ds.PatientName)) == (
        dicom.SOP_CLASS, "IO", "P-0001", "Doe^Jane")
    assert (ds.PhotometricInterpretation, ds.BitsStored, ds.ImageLaterality) == ("MONOCHROME1", 12, "L")
    assert (ds.InstitutionName, ds.StationName) == ("Clinic Nord", "OP-2")
    assert ds.PrimaryAnatomicStructureSequence[0].CodeMeaning == "Mandibular left first molar tooth"
    assert receipt["alreadyStored"] is False and receipt["verified"] is True
    assert receipt["pixelHash"] == item.image_info["pixelHash"]
    assert receipt["url"].startswith(archive.dicomweb + "/studies/")


@pytest.mark.process
def test_a_second_delivery_keeps_one_instance(tmp_path, archive):
    item = make_delivery(tmp_path)
    target = adapter(archive.dicomweb)
    target.deliver(item)
    target.deliver(item)                                          # sent again from scratch
    retry = target.deliver(dataclasses.replace(item, attempt=2))  # a retry looks first
    assert len(archive.instances()) == 1
    assert retry["alreadyStored"] is True


@pytest.mark.process
def test_a_lost_response_is_retried_into_one_instance(tmp_path, archive):
    stows = []
    done = threading.Event()

    def proxy(environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers.pop("Host", None)
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        answer = requests.request(method, archive.base + path, data=body, headers=headers, timeout=10)
        if method == "POST":
            stows.append(answer.status_code)
            done.wait(60)                                         # stored, but the answer comes too late
        start_response(f"{answer.status_code} {http.HTTPStatus(answer.status_code).phrase}",
                       [("Content-Type", answer.headers.get("Content-Type", "application/octet-stream"))])
        return [answer.content]

    item = make_delivery(tmp_path)
    with serving(proxy) as base:
        target = adapter(base + "/dicom-web", timeout=FAST)
        try:
            with pytest.raises(RetryableError, match="Timeout"):
                target.deliver(item)
            receipt = target.deliver(dataclasses.replace(item, attempt=2))
        finally:
            done.set()
    assert stows == [200]                                         # the retry did not send it again
    assert receipt["alreadyStored"] is True
    assert len(archive.instances()) == 1


@pytest.mark.process
def test_a_filtered_copy_goes_in_as_a_derived_image(tmp_path, archive):
    original = make_delivery(tmp_path)
    copy_id = str(uuid.uuid5(uuid.UUID(original.image_id), "select:edgePro"))
    copy = make_delivery(tmp_path, image_id=copy_id, height=100, width=150)
    # As forward.delivery.filtered_image describes a copy: the original's id, the copy's hash, the filter.
    copy = dataclasses.replace(copy, image_info={**copy.image_info, "id": original.image_id,
                                                 "filter": "select:edgePro"})
    target = adapter(archive.dicomweb)
    first, second = target.deliver(original), target.deliver(copy)
    assert first["studyInstanceUid"] == second["studyInstanceUid"]
    assert first["seriesInstanceUid"] != second["seriesInstanceUid"]
    assert second["pixelHash"] != original.image_info["pixelHash"]     # the copy's own pixels were checked
    derived = [ds for ds in stored(archive) if ds.SOPInstanceUID == second["sopInstanceUid"]][0]
    assert derived.ImageType[0] == "DERIVED" and (derived.Rows, derived.Columns) == (100, 150)


@pytest.mark.process
def test_the_forwarder_sends_the_acquired_image_and_its_unmapped_copy(tmp_path, archive):
    lut = Lut.from_info(images.LUT_INFO)
    mapped = lut_map(images.raw_image(120, 160), lut=lut)
    item = make_delivery(tmp_path)
    info = {**item.image_info, "lutInfo": dict(images.LUT_INFO),
            "pixelHash": pixel_hash(mapped, alg="MD5")}
    source = tmp_path / "mapped.png"
    source.write_bytes(images.png16(mapped))
    outbox = Outbox(tmp_path / "outbox")
    outbox.start()
    target = Target(name="pacs", kind="dicomweb", adapter=adapter(archive.dicomweb))
    forwarder = Forwarder(outbox, {"pacs": target}, work_dir=tmp_path / "work")
    forwarder.start()
    try:
        outbox.add([("pacs", "raw"), ("pacs", "unmap")], image_id=item.image_id, image_info=info,
                   context=item.context, png_path=source)
        forwarder.tick()
        deadline = time.monotonic() + 10
        while forwarder.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert outbox.counts() == {"delivered": 2}, [e.last_error for e in outbox.list()]
    finally:
        forwarder.close()
        outbox.close()
    by_sop = {ds.SOPInstanceUID: ds for ds in stored(archive)}
    acquired = by_sop[dicom.instance_uid(item.image_id)]
    copy = by_sop[dicom.instance_uid(str(uuid.uuid5(uuid.UUID(item.image_id), "unmap")))]
    assert (acquired.PhotometricInterpretation, acquired.BitsStored) == ("MONOCHROME2", 16)
    assert np.array_equal(acquired.pixel_array, mapped)
    assert (copy.PhotometricInterpretation, copy.BitsStored, copy.ImageType[0]) == ("MONOCHROME1", 12, "DERIVED")
    assert np.array_equal(copy.pixel_array, lut_unmap(mapped, lut=lut))
    assert copy.SourceImageSequence[0].ReferencedSOPInstanceUID == acquired.SOPInstanceUID


@pytest.mark.process
def test_an_instance_with_other_pixels_under_our_uid_is_a_permanent_error(tmp_path, archive):
    item = make_delivery(tmp_path)
    target = adapter(archive.dicomweb)
    target.deliver(item)
    (tmp_path / "other").mkdir()
    other = make_delivery(tmp_path / "other", image_id=item.image_id, height=100, width=150)
    with pytest.raises(PermanentError, match="pixels differ"):
        target.deliver(dataclasses.replace(other, attempt=2))


@pytest.mark.process
def test_without_readback_only_existence_is_checked(tmp_path, archive):
    item = make_delivery(tmp_path)
    target = adapter(archive.dicomweb, verify_readback=False)
    assert target.deliver(item)["verified"] is False
    assert target.deliver(dataclasses.replace(item, attempt=2))["alreadyStored"] is True
    assert len(archive.instances()) == 1


@pytest.mark.process
def test_bad_credentials_are_permanent(tmp_path, archive):
    with pytest.raises(PermanentError, match="401"):
        adapter(archive.dicomweb, password="wrong").deliver(make_delivery(tmp_path))
    assert archive.instances() == []


def test_an_image_that_does_not_match_its_hash_is_not_sent(tmp_path):
    item = make_delivery(tmp_path)
    info = {**item.image_info, "pixelHash": {"alg": "MD5", "hash": "0" * 32}}
    with pytest.raises(PermanentError, match="pixelHash"):      # before any request: the port is closed
        adapter(closed_port_url()).deliver(dataclasses.replace(item, image_info=info))


def test_a_refused_connection_is_retryable(tmp_path):
    with pytest.raises(RetryableError, match="ConnectionError"):
        adapter(closed_port_url()).deliver(make_delivery(tmp_path))


# -- against a scripted archive: answers Orthanc does not give -----------------

class Scripted:
    """A DICOMweb archive whose STOW answer a test sets; it stores what it is sent."""

    def __init__(self, status=200, answer=None, retry_after=None):
        self.status, self.answer, self.retry_after = status, answer, retry_after
        self.instances: dict[str, bytes] = {}

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            for part in split_multipart(body, environ["CONTENT_TYPE"]):
                self.instances[dicom.read_pixels(part)[0].SOPInstanceUID] = part
            headers = [("Content-Type", "application/dicom+json")]
            if self.retry_after is not None:
                headers.append(("Retry-After", str(self.retry_after)))
            start_response(f"{self.status} {http.HTTPStatus(self.status).phrase}", headers)
            return [json.dumps(self.answer or {}).encode()]
        sop = environ["PATH_INFO"].rsplit("/", 1)[-1]
        if sop not in self.instances:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b"{}"]
        body, content_type = multipart_related([self.instances[sop]], boundary="b-" + uuid.uuid4().hex)
        start_response("200 OK", [("Content-Type", content_type)])
        return [body]


def failed(sop: str, reason: int) -> dict:
    return {"00081198": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [sop]},
                                                 "00081197": {"vr": "US", "Value": [reason]}}]}}


def sop_of(item) -> str:
    return dicom.instance_uid(item.image_id)


@pytest.mark.parametrize("reason, error", [(0xA700, RetryableError), (0x0110, RetryableError),
                                           (0xC000, PermanentError), (0xA900, PermanentError)])
def test_failure_reasons_decide_retry_or_not(tmp_path, reason, error):
    item = make_delivery(tmp_path)
    fake = Scripted(status=409, answer=failed(sop_of(item), reason))
    with serving(fake) as base, pytest.raises(error, match=f"0x{reason:04X}"):
        adapter(base, user=None).deliver(item)


def test_a_duplicate_failure_means_already_stored(tmp_path):
    item = make_delivery(tmp_path)
    fake = Scripted(status=409, answer=failed(sop_of(item), 0x0111))
    with serving(fake) as base:
        receipt = adapter(base, user=None).deliver(item)
    assert receipt["alreadyStored"] is True and receipt["verified"] is True


def test_busy_archive_is_retried_when_it_says(tmp_path):
    fake = Scripted(status=503, retry_after=7)
    with serving(fake) as base, pytest.raises(RetryableError) as caught:
        adapter(base, user=None).deliver(make_delivery(tmp_path))
    assert caught.value.retry_after == 7


def test_a_stored_answer_without_the_instance_leaves_it_to_the_readback(tmp_path):
    item = make_delivery(tmp_path)
    fake = Scripted(status=200, answer={})
    with serving(fake) as base:
        assert adapter(base, user=None).deliver(item)["sopInstanceUid"] == sop_of(item)


# -- wire formats and options ----------------------------------------------------

def test_multipart_round_trip_with_preamble_and_epilogue():
    body, content_type = multipart_related([b"one\r\n--x", b"two"], boundary="XyZ")
    assert content_type == 'multipart/related; type="application/dicom"; boundary=XyZ'
    assert split_multipart(b"preamble\r\n" + body + b"epilogue", content_type) == [b"one\r\n--x", b"two"]
    with pytest.raises(ValueError, match="closing boundary"):
        split_multipart(body[:-8], content_type)
    with pytest.raises(ValueError, match="boundary"):
        split_multipart(body, "application/dicom")


def test_stow_outcome_reads_dicom_json():
    answer = {"00081199": {"vr": "SQ", "Value": [
        {"00081155": {"vr": "UI", "Value": ["1.2.3"]}, "00081196": {"vr": "US", "Value": [0xB000]}}]}}
    assert stow_outcome(json.dumps(answer).encode(), "1.2.3") == StowOutcome(True, None, 0xB000)
    assert stow_outcome(json.dumps(failed("1.2.4", 0xC000)).encode(), "1.2.4") == StowOutcome(False, 0xC000, None)
    assert stow_outcome(json.dumps(answer).encode(), "9.9") == StowOutcome(False, None, None)
    assert stow_outcome(b"<NativeDicomModel/>", "1.2.3") == StowOutcome(False, None, None)


def test_options_have_defaults():
    opts = parse_options("pacs", {"url": "http://pacs:8042/dicom-web/"})
    assert opts == {"url": "http://pacs:8042/dicom-web", "username": "", "password": "", "institution": "",
                    "station": "", "verify_readback": True, "timeout": 30.0}


@pytest.mark.parametrize("options, key", [
    ({}, "url"),
    ({"url": "ftp://pacs/dicom-web"}, "url"),
    ({"url": "http://pacs/dicom-web", "colour": "blue"}, "colour"),
    ({"url": "http://pacs/dicom-web", "username": "u"}, "password"),
    ({"url": "http://pacs/dicom-web", "password": "p"}, "username"),
    ({"url": "http://pacs/dicom-web", "station": "x" * 17}, "station"),
    ({"url": "http://pacs/dicom-web", "institution": 5}, "institution"),
    ({"url": "http://pacs/dicom-web", "verify_readback": "yes"}, "verify_readback"),
    ({"url": "http://pacs/dicom-web", "timeout": 0}, "timeout"),
    ({"url": "http://pacs/dicom-web", "timeout": True}, "timeout"),
])
def test_bad_options_are_refused_by_name(options, key):
    with pytest.raises(ValueError, match=key):
        open_adapter("dicomweb", name="pacs", options=options)
