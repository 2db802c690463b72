"""The eyened adapter against a fake eyened platform over real HTTP."""
from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import datetime

import pytest

from sensord.daemon.forward.platforms import open_adapter
from sensord.daemon.forward.platforms.base import PermanentError, RetryableError
from sensord.daemon.forward.platforms.eyened import sop_instance_uid
from tests.support.delivery import make_delivery
from tests.support.fake_eyened import FakeEyened
from tests.support.loopback import closed_port_url, serving, serving_fake

_ROLLED_BACK_ERROR = "This Session's transaction has been rolled back due to a previous exception during flush."


def options(url, share, /, **changes):
    opts = {"url": url, "username": "sensord", "password": "s3cret", "image_base_folder": str(share),
            "project_name": "Dental", "modality": "ColorFundus", "source_info_id": 1,
            "device_instance_id": 1, "modality_id": 1, "timeout": 0.5}
    opts.update(changes)
    return {k: v for k, v in opts.items() if v is not None}


@pytest.fixture
def share(tmp_path):
    folder = tmp_path / "share"
    folder.mkdir()
    return folder


@pytest.fixture
def platform(share):
    """(fake, its URL); the fake serves images from the same share the adapter writes to."""
    with serving_fake(FakeEyened(share)) as served:
        yield served


@pytest.fixture
def adapter_for():
    made = []

    def make(url, share, **changes):
        adapter = open_adapter("eyened", name="lab", options=options(url, share, **changes))
        made.append(adapter)
        return adapter
    yield make
    for adapter in made:
        adapter.close()


def test_pixel_hash_prop_is_sent_when_configured(platform, share, adapter_for, tmp_path):
    fake, url = platform
    item = make_delivery(tmp_path)
    adapter_for(url, share, pixel_hash_prop="PixelHash").deliver(item)
    assert fake.images[0]["image_props"]["PixelHash"] == f"MD5:{item.image_info['pixelHash']['hash']}"


def test_delivery_places_the_file_and_imports_the_hierarchy(platform, share, adapter_for, tmp_path):
    fake, url = platform
    item = make_delivery(tmp_path)
    receipt = adapter_for(url, share, dicom_modality="OP").deliver(item)

    [record] = fake.images
    expected_path = f"sensord/P-0001/2026-11-23/{item.image_id}.png"
    assert record["DatasetIdentifier"] == expected_path
    assert record["bytes"] == item.png_path.read_bytes()
    assert not list(share.rglob(".*.tmp-*"))           # no temporary file left behind
    assert (record["project"], record["patient"], record["study_date"]) == ("Dental", "P-0001", "2026-11-23")
    assert fake.patients[("Dental", "P-0001")] == {"BirthDate": "1980-04-02", "Sex": "F"}
    assert fake.studies[("Dental", "P-0001", "2026-11-23")] == {"StudyDate": "2026-11-23",
                                                                "StudyDescription": "Bitewing"}
    props = record["image_props"]
    assert props["SOPInstanceUid"] == sop_instance_uid(item.image_id) == f"2.25.{uuid.UUID(item.image_id).int}"
    assert props["Modality"] == "ColorFundus" and props["DICOMModality"] == "OP" and props["Laterality"] == "L"
    assert (props["Rows_y"], props["Columns_x"]) == (120, 160)
    assert props["ResolutionHorizontal"] == props["ResolutionVertical"] == 0.015
    assert props["AcquisitionDateTime"] == "2026-11-23 10:15:00"
    assert "PixelHash" not in props                       # eyened knows no such property: off by default
    assert (props["SourceInfoID"], props["DeviceInstanceID"], props["ModalityID"]) == (1, 1, 1)
    assert receipt["image"] == expected_path and receipt["duplicate"] is False
    assert receipt["sop_instance_uid"] == props["SOPInstanceUid"]


def test_context_values_are_checked_and_kept_inside_the_share(platform, share, adapter_for, tmp_path):
    fake, url = platform
    item = make_delivery(tmp_path, context={"patientId": "../../etc/P 7", "studyDate": "23.11.2026",
                                            "laterality": "X", "birthDate": "unknown", "sex": None})
    adapter_for(url, share, subfolder="{target}/{patientId}/{tooth}/{region}",
                pixel_hash_prop="").deliver(item)

    [record] = fake.images
    assert record["DatasetIdentifier"] == f"t/etc_P_7/36/unknown/{item.image_id}.png"
    assert (share / record["DatasetIdentifier"]).is_file()
    assert record["study_date"] == "2026-11-23"            # from createdOn: the context's date is not ISO
    assert record["patient"] == "../../etc/P 7"              # the identifier itself is sent as is
    assert "Laterality" not in record["image_props"] and "PixelHash" not in record["image_props"]
    assert fake.patients[("Dental", "../../etc/P 7")] == {}


