"""De-identified copies: the pure step, the key, the options, and what each platform receives.

Each platform test sends through a recording HTTP session and then searches
every request (method, URL, headers, body), every file the adapter wrote to
a share or bucket and the fake's own records for the patient's name, id and
birth date, in the spellings a client might use.
"""
from __future__ import annotations

import json
import stat
import uuid
from dataclasses import replace
from urllib.parse import unquote

import numpy as np
import pytest
import requests

from sensord.daemon.forward import deidentify
from sensord.daemon.forward.delivery import build_targets
from sensord.daemon.forward.platforms import dicom, dicom_deid, open_adapter
from tests.support.delivery import make_delivery
from tests.support.fake_eyened import FakeEyened
from tests.support.fake_v7 import FakeV7, Storage
from tests.support.loopback import serving, serving_fake

KEY = b"0123456789abcdef0123456789abcdef"
SECRETS = ("P-0001", "Doe", "Jane", "1980-04-02", "19800402", "02.04.1980", "Smith")
# One patient as a sloppy client may describe it: several spellings, and in ImageInfo too.
CONTEXT = {"PatientName": "Doe^Jane", "patient_name": "Jane Doe", "Patient_ID": "P-0001", "DOB": "02.04.1980",
           "referringPhysician": "Smith^Ann", "accessionNumber": "ACC-778812",
           "studyDescription": "Bitewing for Jane Doe"}


class Recording(requests.Session):
    """A requests session that keeps every request it sends."""
    def __init__(self):
        super().__init__()
        self.sent: list[bytes] = []

    def send(self, request, **kwargs):
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        head = f"{request.method} {request.url} {unquote(request.url)} {dict(request.headers)}".encode()
        self.sent.append(head + b"\n" + body)
        return super().send(request, **kwargs)


def item_for(tmp_path, *, patient="P-0001", name="Doe^Jane", image_id=None):
    item = make_delivery(tmp_path, image_id=image_id or str(uuid.uuid4()),
                         context={**CONTEXT, "patientId": patient, "patientName": name})
    info = dict(item.image_info)
    info["acquisitionInfo"] = {**info["acquisitionInfo"],
                               "context": {"tooth": "36", "patient_name": name, "PatientID": patient,
                                           "birth_date": "1980-04-02"}}
    return replace(item, image_info=info)


def deid(item, dates="shift"):
    return deidentify.Deidentifier(KEY, dates).apply(item)


def leaks(*blobs) -> list[str]:
    text = b"\n".join(b if isinstance(b, bytes) else str(b).encode() for b in blobs).decode("utf-8", "replace")
    return [s for s in SECRETS if s.lower() in text.lower()]


def files_below(folder) -> list:
    return [(str(p.relative_to(folder)), p.read_bytes() if p.is_file() else b"") for p in folder.rglob("*")]


# -- the pure step ------------------------------------------------------------------------------------

def test_identifiers_in_any_spelling_go_and_the_id_becomes_a_pseudonym(tmp_path):
    item = item_for(tmp_path)
    out = deid(item)
    assert leaks(json.dumps(out.context), json.dumps(out.image_info)) == []
    pseudonym = out.context["patientId"]
    assert pseudonym.startswith("P-") and len(pseudonym) == 22 and out.context["patientName"] == pseudonym
    assert out.image_info["acquisitionInfo"]["context"]["PatientID"] == pseudonym
    assert out.context["studyDescription"] == "Bitewing for [removed]"     # "Jane Doe", a whole name
    assert (out.context["sex"], out.context["tooth"], out.context["laterality"]) == ("F", "36", "L")
    assert out.deidentified == "shift" and item.deidentified is None
    assert item.context["patientName"] == "Doe^Jane"                     # the input is left alone
    assert out.image_info["pixelHash"] == item.image_info["pixelHash"]


def test_pseudonym_is_stable_per_patient_and_differs_between_patients(tmp_path):
    a1, a2 = deid(item_for(tmp_path)), deid(item_for(tmp_path))
    b = deid(item_for(tmp_path, patient="P-0002", name="Roe^Rick"))
    assert a1.context["patientId"] == a2.context["patientId"] != b.context["patientId"]
    other_key = deidentify.Deidentifier(b"another key of enough length!!", "shift").apply(item_for(tmp_path))
    assert other_key.context["patientId"] != a1.context["patientId"]


@pytest.mark.parametrize("dates", ["shift", "keep", "remove"])
def test_dates_follow_the_option(tmp_path, dates):
    item = item_for(tmp_path)
    out = deid(item, dates)
    created, study = out.image_info.get("createdOn"), out.context.get("studyDate")
    if dates == "keep":
        assert (created, study) == (item.image_info["createdOn"], "2026-11-23")
    elif dates == "remove":
        assert created == deidentify.DUMMY_CREATED and study is None
    else:
        days = deidentify.Deidentifier(KEY).shift_days("id:P-0001")
        assert 1 <= days <= deidentify.MAX_SHIFT_DAYS
        from datetime import date, timedelta
        assert study == (date(2026, 11, 23) - timedelta(days=days)).isoformat()
        assert created.startswith(study) and created.endswith("10:15:00Z")
        assert deid(item_for(tmp_path), "shift").context["studyDate"] == study     # per patient, stable
    assert "birthDate" not in out.context


