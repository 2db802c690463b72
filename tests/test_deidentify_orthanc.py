"""De-identification as a real archive sees it (issue #12): a dicomweb target
configured with ``deidentify = true`` (built by `build_targets`, as the
daemon builds it from [[forward.targets]]) forwards three images, two of one
patient and one of another, through the Forwarder into Debian's Orthanc; then
Orthanc's own REST API and its DICOMweb QIDO are asked what it stored.
"""
from __future__ import annotations

import time
import uuid

import pytest

from sensord.daemon.forward.delivery import Forwarder, build_targets
from sensord.daemon.forward.outbox import Outbox
from tests.support.delivery import make_delivery
from tests.support.orthanc import archive, orthanc  # noqa: F401  (fixtures)

pytestmark = pytest.mark.process

JANE = {"patientId": "P-0001", "patientName": "Doe^Jane", "birthDate": "1980-04-02", "sex": "F",
        "accessionNumber": "ACC-778812", "referringPhysician": "Smith^Ann"}
RICK = {"patientId": "P-0002", "patientName": "Roe^Rick", "birthDate": "1975-01-31", "sex": "M"}
SECRETS = ("P-0001", "P-0002", "Doe", "Jane", "Roe", "Rick", "19800402", "19750131", "ACC-778812", "Smith")


def forward(tmp_path, archive, contexts, dates):  # noqa: F811
    (tmp_path / "state").mkdir()                        # the daemon's state folder exists before the targets
    [target] = build_targets([{"name": "pacs", "kind": "dicomweb", "url": archive.dicomweb,
                               "username": archive.username, "password": archive.password,
                               "institution": "Clinic Doe", "deidentify": True, "deidentify_dates": dates}],
                             state_dir=tmp_path / "state").values()
    assert target.deid is not None
    outbox = Outbox(tmp_path / "outbox")
    outbox.start()
    forwarder = Forwarder(outbox, {"pacs": target}, work_dir=tmp_path / "work")
    forwarder.start()
    try:
        for context in contexts:
            item = make_delivery(tmp_path, image_id=str(uuid.uuid4()), context=context)
            outbox.add([("pacs", "raw")], image_id=item.image_id, image_info=item.image_info, context=item.context,
                       png_path=item.png_path)
        forwarder.tick()
        deadline = time.monotonic() + 20
        while (forwarder.in_flight or outbox.counts().get("pending")) and time.monotonic() < deadline:
            time.sleep(0.05)
            forwarder.tick()
        assert outbox.counts() == {"delivered": len(contexts)}, [e.last_error for e in outbox.list()]
    finally:
        forwarder.close()
        outbox.close()


@pytest.mark.parametrize("dates", ["shift", "remove"])
def test_orthanc_stores_only_pseudonyms_grouped_per_patient(tmp_path, archive, dates):  # noqa: F811
    forward(tmp_path, archive, [JANE, JANE, RICK], dates)
    http = archive.rest()
    patients = http.get(f"{archive.base}/patients", params={"expand": ""}, timeout=10).json()
    assert len(patients) == 2                               # the pseudonym groups one patient's images
    by_count = sorted(patients, key=lambda p: len(p["Studies"]))
    instances = {p["ID"]: http.get(f"{archive.base}/patients/{p['ID']}/instances", timeout=10).json()
                 for p in patients}
    assert sorted(len(found) for found in instances.values()) == [1, 2]
    seen_ids = set()
    for patient in by_count:
        tags = patient["MainDicomTags"]
        assert tags["PatientID"].startswith("P-") and len(tags["PatientID"]) == 22
        assert tags["PatientID"] not in ("P-0001", "P-0002")
        assert tags.get("PatientBirthDate", "") == ""
        seen_ids.add(tags["PatientID"])
        for instance in instances[patient["ID"]]:
            stored = http.get(f"{archive.base}/instances/{instance['ID']}/tags", params={"simplify": ""},
                              timeout=10).json()
            assert stored["PatientID"] == tags["PatientID"]
            assert stored["PatientName"].rstrip("^") == tags["PatientID"]
            assert stored.get("PatientBirthDate", "") == ""
            assert stored["PatientIdentityRemoved"] == "YES"
            assert "PS3.15" in stored["DeidentificationMethod"]
            assert "InstitutionName" not in stored
            assert stored.get("AccessionNumber", "") == "" and stored.get("ReferringPhysicianName", "") == ""
            if dates == "remove":
                assert stored["StudyDate"] == "19000101"
            leaked = [s for s in SECRETS if s.lower() in repr(stored).lower()]
            assert leaked == [], (leaked, stored)
            full = http.get(f"{archive.base}/instances/{instance['ID']}/file", timeout=10).content
            assert [s for s in SECRETS if s.encode() in full] == []          # nowhere in the stored file
    assert len(seen_ids) == 2
    # DICOMweb finds nothing under the real ids or name, and the studies under the pseudonyms.
    qido = {"Accept": "application/dicom+json"}
    for query in ({"PatientID": "P-0001"}, {"PatientID": "P-0002"}, {"PatientName": "Doe*"}):
        answer = http.get(f"{archive.dicomweb}/studies", params=query, headers=qido, timeout=10)
        assert answer.status_code in (200, 204) and (answer.status_code == 204 or answer.json() == [])
    for pseudonym in seen_ids:
        answer = http.get(f"{archive.dicomweb}/studies", params={"PatientID": pseudonym}, headers=qido, timeout=10)
        assert answer.status_code == 200 and len(answer.json()) == 1
