"""The V7 Darwin adapter against a fake Darwin over real HTTP (tests/fake_v7.py)."""
from __future__ import annotations

import dataclasses
import hashlib

import cv2
import numpy as np
import pytest
import requests

from sensord.daemon.forward.platforms import (
    PermanentError,
    RetryableError,
    open_adapter,
)
from sensord.daemon.forward.platforms import v7
from sensord.daemon.forward.platforms.v7 import THUMBNAIL_BOX, THUMBNAIL_QUALITY, V7Adapter
from sensord.filters.lut import Lut
from sensord.filters.thumbnail import fit_inside, jpeg_preview
from tests.support import images
from tests.support.delivery import make_delivery
from tests.support.fake_v7 import FakeV7, Storage
from tests.support.loopback import closed_port_url, serving

FAST = 0.5        # adapter timeout (s) in fault tests
LATE = 1.2        # how long the fake holds an answer back: longer than FAST


@pytest.fixture
def bucket(tmp_path):
    folder = tmp_path / "bucket"
    folder.mkdir()
    return folder


def platform(bucket, *, readonly=False):
    return FakeV7(storages={"clinic-bucket": Storage(bucket, readonly=readonly)})


def adapter(base, mode="external", bucket=None, **extra):
    options = {"url": f"{base}/api/v2", "team_slug": "clinic", "api_key": "key-1", "dataset_slug": "xrays",
               "mode": mode, **extra}
    if mode == "external":
        options.setdefault("storage_name", "clinic-bucket")
        options.setdefault("storage_folder", str(bucket))
    return open_adapter("v7", name="darwin", options=options)


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


# -- happy paths --------------------------------------------------------------

def test_external_readwrite_writes_the_png_and_registers_it(tmp_path, bucket):
    fake = platform(bucket)
    item = make_delivery(tmp_path)
    with serving(fake.app) as base:
        receipt = adapter(base, bucket=bucket).deliver(item)
    key = f"sensord/{item.image_id}.png"
    assert (bucket / key).read_bytes() == item.png_path.read_bytes()
    assert not (bucket / "sensord" / "thumbnails").exists()
    [registered] = fake.items()
    assert (registered["path"], registered["name"]) == ("/sensord/P-0001", f"{item.image_id}.png")
    [slot] = registered["slots"]
    assert slot["storage_key"] == key and slot["type"] == "image"
    assert (slot["width"], slot["height"]) == (160, 120)
    [call] = fake.calls("register_existing")
    assert call["authorization"] == "ApiKey key-1"
    assert call["json"]["storage_slug"] == "clinic-bucket" and call["json"]["dataset_slug"] == "xrays"
    assert receipt == {"mode": "external", "dataset": "xrays", "path": "/sensord/P-0001",
                       "name": f"{item.image_id}.png", "storage_key": key, "duplicate": False,
                       "item_id": registered["id"], "status": "new"}
    assert item.progress == {"registered": {"duplicate": False, "item_id": registered["id"]}}


@pytest.mark.parametrize("lut_info, lut", [(None, None), (images.LUT_INFO, Lut.from_info(images.LUT_INFO)),
                                           (images.ZERO_LUT_INFO, None)])     # all zero: no LUT
def test_external_readonly_adds_our_own_thumbnail(tmp_path, bucket, lut_info, lut):
    fake = platform(bucket, readonly=True)
    item = make_delivery(tmp_path, height=400, width=600, context={"patientId": "P/7"})
    item = dataclasses.replace(item, image_info={**item.image_info, "lutInfo": lut_info})
    with serving(fake.app) as base:
        receipt = adapter(base, bucket=bucket, readonly=True, storage_prefix="xr/site1").deliver(item)
    [registered] = fake.items()
    [slot] = registered["slots"]
    thumb_key = f"xr/site1/thumbnails/{item.image_id}.jpg"
    assert slot["storage_thumbnail_key"] == thumb_key == receipt["thumbnail_key"]
    assert (slot["width"], slot["height"]) == (600, 400)
    assert registered["path"] == "/sensord/P_7"            # a slash in the id does not nest folders
    thumb = (bucket / thumb_key).read_bytes()
    assert thumb[:3] == b"\xff\xd8\xff"                    # a JPEG
    pixels = decode(thumb)
    assert pixels.dtype == np.uint8 and pixels.shape == (200, 300)
    # 12-bit raw grays: the LUT's 0..65535 output window leaves them dark, the automatic one spreads them
    assert pixels.mean() < 20 if lut else pixels.mean() > 60
    # The one preview function made it, in Darwin's box, windowed by the LutInfo read as everywhere.
    source = images.decode(item.png_path.read_bytes())
    assert thumb == jpeg_preview(source, lut=lut, box=THUMBNAIL_BOX, quality=THUMBNAIL_QUALITY)
    assert (bucket / f"xr/site1/{item.image_id}.png").read_bytes() == item.png_path.read_bytes()


