"""A REAL kill -9 of `sensord serve` in the middle of a V7 direct upload (issue #12).

The fake V7 is served on loopback by this test process and holds one request
(the confirm, or the sign that follows register_upload) until the daemon has
been killed with SIGKILL: so the kill lands exactly between two steps, with
the earlier steps recorded durably in the outbox entry's progress (the
adapter records a step before starting the next). The daemon is started
again on the same state folder and must finish the delivery: one item,
complete, with the acquired bytes, PUT exactly once (after ``put`` is
recorded the adapter only confirms), one register_upload, and the outbox
entry delivered.

The held request is then either dropped (answered 503 without doing the
work: the kill came before the platform acted) or done (the platform acted,
its answer went to a dead process): both must end the same way.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import threading

import pytest
from flask import jsonify, request

from sensord.filters import png as pngcodec
from sensord.filters.pixel_hash import pixel_hash
from tests.support.daemon_process import daemon_process
from tests.support.fake_v7 import FakeV7
from tests.support.loopback import serving, wait_until
from tests.support.modality import acquire_one

ADMIN = "/api/sensord/v1"
FOLDER = "/sensord/kill9"

pytestmark = pytest.mark.process


class Hold:
    """Holds the first request whose path contains ``on`` until released; then
    drops it (503, nothing done) or lets the fake do it (``done``)."""

    def __init__(self, fake: FakeV7, on: str, *, done: bool):
        self.on, self.done, self.left = on, done, 1
        self.arrived, self.released = threading.Event(), threading.Event()
        fake.app.before_request(self._hold)      # after the fake's own hook: the request is recorded

    def _hold(self):
        if self.on not in request.path or self.left == 0:
            return None
        self.left -= 1
        self.arrived.set()
        self.released.wait(60)
        return None if self.done else (jsonify(errors={"message": "held, then dropped"}), 503)


def config(base: str) -> str:
    return f"""
[drivers]
urls = ["sim://?models=select0&time_scale=0.01"]
[[forward.targets]]
name = "darwin"
kind = "v7"
mode = "direct"
url = "{base}/api/v2"
team_slug = "clinic"
api_key = "key-1"
dataset_slug = "xrays"
path = "{FOLDER}"
timeout = 5
backoff_base = 0.2
backoff_max = 0.5
[[forward.rules]]
target = "darwin"
source = "acquired"
"""


def progress_in(state) -> list[dict]:
    """The outbox entries' progress as the killed daemon left it on disk."""
    [db_path] = list(state.rglob("outbox.db"))
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [json.loads(row[0]) if row[0] else {} for row in db.execute("SELECT progress FROM entries")]
    finally:
        db.close()


def outbox_counts(srv) -> dict:
    return srv.http.get(srv.url(ADMIN + "/outbox")).json()["counts"]


@pytest.mark.parametrize("held, done, recorded", [
    ("/confirm", False, {"upload", "put"}),        # killed between the PUT and the confirm
    ("/confirm", True, {"upload", "put"}),         # ... the confirm was done, its answer lost with the process
    ("/sign", False, {"upload"}),                  # killed right after register_upload's answer, before the PUT
], ids=["put-then-kill-confirm-dropped", "put-then-kill-confirm-done", "registered-then-kill"])
def test_v7_direct_kill_9_between_put_and_confirm(tmp_path, held, done, recorded):
    fake = FakeV7()
    hold = Hold(fake, held, done=done)
    with serving(fake.app) as base, daemon_process(tmp_path, config(base)) as srv:
        try:
            info = acquire_one(srv)
            assert hold.arrived.wait(30), f"no {held} request came:\n{srv.log()}"
            srv.signal(signal.SIGKILL)                          # the request is still held: mid-delivery
            assert srv.wait(timeout=10) == -signal.SIGKILL
        finally:
            hold.released.set()
        [progress] = progress_in(srv.state)
        assert set(progress) == recorded, progress              # durable before the next step began
        assert progress["upload"]["upload_id"] in fake.uploads
        if "put" in recorded:
            assert progress["put"] == progress["upload"]["upload_id"]
            assert len(fake.calls("/storage/")) == 1
        else:
            assert fake.calls("/storage/") == []

        srv.start()                                             # the same state folder
        assert wait_until(lambda: outbox_counts(srv) == {"delivered": 1}, 30), \
            (srv.http.get(srv.url(ADMIN + "/outbox")).json(), srv.log())
        [entry] = srv.http.get(srv.url(ADMIN + "/outbox")).json()["entries"]

    [item] = fake.items()
    assert item["name"] == f"{info['id']}.png" and item["path"] == FOLDER
    assert item["status"] in ("processing", "new")
    stored = pngcodec.decode_gray16(item["data"], max_width=65535, max_height=65535)
    assert pixel_hash(stored, alg=info["pixelHash"]["alg"])["hash"] == info["pixelHash"]["hash"].lower()
    assert len(fake.calls("register_upload")) == 1 and len(fake.uploads) == 1
    assert len(fake.calls("/storage/")) == 1                    # exactly one PUT, across both lives
    assert len(fake.calls("/confirm")) == (2 if held == "/confirm" else 1)   # the held one, then the resumed one
    assert entry["state"] == "delivered"
    assert entry["receipt"]["resumed"] is True and entry["receipt"]["upload_id"] == progress["upload"]["upload_id"]