def test_the_key_is_created_once_with_mode_0600(tmp_path):
    key = deidentify.load_key(tmp_path)
    path = tmp_path / deidentify.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 64
    assert deidentify.load_key(tmp_path) == key


def test_options_and_defaults_per_kind(tmp_path):
    base = {"eyened": {"url": "http://e", "username": "u", "password": "p", "image_base_folder": "/x",
                       "project_name": "D", "modality": "OCT", "source_info_id": 1, "device_instance_id": 1,
                       "modality_id": 1},
            "datamint": {"api_key": "k"},
            "v7": {"team_slug": "t", "api_key": "k", "dataset_slug": "d", "mode": "direct"},
            "dicomweb": {"url": "http://pacs/dicom-web"}}
    targets = build_targets([{"name": kind, "kind": kind, **opts} for kind, opts in base.items()],
                            state_dir=tmp_path)
    assert {n: t.deid is not None for n, t in targets.items()} == {
        "eyened": True, "datamint": True, "v7": True, "dicomweb": False}
    assert targets["v7"].deid.dates == "shift" and (tmp_path / "pseudonym.key").exists()
    changed = build_targets([{"name": "e", "kind": "eyened", "deidentify": False, **base["eyened"]},
                             {"name": "p", "kind": "dicomweb", "deidentify": True, "deidentify_dates": "keep",
                              "pseudonym_key": "a configured secret", **base["dicomweb"]}], state_dir=None)
    assert changed["e"].deid is None
    assert changed["p"].deid == deidentify.Deidentifier(b"a configured secret", "keep")
    for bad in ({"deidentify": "yes"}, {"deidentify_dates": "blur"}, {"pseudonym_key": "short"}):
        with pytest.raises(ValueError, match="forward target 'x'"):
            build_targets([{"name": "x", "kind": "datamint", **base["datamint"], **bad}], state_dir=tmp_path)
    for target in (*targets.values(), *changed.values()):
        target.adapter.close()


# -- what each platform receives ------------------------------------------------------------------------

def _eyened(tmp_path, items):
    share = tmp_path / "share"
    share.mkdir(exist_ok=True)
    http = Recording()
    with serving_fake(FakeEyened(share)) as (fake, url):
        adapter = open_adapter("eyened", name="lab", http=http, options={
            "url": url, "username": "sensord", "password": "s3cret", "image_base_folder": str(share),
            "project_name": "Dental", "modality": "ColorFundus", "source_info_id": 1, "device_instance_id": 1,
            "modality_id": 1, "timeout": 5})
        receipts = [adapter.deliver(item) for item in items]
        adapter.close()
    seen = (*http.sent, *files_below(share), repr(fake.images), repr(fake.patients), repr(fake.studies))
    return receipts, seen


def test_eyened_receives_only_pseudonyms_with_the_option_on(tmp_path):
    items = [deid(item_for(tmp_path)), deid(item_for(tmp_path)),
             deid(item_for(tmp_path, patient="P-0002", name="Roe^Rick"))]
    receipts, seen = _eyened(tmp_path, items)
    assert leaks(*seen) == []
    a1, a2, b = (r["patient"] for r in receipts)
    assert a1 == a2 == items[0].context["patientId"] != b
    assert receipts[0]["image"].startswith(f"sensord/{a1}/")


def test_eyened_unchanged_with_the_option_off(tmp_path):
    receipts, seen = _eyened(tmp_path, [item_for(tmp_path)])
    assert receipts[0]["patient"] == "P-0001" and "P-0001" in leaks(*seen)


@pytest.mark.parametrize("mode", ["external", "direct"])
@pytest.mark.parametrize("on", [True, False])
def test_v7_receives_only_pseudonyms_with_the_option_on(tmp_path, mode, on):
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    fake = FakeV7(storages={"clinic-bucket": Storage(bucket)})
    items = [item_for(tmp_path), item_for(tmp_path), item_for(tmp_path, patient="P-0002", name="Roe^Rick")]
    if on:
        items = [deid(item) for item in items]
    http = Recording()
    options = {"team_slug": "clinic", "api_key": "key-1", "dataset_slug": "xrays", "mode": mode}
    if mode == "external":
        options.update(storage_name="clinic-bucket", storage_folder=str(bucket))
    with serving(fake.app) as base:
        adapter = open_adapter("v7", name="darwin", http=http, options={"url": f"{base}/api/v2", **options})
        for item in items:
            adapter.deliver(item)
        adapter.close()
    paths = [registered["path"] for registered in fake.items()]
    seen = (*http.sent, *files_below(bucket), repr(fake.requests), repr(fake.items()))
    if on:
        assert leaks(*seen) == []
        assert sorted(paths) == sorted(f"/sensord/{i.context['patientId']}" for i in items)
        assert paths.count(paths[0]) in (1, 2) and len(set(paths)) == 2
    else:
        assert sorted(paths) == ["/sensord/P-0001", "/sensord/P-0001", "/sensord/P-0002"]