def test_thumbnail_size_fits_the_box_and_never_enlarges():
    assert fit_inside(2400, 1708, box=THUMBNAIL_BOX) == (281, 200)
    assert fit_inside(1708, 2400, box=THUMBNAIL_BOX) == (142, 200)
    assert fit_inside(4000, 300, box=THUMBNAIL_BOX) == (356, 27)
    assert fit_inside(160, 120, box=THUMBNAIL_BOX) == (160, 120)


def test_an_all_zero_lut_info_gives_the_thumbnail_of_an_unmapped_image():
    pixels = images.raw_image(400, 600)
    unmapped = v7.thumbnail(pixels, {"lutInfo": None})
    assert v7.thumbnail(pixels, {"lutInfo": dict(images.ZERO_LUT_INFO)}) == unmapped
    assert v7.thumbnail(pixels, {"lutInfo": dict(images.LUT_INFO)}) != unmapped


def test_an_unusable_lut_info_costs_the_thumbnail_only_its_window(caplog):
    pixels = images.raw_image(400, 600)
    broken = {**images.LUT_INFO, "slope": 0.0}
    assert v7.thumbnail(pixels, {"lutInfo": broken}) == v7.thumbnail(pixels, {"lutInfo": None})
    assert "slope" in caplog.text


def test_direct_registers_signs_puts_and_confirms(tmp_path):
    fake = FakeV7()
    item = make_delivery(tmp_path)
    with serving(fake.app) as base:
        receipt = adapter(base, "direct").deliver(item)
    [registered] = fake.items()
    assert (registered["path"], registered["name"]) == ("/sensord/P-0001", f"{item.image_id}.png")
    assert registered["status"] == "new" and registered["data"] == item.png_path.read_bytes()
    assert [(c["method"], c["path"].rsplit("/", 1)[-1]) for c in fake.requests] == [
        ("POST", "register_upload"), ("GET", "sign"), ("PUT", receipt["upload_id"]), ("POST", "confirm"),
        ("GET", "datasets"), ("GET", "items")]              # delivered once the listing shows it complete
    assert item.progress == {"upload": {"item_id": registered["id"], "upload_id": receipt["upload_id"]},
                             "put": receipt["upload_id"], "confirmed": receipt["upload_id"]}
    [put] = fake.calls("/storage/")
    assert put["authorization"] is None                     # the key never goes to the storage host
    assert fake.calls("register_upload")[0]["json"] == {
        "dataset_slug": "xrays", "items": [{"path": "/sensord/P-0001", "name": f"{item.image_id}.png",
                                            "slots": [{"slot_name": "0", "file_name": f"{item.image_id}.png"}]}]}
    assert receipt["duplicate"] is False and receipt["item_id"] == registered["id"]


# -- faults -------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["external", "direct"])
def test_refused_connection_is_retryable(tmp_path, bucket, mode):
    with pytest.raises(RetryableError, match="ConnectionError"):
        adapter(closed_port_url(), mode, bucket=bucket).deliver(make_delivery(tmp_path))


def test_timeout_is_retryable(tmp_path, bucket):
    fake = platform(bucket)
    fake.slow(1, seconds=LATE)
    with serving(fake.app) as base, pytest.raises(RetryableError, match="Timeout"):
        adapter(base, bucket=bucket, timeout=FAST).deliver(make_delivery(tmp_path))


def test_server_error_is_retryable(tmp_path, bucket):
    fake = platform(bucket)
    fake.fail(1, status=500)
    with serving(fake.app) as base, pytest.raises(RetryableError, match="HTTP 500") as caught:
        adapter(base, bucket=bucket).deliver(make_delivery(tmp_path))
    assert caught.value.retry_after is None and fake.items() == []


def test_too_many_requests_carries_retry_after(tmp_path):
    fake = FakeV7()
    fake.throttle(1, retry_after=5, on="sign")
    with serving(fake.app) as base, pytest.raises(RetryableError, match="HTTP 429") as caught:
        adapter(base, "direct").deliver(make_delivery(tmp_path))
    assert caught.value.retry_after == 5


def test_bad_key_is_permanent(tmp_path, bucket):
    fake = platform(bucket)
    with serving(fake.app) as base, pytest.raises(PermanentError, match="HTTP 401"):
        adapter(base, bucket=bucket, api_key="wrong").deliver(make_delivery(tmp_path))
    assert fake.items() == []


