"""Forwarding through the running daemon: rules on acquired images, the
forward and outbox endpoints, and a kill -9 with deliveries in flight."""
from __future__ import annotations

import signal
from datetime import datetime

import pytest

from tests.support import images
from tests.support.daemon_process import daemon_process
from tests.support.filters_api import assert_error
from tests.support.forward import target
from tests.support.loopback import wait_until
from tests.support.modality import (
    API,
    create_session,
    device_of,
    expose,
    subscribe_status,
)

ADMIN = "/api/sensord/v1"


def test_acquired_images_are_forwarded_with_their_context(serve, datamint):
    fake, url = datamint
    srv = serve(forward={"targets": [target(url)],
                         "rules": [{"target": "dm", "source": "acquired", "filter": "raw"},
                                   {"target": "dm", "source": "acquired", "filter": "select:edgePro"}]})
    dev = device_of(srv, "Simradix Select")
    sid = create_session(srv, dev["deviceId"], context={"patientId": "P-42", "studyDate": "2026-11-23"})["sessionId"]
    _, info = expose(srv, sid, dev["deviceId"], subscribe_status(srv, sid), context={"tooth": "36"})
    # Queued before NewImage: the outbox already knew the image when it was announced.
    assert wait_until(lambda: len(fake.resources) == 2)
    raw = next(r for r in fake.resources if r["filename"] == f"{info['id']}.png")
    context = raw["metadata"]["context"]        # Datamint gets a de-identified copy by default
    assert context["tooth"] == "36" and context["patientId"].startswith("P-") and "P-42" not in str(raw)
    assert context["studyDate"] < "2026-11-23"   # shifted back, per patient (forward.deidentify)
    assert raw["metadata"]["pixelHash"] == info["pixelHash"]
    assert raw["bytes"] == srv.http.get(info["imageUrl"]).content
    # Datamint holds the bytes before the daemon has recorded its answer.
    assert wait_until(lambda: srv.http.get(srv.url(ADMIN + "/outbox")).json()["counts"] == {"delivered": 2})
    box = srv.http.get(srv.url(ADMIN + "/outbox")).json()
    assert {e["filter"] for e in box["entries"]} == {"raw", "select:edgePro"}


def test_forward_on_request_and_operator_endpoints(serve, datamint):
    fake, url = datamint
    srv = serve(forward={"targets": [target(url, max_attempts=2, deidentify=False)]})    # as sent
    res = srv.http.post(srv.url("/api/dsio/filters/v1/images"), files=images.upload_files(
        images.image_info(), images.png16(images.raw_image()))).json()
    fake.faults.fail(2, status=500, path="/resources", method="POST")     # both allowed attempts fail
    queued = srv.http.post(srv.url(ADMIN + "/forward"), json={"target": "dm", "resourceId": res["id"],
                                                              "filter": "unmap", "context": {"patientId": "P-1"}})
    assert queued.status_code == 202
    [entry_id] = queued.json()["entries"]
    assert wait_until(lambda: srv.http.get(srv.url(ADMIN + "/outbox?state=dead")).json()["entries"])
    dead = srv.http.get(srv.url(ADMIN + "/outbox?state=dead")).json()["entries"][0]
    assert dead["id"] == entry_id and "500" in dead["lastError"] and dead["attempts"] == 2
    assert srv.http.post(srv.url(f"{ADMIN}/outbox/{entry_id}/retry")).status_code == 200
    assert wait_until(lambda: srv.http.get(srv.url(ADMIN + "/outbox")).json()["counts"] == {"delivered": 1})
    assert [r["metadata"]["context"]["patientId"] for r in fake.resources] == ["P-1"]
    assert_error(srv.http.post(srv.url(f"{ADMIN}/outbox/{entry_id}/retry")), 409, "delivered")
    assert srv.http.delete(srv.url(f"{ADMIN}/outbox/{entry_id}")).status_code == 204
    assert_error(srv.http.delete(srv.url(f"{ADMIN}/outbox/{entry_id}")), 404)
    for body, status in [({"target": "nope", "resourceId": res["id"]}, 400),
                         ({"target": "dm", "resourceId": "missing"}, 404),
                         ({"target": "dm", "resourceId": res["id"], "filter": "blur"}, 400),
                         ({"target": "dm", "sessionId": "s", "imageId": "i"}, 404),
                         ({"target": "dm", "resourceId": res["id"], "colour": 1}, 400)]:
        assert_error(srv.http.post(srv.url(ADMIN + "/forward"), json=body), status)
    assert_error(srv.http.get(srv.url(ADMIN + "/outbox?state=lost")), 400)


