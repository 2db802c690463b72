"""Every route answers the same with and without a trailing slash, never by a redirect.

The vendor's SDK builds `acquisition/` (and `acquisition/?deviceId=...`);
HttpClient drops the Authorization header when it follows a redirect, and
.NET Framework does not follow 308 at all, so a redirect is as bad as a 404.
The routes are read from the app itself, so a new one is covered too.
"""
from __future__ import annotations

import re

import pytest

from sensord.daemon.app import create_app
from tests.support import images
from tests.support.filters_api import API as FILTERS
from tests.support.modality import API as MODALITY
from tests.support.modality import create_session, devices, expose, subscribe_status
from tests.support.server import make_settings, running


@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    """A running daemon with one of everything a route can name."""
    settings = make_settings(tmp_path_factory.mktemp("routes") / "state")
    with running(settings) as srv:
        device = devices(srv)[0]["deviceId"]
        sid = create_session(srv, device)["sessionId"]
        stream = subscribe_status(srv, sid)
        _, info = expose(srv, sid, device, stream)
        stream.close()
        rid = srv.http.post(srv.url(FILTERS + "/images"),
                            files=images.upload_files(images.image_info(), images.png16(images.raw_image()))
                            ).json()["id"]
        yield srv, {"device_id": device, "sid": sid, "iid": info["id"], "rid": rid, "kind": "usb"}


def get_routes():
    """Every GET route of the app, as its rule text."""
    class Services:            # all that create_app reads to build the routes
        class settings:
            class server:
                max_upload_mb = 1

        class auth:
            @staticmethod
            def install(app):
                pass

    app = create_app(Services)
    return sorted(rule.rule for rule in app.url_map.iter_rules()
                  if "GET" in rule.methods and rule.endpoint != "static" and "<path:" not in rule.rule)


@pytest.mark.parametrize("rule", get_routes())
def test_get_answers_with_and_without_a_trailing_slash(ids, rule):
    srv, values = ids
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], rule).rstrip("/")
    answers = []
    for url in (path or "/", path + "/"):
        with srv.http.get(srv.url(url), allow_redirects=False, stream=True, timeout=10) as response:
            answers.append((response.status_code, response.headers.get("Content-Type", "").split(";")[0]))
    assert answers[0] == answers[1], f"{rule}: {answers}"
    assert answers[0][0] == 200, f"{rule}: {answers}"


def test_the_sdk_session_listing_with_a_trailing_slash(ids):
    srv, values = ids
    for query in ("", f"?deviceId={values['device_id']}"):
        response = srv.http.get(srv.url(f"{MODALITY}/acquisition/{query}"), allow_redirects=False)
        assert response.status_code == 200, response.text
        assert [s["sessionId"] for s in response.json()] == [values["sid"]]


def test_put_and_delete_answer_with_a_trailing_slash(serve):
    srv = serve()
    first, second = (d["deviceId"] for d in devices(srv)[:2])
    sid = create_session(srv, first)["sessionId"]
    moved = srv.http.put(srv.url(f"{MODALITY}/acquisition/{sid}/"), json={"deviceId": second}, allow_redirects=False)
    assert moved.status_code == 200 and moved.json()["deviceId"] == second
    assert srv.http.delete(srv.url(f"{MODALITY}/acquisition/{sid}/"), allow_redirects=False).status_code == 200


def test_an_empty_id_is_a_404_not_a_redirect(serve):
    """`//` in a path (a script's empty variable) is not merged by a redirect."""
    srv = serve()
    for method in ("get", "put"):
        response = getattr(srv.http, method)(srv.url(f"{MODALITY}/acquisition//info"), allow_redirects=False)
        assert response.status_code in (404, 405), (method, response.status_code, response.headers)