def test_unknown_dataset_is_permanent(tmp_path):
    with serving(FakeV7().app) as base, pytest.raises(PermanentError, match="HTTP 404.*not found"):
        adapter(base, "direct", dataset_slug="other").deliver(make_delivery(tmp_path))


def test_readonly_storage_without_our_thumbnail_is_refused(tmp_path, bucket):
    """The platform's storage is read-only but the target was not told: V7 answers 400."""
    fake = platform(bucket, readonly=True)
    with serving(fake.app) as base, pytest.raises(PermanentError, match="HTTP 400.*storage_thumbnail_key"):
        adapter(base, bucket=bucket).deliver(make_delivery(tmp_path))
    assert fake.items() == []


@pytest.mark.parametrize("mode", ["external", "direct"])
def test_lost_answer_then_retry_gives_one_item_and_a_duplicate_receipt(tmp_path, bucket, mode):
    fake = platform(bucket)
    fake.lose(1, seconds=LATE, on="register_existing" if mode == "external" else "register_upload")
    item = make_delivery(tmp_path)
    with serving(fake.app) as base:
        target = adapter(base, mode, bucket=bucket, timeout=FAST)
        with pytest.raises(RetryableError, match="Timeout"):
            target.deliver(item)
        assert len(fake.items()) == 1                       # the platform did the work
        retry = adapter(base, mode, bucket=bucket, timeout=FAST)   # as after a restart
        receipt = retry.deliver(dataclasses.replace(item, attempt=2))
    [registered] = fake.items()
    assert receipt["duplicate"] is True and receipt["reason"] == "ALREADY_EXISTS"
    assert receipt["name"] == registered["name"] == f"{item.image_id}.png"
    assert receipt["status"] in ("processing", "new") and registered["status"] == "new"
    if mode == "direct":            # issue #12 (a): the upload id was lost with the answer: found, finished
        assert registered["data"] == item.png_path.read_bytes()
        assert len(fake.calls("/storage/")) == 1 and len(fake.uploads) == 1


def test_direct_lost_confirm_answer_is_resumed_by_the_same_adapter(tmp_path):
    fake = FakeV7()
    fake.lose(1, seconds=LATE, on="confirm")
    item = make_delivery(tmp_path)
    with serving(fake.app) as base:
        target = adapter(base, "direct", timeout=FAST)
        with pytest.raises(RetryableError, match="Timeout"):
            target.deliver(item)
        receipt = target.deliver(item)
    [registered] = fake.items()
    assert registered["data"] == item.png_path.read_bytes()
    assert receipt["resumed"] is True and receipt["upload_id"] in fake.uploads
    assert len(fake.calls("/storage/")) == 1 and len(fake.calls("confirm")) == 2   # no second PUT


@pytest.mark.parametrize("step", ["sign", "/storage/", "confirm"])
def test_direct_retry_finishes_an_upload_that_failed_midway(tmp_path, step):
    """A name that exists is not yet an image: the same adapter resumes its own upload."""
    fake = FakeV7()
    fake.fail(1, status=503, on=step)
    item = make_delivery(tmp_path)
    with serving(fake.app) as base:
        target = adapter(base, "direct")
        with pytest.raises(RetryableError, match="HTTP 503"):
            target.deliver(item)
        assert fake.items()[0]["status"] == "uploading"
        receipt = target.deliver(item)
    [registered] = fake.items()
    assert registered["status"] == "new" and registered["data"] == item.png_path.read_bytes()
    assert receipt["resumed"] is True and receipt["duplicate"] is False
    assert len(fake.calls("register_upload")) == 1 and len(fake.uploads) == 1     # resumed from progress


@pytest.mark.parametrize("mode", ["external", "direct"])
def test_blocked_for_another_reason_is_permanent(tmp_path, bucket, mode):
    fake = platform(bucket)
    fake.block_next("UNSUPPORTED_FILE_TYPE")
    item = make_delivery(tmp_path)
    with serving(fake.app) as base, pytest.raises(PermanentError) as caught:
        adapter(base, mode, bucket=bucket).deliver(item)
    message = str(caught.value)
    assert "1 item(s) blocked" in message and "UNSUPPORTED_FILE_TYPE" in message and item.image_id in message
    assert fake.items() == []