def test_an_image_without_patient_id_is_refused_before_anything_is_written(platform, share, adapter_for,
                                                                           tmp_path):
    fake, url = platform
    with pytest.raises(PermanentError, match="patientId"):
        adapter_for(url, share).deliver(make_delivery(tmp_path, context={"patientId": ""}))
    assert fake.images == [] and list(share.iterdir()) == []


def test_an_unmounted_share_is_retryable_and_not_created(platform, adapter_for, tmp_path):
    fake, url = platform
    missing = tmp_path / "not-mounted"
    with pytest.raises(RetryableError, match="not mounted"):
        adapter_for(url, missing).deliver(make_delivery(tmp_path))
    assert not missing.exists() and fake.import_calls == 0


def test_refused_connection_is_retryable(share, adapter_for, tmp_path):
    with pytest.raises(RetryableError, match="ConnectionError"):
        adapter_for(closed_port_url(), share).deliver(make_delivery(tmp_path))


def test_a_slow_platform_times_out_retryably(platform, share, adapter_for, tmp_path):
    fake, url = platform
    fake.faults.delay(2.0, path="/api/import")
    with pytest.raises(RetryableError, match="Timeout"):
        adapter_for(url, share).deliver(make_delivery(tmp_path))
    assert fake.images == []


def test_a_server_error_is_retryable(platform, share, adapter_for, tmp_path):
    fake, url = platform
    fake.faults.fail(status=500, path="/api/import")
    with pytest.raises(RetryableError, match="HTTP 500"):
        adapter_for(url, share).deliver(make_delivery(tmp_path))


def test_too_many_requests_carries_retry_after(platform, share, adapter_for, tmp_path):
    fake, url = platform
    fake.faults.fail(status=429, retry_after="7")
    with pytest.raises(RetryableError) as caught:
        adapter_for(url, share).deliver(make_delivery(tmp_path))
    assert caught.value.retry_after == 7


def test_bad_credentials_are_permanent(platform, share, adapter_for, tmp_path):
    fake, url = platform
    with pytest.raises(PermanentError, match="refuses user 'sensord'"):
        adapter_for(url, share, password="wrong").deliver(make_delivery(tmp_path))
    assert fake.import_calls == 0 and fake.unauthorized == 0


def test_an_expiring_token_is_renewed_before_it_runs_out(share, adapter_for, tmp_path):
    fake = FakeEyened(share, token_lifetime=1)
    with serving(fake.app) as url:
        adapter = adapter_for(url, share)
        adapter.deliver(make_delivery(tmp_path))
        time.sleep(1.05)                                      # past the token's lifetime
        adapter.deliver(make_delivery(tmp_path))
    assert len(fake.images) == 2
    assert fake.tokens_issued == 2 and fake.unauthorized == 0


def test_the_token_is_cached_between_deliveries(platform, share, adapter_for, tmp_path):
    fake, url = platform
    adapter = adapter_for(url, share)
    for _ in range(3):
        adapter.deliver(make_delivery(tmp_path))
    assert len(fake.images) == 3 and fake.tokens_issued == 1


def test_a_401_renews_the_token_once_and_retries(platform, share, adapter_for, tmp_path):
    fake, url = platform
    adapter = adapter_for(url, share)
    adapter.deliver(make_delivery(tmp_path))
    fake.revoke_tokens()                                      # the platform restarted with a new secret
    receipt = adapter.deliver(make_delivery(tmp_path))
    assert receipt["duplicate"] is False and len(fake.images) == 2
    assert fake.unauthorized == 1 and fake.tokens_issued == 2


def test_a_second_401_is_permanent(platform, share, adapter_for, tmp_path):
    fake, url = platform
    fake.reject_all_tokens = True
    with pytest.raises(PermanentError, match="401 with a renewed token"):
        adapter_for(url, share).deliver(make_delivery(tmp_path))
    assert fake.unauthorized == 2 and fake.tokens_issued == 2 and fake.images == []


def test_a_failed_import_is_permanent_with_the_servers_error(platform, share, adapter_for, tmp_path):
    fake, url = platform
    with pytest.raises(PermanentError, match="Project 'Implants' does not exist"):
        adapter_for(url, share, project_name="Implants").deliver(make_delivery(tmp_path))
    assert fake.images == [] and fake.import_calls == 1


def test_a_commit_error_keeps_the_exception_from_the_stack_trace(platform, share, adapter_for, tmp_path):
    fake, url = platform
    with pytest.raises(PermanentError) as caught:
        adapter_for(url, share, source_info_id=99).deliver(make_delivery(tmp_path))
    assert "rolled back" in str(caught.value) and "foreign key constraint fails (SourceInfoID)" in str(caught.value)