@pytest.mark.parametrize("on", [True, False])
def test_datamint_receives_only_pseudonyms_with_the_option_on(tmp_path, datamint, on):
    fake, url = datamint
    items = [item_for(tmp_path), item_for(tmp_path), item_for(tmp_path, patient="P-0002", name="Roe^Rick")]
    if on:
        items = [deid(item) for item in items]
    http = Recording()
    adapter = open_adapter("datamint", name="cloud", http=http,
                           options={"url": url, "api_key": "key-1", "tags": ["bitewing"], "timeout": 5})
    for item in items:
        adapter.deliver(item)
    adapter.close()
    contexts = [stored["metadata"]["context"] for stored in fake.resources]
    if on:
        assert leaks(*http.sent, repr(fake.resources)) == []
        assert contexts[0]["patientId"] == contexts[1]["patientId"] != contexts[2]["patientId"]
        assert contexts[0]["patientId"].startswith("P-") and contexts[0]["patientName"] == contexts[0]["patientId"]
    else:
        assert contexts[0] == items[0].context and contexts[0]["patientName"] == "Doe^Jane"


# -- DICOM: the PS3.15 step on the Dataset -----------------------------------------------------------

def _dataset(item):
    pixels = np.zeros((8, 8), np.uint16)
    ds = dicom.build_dataset(pixels, item.image_info, item.context, image_id=item.image_id,
                             institution="Clinic Doe", station="S1")
    if item.deidentified:
        dicom_deid.apply_profile(ds, dates=item.deidentified, pseudonym=item.context.get("patientId"))
    return ds


@pytest.mark.parametrize("dates", ["shift", "keep", "remove"])
def test_dicom_dataset_follows_the_basic_profile(tmp_path, dates):
    item = deid(item_for(tmp_path), dates)
    ds = _dataset(item)
    assert leaks(dicom.to_bytes(ds)) == []
    pseudonym = item.context["patientId"]
    assert ds.PatientName.family_name == ds.PatientID == pseudonym         # Type 2: replaced, not removed
    assert ds.StudyID and ds.StudyID == _dataset(item).StudyID              # Z's dummy, the same per study
    assert ds.PatientBirthDate == "" and ds.ReferringPhysicianName == "" and ds.AccessionNumber == ""
    assert "InstitutionName" not in ds and "StudyDescription" not in ds and ds.PatientSex == "F"
    assert ds.PatientIdentityRemoved == "YES" and "PS3.15" in ds.DeidentificationMethod
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert codes[:3] == ["113100", "113108", "113109"]
    assert codes[3:] == {"shift": ["113107"], "keep": ["113106"], "remove": []}[dates]
    assert all(c.CodingSchemeDesignator == "DCM" for c in ds.DeidentificationMethodCodeSequence)
    assert ds.LongitudinalTemporalInformationModified == dicom_deid.LONGITUDINAL[dates]
    if dates == "remove":
        assert (ds.StudyDate, ds.StudyTime, ds.ContentDate) == ("19000101", "000000", "")     # dummy, empty
        assert "AcquisitionDateTime" not in ds
    elif dates == "keep":
        assert ds.StudyDate == "20261123"
    else:
        assert ds.StudyDate != "20261123" and ds.ContentDate == ds.StudyDate
    assert dicom.read_pixels(dicom.to_bytes(ds))[0].PatientID == pseudonym     # still a readable instance
    other = _dataset(deid(item_for(tmp_path, patient="P-0002", name="Roe^Rick"), dates))
    again = _dataset(deid(item_for(tmp_path), dates))
    assert again.PatientID == ds.PatientID != other.PatientID
    assert again.StudyInstanceUID == ds.StudyInstanceUID != other.StudyInstanceUID


def test_dicom_dataset_unchanged_with_the_option_off(tmp_path):
    ds = _dataset(item_for(tmp_path))
    assert ds.PatientID == "P-0001" and str(ds.PatientName) == "Doe^Jane" and ds.PatientBirthDate == "19800402"
    assert "PatientIdentityRemoved" not in ds and ds.InstitutionName == "Clinic Doe"


def test_dicomweb_adapter_applies_the_profile_to_what_it_sends(tmp_path):
    adapter = open_adapter("dicomweb", name="pacs", options={"url": "http://127.0.0.1:9/dicom-web",
                                                             "institution": "Clinic Doe"})
    try:
        on = adapter._prepare(deid(item_for(tmp_path)))
        off = adapter._prepare(item_for(tmp_path))
    finally:
        adapter.close()
    assert leaks(on.data) == [] and b"Doe^Jane" in off.data