def test_signed_url_without_its_token_is_refused(tmp_path):
    fake = FakeV7()
    item = make_delivery(tmp_path)
    with serving(fake.app) as base:
        headers = {"Authorization": "ApiKey key-1"}
        body = {"dataset_slug": "xrays", "items": [{"name": "a.png", "path": "/",
                                                    "slots": [{"slot_name": "0", "file_name": "a.png"}]}]}
        registered = requests.post(f"{base}/api/v2/teams/clinic/items/register_upload", json=body,
                                   headers=headers, timeout=5).json()
        upload_id = registered["items"][0]["slots"][0]["upload_id"]
        items = f"{base}/api/v2/teams/clinic/items/uploads/{upload_id}"
        early = requests.post(f"{items}/confirm", headers=headers, json={}, timeout=5)
        url = requests.get(f"{items}/sign", headers=headers, timeout=5).json()["upload_url"]
        unsigned = requests.put(url.split("?")[0], data=b"x", timeout=5)
        forged = requests.put(url.split("?")[0] + "?X-Amz-Signature=guess", data=b"x", timeout=5)
        signed = requests.put(url, data=item.png_path.read_bytes(), timeout=5)
        late = requests.post(f"{items}/confirm", headers=headers, json={}, timeout=5)
    assert early.status_code == 400 and "UPLOAD_NOT_FOUND" in early.text   # confirm before PUT
    assert unsigned.status_code == forged.status_code == 403
    assert signed.status_code == 200 and late.status_code == 200
    assert fake.items()[0]["data"] == item.png_path.read_bytes()


def test_pixel_hash_mismatch_is_permanent_and_leaves_nothing(tmp_path, bucket):
    fake = platform(bucket)
    item = make_delivery(tmp_path)
    item = dataclasses.replace(item, image_info={**item.image_info, "pixelHash": {"alg": "MD5", "hash": "0" * 32}})
    with serving(fake.app) as base, pytest.raises(PermanentError, match="bucket object .* hash to MD5"):
        adapter(base, bucket=bucket).deliver(item)
    assert fake.requests == [] and list(bucket.rglob("*.png")) == [] and list(bucket.rglob(".*")) == []


def test_pixel_hash_is_checked_in_direct_mode_too(tmp_path):
    fake = FakeV7()
    pixels = images.raw_image(120, 160)
    good = hashlib.sha256(pixels.astype("<u2").tobytes()).hexdigest()
    item = make_delivery(tmp_path)
    with serving(fake.app) as base:
        target = adapter(base, "direct")
        with pytest.raises(PermanentError, match="SHA256"):
            target.deliver(dataclasses.replace(
                item, image_info={**item.image_info, "pixelHash": {"alg": "SHA256", "hash": "ab" * 32}}))
        assert fake.requests == []
        target.deliver(dataclasses.replace(
            item, image_info={**item.image_info, "pixelHash": {"alg": "SHA256", "hash": good}}))
    assert fake.items()[0]["status"] == "new"


def test_missing_context_for_the_path_is_permanent(tmp_path, bucket):
    item = make_delivery(tmp_path, context={"patientId": ""})
    with serving(FakeV7().app) as base, pytest.raises(PermanentError, match="'patientId'"):
        adapter(base, bucket=bucket, path="/clinic/{patientId}/{studyDate}").deliver(item)


# -- options ------------------------------------------------------------------

BASE = {"team_slug": "clinic", "api_key": "k", "dataset_slug": "xrays", "mode": "external",
        "storage_name": "b", "storage_folder": "/mnt/bucket"}


@pytest.mark.parametrize("change, key", [
    ({"team_slug": None}, "team_slug"),
    ({"api_key": ""}, "api_key"),
    ({"dataset_slug": 3}, "dataset_slug"),
    ({"mode": None}, "mode"),
    ({"mode": "s3"}, "mode"),
    ({"storage_name": None}, "storage_name"),
    ({"storage_folder": "relative/dir"}, "storage_folder"),
    ({"storage_prefix": "a/../b"}, "storage_prefix"),
    ({"readonly": "yes"}, "readonly"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": True}, "timeout"),
    ({"url": "ftp://host"}, "url"),
    ({"path": "/x/{patient.id}"}, "path"),
    ({"path": "/x/{patientId"}, "path"),
    ({"bucket": "b"}, "bucket"),
    ({"mode": "direct"}, "storage_name"),       # external-only options in direct mode
])
def test_bad_options_are_refused_naming_the_key(change, key):
    options = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=f"'{key}'"):
        V7Adapter(name="darwin", options=options)


def test_defaults():
    target = V7Adapter(name="darwin", options=BASE)
    assert target.kind == "v7"
    assert {k: target.opts[k] for k in ("url", "path", "storage_prefix", "readonly", "timeout")} == {
        "url": "https://darwin.v7labs.com/api/v2", "path": "/sensord/{patientId}",
        "storage_prefix": "sensord", "readonly": False, "timeout": 30.0}
    target.close()
