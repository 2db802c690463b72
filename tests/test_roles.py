"""Roles through the real server: a client is the imaging software and sees
its own work; an operator has sensord's own API, the status page and all."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from sensord.daemon.api.auth import hash_password
from sensord.daemon.host import reload
from tests.support.filters_api import API as FILTERS
from tests.support.filters_api import upload
from tests.support.modality import API as MODALITY
from tests.support.modality import arm_and_wait, control, create_session, devices, state_is, subscribe_status
from tests.support.server import (
    CLIENT,
    CLIENT_PASSWORD,
    PASSWORD,
    USER,
    default_users,
    make_settings,
    running,
)

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "/api/sensord/v1"
OTHER, OTHER_PASSWORD = "reception", "a third long passphrase"     # a second client


@functools.cache
def _other_hash() -> str:
    return hash_password(OTHER_PASSWORD)


def _users() -> dict:
    return {**default_users(), OTHER: _other_hash()}


@pytest.fixture
def views(serve):
    """(operator, client, other client): one daemon seen by three users."""
    srv = serve(auth={"users": _users()})
    return srv, srv.as_user(CLIENT, CLIENT_PASSWORD), srv.as_user(OTHER, OTHER_PASSWORD)


def _absent_session(response, sid: str) -> None:
    """Exactly what a session id that never existed answers."""
    assert response.status_code == 404, response.text
    assert response.json() == {"status": 404, "error": "Not Found", "message": f"no acquisition session {sid!r}"}


def test_a_client_gets_403_naming_the_role_on_every_operator_endpoint(views):
    op, client, _ = views
    dev = devices(op)[0]
    calls = [("POST", f"{ADMIN}/devices/{dev['deviceId']}/unplug"),
             ("POST", f"{ADMIN}/devices/{dev['deviceId']}/expose"),
             ("POST", f"{ADMIN}/forward"), ("GET", f"{ADMIN}/outbox"),
             ("POST", f"{ADMIN}/outbox/1/retry"), ("DELETE", f"{ADMIN}/outbox/1"),
             ("GET", f"{ADMIN}/status"), ("GET", f"{ADMIN}/status/subscribe"),
             ("GET", "/"), ("GET", "/assets/status.js")]
    for method, path in calls:
        response = client.http.request(method, client.url(path), timeout=10)
        assert response.status_code == 403, (path, response.status_code, response.text)
        assert response.headers["Content-Type"].startswith("application/json")
        body = response.json()
        assert body["status"] == 403 and "operator role" in body["message"], body
    # Nothing happened: the device is still plugged in.
    assert devices(op)[0]["status"] == dev["status"]
    # The operator has them all; the client still has both DSIO APIs.
    for path in (f"{ADMIN}/outbox", f"{ADMIN}/status", "/", "/assets/status.js"):
        assert op.http.get(op.url(path), timeout=10).status_code == 200, path
    for path in (MODALITY, MODALITY + "/devices", FILTERS):
        assert client.http.get(client.url(path), timeout=10).status_code == 200, path


def test_a_client_sees_and_changes_only_its_own_sessions(views):
    op, mine, other = views
    dev0, dev1 = (d["deviceId"] for d in devices(op)[:2])
    sid = create_session(mine, dev0, clientName="OP1", context={"patientId": "P-1"})["sessionId"]
    theirs = create_session(other, dev1, clientName="Reception")["sessionId"]

    def listed(view, query=""):
        return [s["sessionId"] for s in view.http.get(view.url(f"{MODALITY}/acquisition{query}")).json()]

    assert listed(mine) == [sid]
    assert listed(other) == [theirs]
    assert listed(other, f"?deviceId={dev0}") == []
    assert sorted(listed(op)) == sorted([sid, theirs])

    url = other.url(f"{MODALITY}/acquisition/{sid}")
    for response in (other.http.get(url), other.http.put(url, json={"clientName": "taken"}),
                     other.http.get(url + "/status"), other.http.get(url + "/info"),
                     other.http.put(url + "/info", json={"enable": True}),
                     other.http.get(url + "/images"), other.http.get(url + "/status/subscribe", timeout=10),
                     other.http.delete(url)):
        _absent_session(response, sid)
    # The device list is shared, and a device held by another's session stays held: 409.
    taken = other.http.post(other.url(MODALITY + "/acquisition"), json={"deviceId": dev0})
    assert taken.status_code == 409, taken.text

    kept = mine.http.get(mine.url(f"{MODALITY}/acquisition/{sid}"))
    assert kept.status_code == 200 and kept.json()["clientName"] == "OP1"
    assert kept.json()["context"] == {"patientId": "P-1"}
    # The operator sees and ends anyone's session.
    assert op.http.get(op.url(f"{MODALITY}/acquisition/{sid}")).status_code == 200
    assert op.http.delete(op.url(f"{MODALITY}/acquisition/{sid}")).status_code == 200
    _absent_session(mine.http.get(mine.url(f"{MODALITY}/acquisition/{sid}")), sid)


def test_session_images_and_linked_resources_follow_the_session_owner(views):
    op, mine, other = views
    dev = devices(op)[0]["deviceId"]
    sid = create_session(mine, dev)["sessionId"]
    stream = subscribe_status(mine, sid)
    try:
        arm_and_wait(mine, sid, stream)
        assert control(op, dev, "expose").status_code == 200      # the operator pulls the trigger
        iid = stream.until(state_is("NewImage"), timeout=15)[-1][1]["lastImageId"]
    finally:
        stream.close()
    media = f"{MODALITY}/acquisition/{sid}/images/{iid}/media"
    assert mine.http.get(mine.url(media)).status_code == 200
    _absent_session(other.http.get(other.url(media)), sid)

    link = {"sessionId": sid, "imageId": iid}
    refused = other.http.post(other.url(FILTERS + "/images/modality"), json=link)
    assert refused.status_code == 404, refused.text
    own = mine.http.post(mine.url(FILTERS + "/images/modality"), json=link)
    assert own.status_code == 201, own.text
    by_operator = op.http.post(op.url(FILTERS + "/images/modality"), json=link)
    assert by_operator.status_code == 201, by_operator.text
    for rid in (own.json()["id"], by_operator.json()["id"]):
        path = f"{FILTERS}/images/{rid}"
        assert mine.http.get(mine.url(path)).status_code == 200      # the session's owner
        assert op.http.get(op.url(path)).status_code == 200
        assert other.http.get(other.url(path)).status_code == 404
        assert other.http.get(other.url(path + "/media")).status_code == 404


def test_uploaded_resources_are_their_creators_and_the_owner_survives_a_restart(tmp_path):
    settings = make_settings(tmp_path / "state", auth={"users": _users()})
    with running(settings) as srv:
        mine, other = srv.as_user(CLIENT, CLIENT_PASSWORD), srv.as_user(OTHER, OTHER_PASSWORD)
        rid = upload(mine).json()["id"]
        path = f"{FILTERS}/images/{rid}"
        for response in (other.http.get(other.url(path)), other.http.get(other.url(path + "/media")),
                         other.http.post(other.url(path + "/filters/select"), json={}),
                         other.http.delete(other.url(path))):
            assert response.status_code == 404, response.text
            assert rid in response.json()["message"]
        assert mine.http.get(mine.url(path + "/media")).status_code == 200    # not deleted by the other
        assert srv.http.get(srv.url(path)).status_code == 200                  # the operator sees all
        record = json.loads((Path(srv.daemon.store.root) / rid / "resource.json").read_text())
        assert record["owner"] == CLIENT
        assert "owner" not in mine.http.get(mine.url(path)).json()     # not part of the wire format
    with running(settings) as srv:
        mine, other = srv.as_user(CLIENT, CLIENT_PASSWORD), srv.as_user(OTHER, OTHER_PASSWORD)
        assert mine.http.get(mine.url(path)).status_code == 200
        assert other.http.get(other.url(path)).status_code == 404
        assert other.http.delete(other.url(path)).status_code == 404
        assert mine.http.delete(mine.url(path)).status_code == 204


def test_a_reload_changes_roles_live(serve):
    srv = serve()
    client = srv.as_user(CLIENT, CLIENT_PASSWORD)
    outbox = client.url(ADMIN + "/outbox")
    state = srv.daemon.settings.store.state_dir
    assert client.http.get(outbox).status_code == 403
    promoted = make_settings(state, auth={"roles": {USER: "operator", CLIENT: "operator"}})
    assert "auth.roles" in reload.reload(srv.daemon, lambda: promoted)
    assert client.http.get(outbox).status_code == 200
    assert reload.reload(srv.daemon, lambda: make_settings(state)) == ["auth.roles"]
    assert client.http.get(outbox).status_code == 403


def test_the_admin_made_at_first_start_is_an_operator_and_unlisted_users_are_clients(serve, tmp_path):
    first = serve(state_dir=tmp_path / "fresh", auth={"users": {}, "roles": {}})
    password = (tmp_path / "fresh" / "admin-password").read_text().strip()
    assert requests.get(first.url(ADMIN + "/outbox"), auth=("admin", password), timeout=10).status_code == 200
    configured = serve(state_dir=tmp_path / "configured", auth={"roles": {}})
    for user, pw in ((USER, PASSWORD), (CLIENT, CLIENT_PASSWORD)):
        response = requests.get(configured.url(ADMIN + "/outbox"), auth=(user, pw), timeout=10)
        assert response.status_code == 403, user


@pytest.mark.process
def test_the_operator_cli_names_the_missing_role_for_a_client(serve):
    srv = serve()
    env = {**os.environ, "SENSORD_USER": CLIENT, "SENSORD_PASSWORD": CLIENT_PASSWORD}
    for words in (["outbox", "list"], ["status"]):
        run = subprocess.run([sys.executable, "-m", "sensord.daemon.host.cli", *words, "--url", srv.base],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        assert run.returncode == 1, (words, run.stdout, run.stderr)
        assert "403" in run.stderr and "operator role" in run.stderr, run.stderr