def test_bad_targets_stop_the_start(tmp_path):
    from sensord.daemon.service import Sensord
    from sensord.daemon.settings import SettingsError
    from tests.support.server import make_settings

    with pytest.raises(ValueError, match="pasword"):
        Sensord(make_settings(tmp_path, forward={"targets": [
            {"name": "dm", "kind": "datamint", "api_key": "k", "pasword": "x"}]}))
    with pytest.raises(ValueError, match="ftp"):
        Sensord(make_settings(tmp_path, forward={"targets": [{"name": "dm", "kind": "ftp"}]}))
    with pytest.raises(SettingsError, match="no configured target"):
        make_settings(tmp_path, forward={"rules": [{"target": "dm"}]})


@pytest.mark.process
def test_kill_9_with_deliveries_in_flight_loses_nothing_and_sends_nothing_twice(tmp_path, datamint):
    fake, url = datamint
    # Every upload is stored, then its answer is held past the client's timeout:
    # the daemon is killed while deliveries are in flight and answers are lost.
    fake.faults.lose(3.0, times=4, path="/resources", method="POST")
    config = f"""
[drivers]
urls = ["sim://?models=select0&time_scale=0.01"]
[[forward.targets]]
name = "dm"
kind = "datamint"
url = "{url}"
api_key = "key-1"
timeout = 2
concurrency = 2
backoff_base = 0.2
backoff_max = 0.5
[[forward.rules]]
target = "dm"
source = "acquired"
"""
    with daemon_process(tmp_path, config) as srv:        # http and url() as the serve fixture's
        http = srv.http
        dev = http.get(srv.url(API + "/devices")).json()[0]["deviceId"]
        sid = http.post(srv.url(API + "/acquisition"), json={"deviceId": dev}).json()["sessionId"]
        stream = subscribe_status(srv, sid)
        acquired = [expose(srv, sid, dev, stream)[1]["id"] for _ in range(5)]
        stream.close()
        assert wait_until(lambda: fake.upload_calls >= 2)        # deliveries are under way
        srv.signal(signal.SIGKILL)
        srv.wait(timeout=10)
        stored_at_kill = len(fake.resources)
        assert stored_at_kill < 5                                 # the kill came mid-way

        srv.start()
        assert wait_until(lambda: http.get(srv.url(ADMIN + "/outbox")).json()["counts"] == {"delivered": 5}, 30), \
            http.get(srv.url(ADMIN + "/outbox")).json()
        names = [r["filename"] for r in fake.resources]
        assert sorted(names) == sorted(f"{i}.png" for i in acquired)   # every image, none twice


def test_a_filters_resource_without_created_on_is_forwarded_with_its_own_creation_time(serve, datamint):
    """The Filters spec's ImageInfo has no createdOn: the resource's creation time stands in."""
    fake, url = datamint
    srv = serve(forward={"targets": [target(url)]})
    info = {k: v for k, v in images.image_info().items() if k != "createdOn"}
    res = srv.http.post(srv.url("/api/dsio/filters/v1/images"), files=images.upload_files(
        info, images.png16(images.raw_image()))).json()
    queued = srv.http.post(srv.url(ADMIN + "/forward"), json={"target": "dm", "resourceId": res["id"],
                                                              "context": {"patientId": "P-1"}})
    assert queued.status_code == 202
    assert wait_until(lambda: srv.http.get(srv.url(ADMIN + "/outbox")).json()["counts"] == {"delivered": 1})
    [sent] = fake.resources
    # (A deidentifying target may shift the date: only its presence and form are checked.)
    assert datetime.fromisoformat(sent["metadata"]["imageInfo"]["createdOn"].replace("Z", "+00:00"))
