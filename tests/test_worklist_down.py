"""A worklist that does not answer (a free port, nothing listening) never
blocks an X-ray: the daemon starts at once, acquires, and shows the error
and why the session is unbound."""
from __future__ import annotations

import logging

from tests.support.loopback import free_port, wait_until
from tests.support.modality import create_session, device_of, expose, subscribe_status

WORKLIST = "/api/sensord/v1/worklist"


def test_the_daemon_acquires_while_the_worklist_is_down(serve, caplog):
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="sensord.worklist"):
        srv = serve(worklist={"host": "127.0.0.1", "port": port, "called_ae": "WORKLIST", "refresh_seconds": 5},
                    dicom={"timeout_seconds": 2})
        assert wait_until(lambda: srv.http.get(srv.url(WORKLIST)).json()["error"], 10)
        dev = device_of(srv, "Simradix Select")["deviceId"]
        sid = create_session(srv, dev, context={"accessionNumber": "ACC-1"})["sessionId"]
        states, info = expose(srv, sid, dev, subscribe_status(srv, sid))
    assert states[-1] == "NewImage" and info["id"]
    body = srv.http.get(srv.url(WORKLIST)).json()
    assert body["configured"] and body["items"] == [] and body["refreshedAt"] is None
    assert body["error"].startswith(f"cannot reach WORKLIST@127.0.0.1:{port}")
    [entry] = body["sessions"]
    assert entry["bound"] is False and "the worklist does not answer" in entry["reason"]
    assert srv.daemon.worklist_bindings.context_for(sid, {"accessionNumber": "ACC-1", "worklistBound": True}) \
        == {"accessionNumber": "ACC-1"}
    down = [r for r in caplog.records if "does not answer" in r.getMessage() and r.name == "sensord.worklist"]
    assert down and down[0].getMessage().startswith(f"worklist at WORKLIST@127.0.0.1:{port} does not answer")


def test_without_a_worklist_nothing_is_asked(serve):
    srv = serve()
    body = srv.http.get(srv.url(WORKLIST)).json()
    assert body == {"configured": False, "peer": None, "refreshedAt": None, "error": None, "items": [],
                    "sessions": []}
    assert srv.http.get(srv.url("/api/sensord/v1/status")).json()["worklist"]["configured"] is False