def test_a_share_the_platform_cannot_see_is_a_failure_not_a_duplicate(share, adapter_for, tmp_path):
    elsewhere = tmp_path / "platform-side"
    elsewhere.mkdir()
    fake = FakeEyened(elsewhere)
    with serving(fake.app) as url:
        item = make_delivery(tmp_path)
        with pytest.raises(PermanentError, match="No such file or directory"):
            adapter_for(url, share).deliver(item)
    assert fake.images == []


@pytest.mark.parametrize("patient", ["P-0001", "PATIENT-0001-OF-THE-NORTH-CLINIC"])   # the second: a path
def test_a_lost_response_then_retry_finds_the_image_there(platform, share, adapter_for, tmp_path, patient):
    fake, url = platform                                       # longer than the 64 characters MySQL reports
    adapter = adapter_for(url, share)
    item = make_delivery(tmp_path, context={"patientId": patient})
    fake.faults.lose(2.0, path="/api/import")
    with pytest.raises(RetryableError, match="Timeout"):
        adapter.deliver(item)
    assert len(fake.images) == 1                              # stored; only the answer was lost

    receipt = adapter.deliver(replace(item, attempt=2))
    assert receipt["duplicate"] is True
    assert receipt["image"] == fake.images[0]["DatasetIdentifier"]
    assert len(fake.images) == 1 and fake.import_calls == 2


def test_a_duplicate_found_only_by_uid_is_a_duplicate_too(platform, share, adapter_for, tmp_path):
    fake, url = platform
    item = make_delivery(tmp_path)
    adapter_for(url, share).deliver(item)
    again = adapter_for(url, share, subfolder="moved/{patientId}").deliver(item)   # another path, same UID
    assert again["duplicate"] is True and len(fake.images) == 1


def test_a_duplicate_of_another_row_is_retried_once(platform, share, adapter_for, tmp_path):
    fake, url = platform
    adapter = adapter_for(url, share)
    race = ("sqlalchemy.exc.IntegrityError: (pymysql.err.IntegrityError) (1062, \"Duplicate entry "
            "'1-P-0001' for key 'Patient.ProjectID_PatientIdentifier'\")")
    item = make_delivery(tmp_path)
    fake.fail_next_import(_ROLLED_BACK_ERROR, race)
    with pytest.raises(RetryableError, match="duplicate row"):
        adapter.deliver(item)
    fake.fail_next_import(_ROLLED_BACK_ERROR, race)
    with pytest.raises(PermanentError, match="Duplicate entry '1-P-0001'"):
        adapter.deliver(replace(item, attempt=2))
    assert fake.images == []


@pytest.mark.parametrize("changes, key", [
    ({"pasword": "x"}, "pasword"),
    ({"password": None}, "password"),
    ({"modality": "Dental"}, "modality"),
    ({"modality": None}, "modality"),
    ({"dicom_modality": "IO"}, "dicom_modality"),
    ({"source_info_id": "1"}, "source_info_id"),
    ({"create_patients": "yes"}, "create_patients"),
    ({"timeout": 0}, "timeout"),
    ({"url": "ftp://host"}, "url"),
    ({"subfolder": "/abs/{patientId}"}, "subfolder"),
    ({"subfolder": "a/../{patientId}"}, "subfolder"),
    ({"subfolder": "{patientId.__class__}"}, "subfolder"),
])
def test_options_are_checked_and_errors_name_the_key(tmp_path, changes, key):
    with pytest.raises(ValueError, match=f"target 'lab'.*'{key}'.*eyened"):
        open_adapter("eyened", name="lab", options=options("http://eyened.example", tmp_path, **changes))


def test_defaults_fill_the_optional_options(tmp_path):
    adapter = open_adapter("eyened", name="lab", options=options("http://eyened.example/", tmp_path,
                                                                 timeout=None))
    assert adapter.opts["timeout"] == 30.0 and adapter.opts["dicom_modality"] == "SC"
    assert adapter.opts["create_patients"] is adapter.opts["create_studies"] is True
    assert adapter.opts["subfolder"] == "sensord/{patientId}/{studyDate}"
    assert adapter.api == "http://eyened.example/api"
    adapter.close()


def test_the_acquisition_time_is_sent_in_utc(platform, share, adapter_for, tmp_path):
    fake, url = platform
    item = make_delivery(tmp_path)
    item.image_info["createdOn"] = "2026-11-23T23:30:00+02:00"
    adapter_for(url, share).deliver(item)
    sent = fake.images[0]["image_props"]["AcquisitionDateTime"]
    assert datetime.fromisoformat(sent) == datetime(2026, 11, 23, 21, 30)
