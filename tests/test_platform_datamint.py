"""The Datamint adapter against a fake Datamint API over real HTTP."""
from __future__ import annotations

from dataclasses import replace

import pytest

from sensord.daemon.forward.platforms import open_adapter
from sensord.daemon.forward.platforms.base import PermanentError, RetryableError
from tests.support.delivery import make_delivery
from tests.support.loopback import closed_port_url


def options(url, /, **changes):
    opts = {"url": url, "api_key": "key-1", "channel": "clinic-a", "tags": ["bitewing", "sensord"],
            "publish": True, "timeout": 0.5}
    opts.update(changes)
    return {k: v for k, v in opts.items() if v is not None}


@pytest.fixture
def platform(datamint):
    return datamint


@pytest.fixture
def adapter_for():
    made = []

    def make(url, **changes):
        adapter = open_adapter("datamint", name="cloud", options=options(url, **changes))
        made.append(adapter)
        return adapter
    yield make
    for adapter in made:
        adapter.close()


def test_delivery_uploads_the_png_with_its_fields(platform, adapter_for, tmp_path):
    fake, url = platform
    item = make_delivery(tmp_path)
    receipt = adapter_for(url).deliver(item)

    [stored] = fake.resources
    assert stored["bytes"] == item.png_path.read_bytes()
    assert stored["filename"] == f"{item.image_id}.png" and stored["content_type"] == "image/png"
    assert stored["source_filepath"] == f"sensord/{item.image_id}.png" and stored["mimetype"] == "image/png"
    assert stored["upload_channel"] == "clinic-a" and stored["modality"] == "IO"
    assert stored["tags"] == ["bitewing", "sensord"]
    assert stored["status"] == "published" and stored["upload_mechanism"] == "api"
    meta = stored["metadata"]
    assert meta["imageId"] == item.image_id and meta["context"] == item.context
    assert meta["pixelHash"] == item.image_info["pixelHash"]
    assert meta["imageInfo"]["width"] == 160 and meta["imageInfo"]["pixelSizeX"] == 0.015
    assert meta["imageInfo"]["sensorInfo"]["serialNumber"] == "SU2-1"
    assert receipt == {"platform": "datamint", "id": stored["id"], "filename": stored["filename"],
                       "source_filepath": stored["source_filepath"], "duplicate": False}
    assert fake.lookup_calls == 1                             # it looks before every upload


def test_defaults_leave_the_resource_in_the_inbox_without_tags_or_channel(platform, adapter_for, tmp_path):
    fake, url = platform
    adapter_for(url, channel=None, tags=None, publish=None, modality="DX").deliver(make_delivery(tmp_path))
    [stored] = fake.resources
    assert stored["status"] == "inbox" and stored["tags"] == [] and stored["upload_channel"] is None
    assert stored["modality"] == "DX"


def test_refused_connection_is_retryable(adapter_for, tmp_path):
    with pytest.raises(RetryableError, match="ConnectionError"):
        adapter_for(closed_port_url()).deliver(make_delivery(tmp_path))


def test_a_slow_platform_times_out_retryably(platform, adapter_for, tmp_path):
    fake, url = platform
    fake.faults.delay(2.0)
    with pytest.raises(RetryableError, match="Timeout"):
        adapter_for(url).deliver(make_delivery(tmp_path))
    assert fake.resources == []


def test_a_server_error_is_retryable(platform, adapter_for, tmp_path):
    fake, url = platform
    fake.faults.fail(status=502)
    with pytest.raises(RetryableError, match="HTTP 502"):
        adapter_for(url).deliver(make_delivery(tmp_path))


def test_too_many_requests_carries_retry_after(platform, adapter_for, tmp_path):
    fake, url = platform
    fake.faults.fail(status=429, retry_after="7")
    with pytest.raises(RetryableError) as caught:
        adapter_for(url).deliver(make_delivery(tmp_path))
    assert caught.value.retry_after == 7


def test_a_bad_api_key_is_permanent(platform, adapter_for, tmp_path):
    fake, url = platform
    with pytest.raises(PermanentError, match="HTTP 403.*invalid api key"):
        adapter_for(url, api_key="key-2").deliver(make_delivery(tmp_path))
    assert fake.resources == []


def test_an_error_answer_is_permanent_with_its_message(platform, adapter_for, tmp_path):
    fake, url = platform
    fake.refuse_next("Storage quota exceeded for customer")
    with pytest.raises(PermanentError, match="Storage quota exceeded for customer"):
        adapter_for(url).deliver(make_delivery(tmp_path))
    assert fake.resources == []


def test_a_lost_response_then_retry_keeps_exactly_one_resource(platform, adapter_for, tmp_path):
    fake, url = platform
    adapter = adapter_for(url)
    item = make_delivery(tmp_path)
    fake.faults.lose(2.0, path="/resources", method="POST")
    with pytest.raises(RetryableError, match="Timeout"):
        adapter.deliver(item)
    assert len(fake.resources) == 1                           # stored; only the answer was lost

    receipt = adapter.deliver(replace(item, attempt=2))
    assert len(fake.resources) == 1 and fake.upload_calls == 1
    assert receipt["duplicate"] is True and receipt["id"] == fake.resources[0]["id"]
    assert fake.lookups[-1]["filename"] == item.filename


def test_a_retry_uploads_when_only_similar_names_exist(platform, adapter_for, tmp_path):
    fake, url = platform
    item = make_delivery(tmp_path)
    fake.add(f"copy-of-{item.filename}")                      # contains the name: the query finds it
    fake.add(item.filename, deleted=True)                     # ours, but deleted by an operator
    receipt = adapter_for(url).deliver(replace(item, attempt=3))
    assert receipt["duplicate"] is False and fake.lookup_calls == 1
    assert len(fake.resources) == 3 and fake.resources[-1]["id"] == receipt["id"]


def test_a_failing_lookup_is_retryable_and_uploads_nothing(platform, adapter_for, tmp_path):
    fake, url = platform
    fake.faults.fail(status=503, path="/resources")
    with pytest.raises(RetryableError, match="datamint lookup: HTTP 503"):
        adapter_for(url).deliver(replace(make_delivery(tmp_path), attempt=2))
    assert fake.upload_calls == 0


@pytest.mark.parametrize("changes, key", [
    ({"apikey": "x"}, "apikey"),
    ({"api_key": None}, "api_key"),
    ({"api_key": ""}, "api_key"),
    ({"url": "api.datamint.io"}, "url"),
    ({"tags": "a,b"}, "tags"),
    ({"tags": ["a,b"]}, "tags"),
    ({"publish": "true"}, "publish"),
    ({"timeout": -1}, "timeout"),
    ({"channel": 7}, "channel"),
])
def test_options_are_checked_and_errors_name_the_key(changes, key):
    with pytest.raises(ValueError, match=f"target 'cloud'.*'{key}'.*datamint"):
        open_adapter("datamint", name="cloud", options=options("http://datamint.example", **changes))


def test_defaults_fill_the_optional_options():
    adapter = open_adapter("datamint", name="cloud", options={"api_key": "k"})
    assert adapter.root == "https://api.datamint.io"
    assert adapter.opts == {"url": "https://api.datamint.io", "api_key": "k", "channel": None,
                            "modality": "IO", "tags": [], "publish": False, "timeout": 30.0}
    adapter.close()
