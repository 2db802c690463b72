"""What operators see of entries waiting for storage commitment: the outbox endpoint's
``committing`` state, the status snapshot's counts, `sensord outbox` and `sensord status`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensord.daemon.forward.platforms import dimse as dimse_platform
from tests.support import images
from tests.support.loopback import wait_until
from tests.support.server import PASSWORD, USER
from tests.support.storage_scp import StorageArchive

OUTBOX = "/api/sensord/v1/outbox"
SENSORD = [sys.executable, "-m", "sensord.daemon.host.cli"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def short_report_wait(monkeypatch):
    """The scripted archive reports within milliseconds: a silent one need not cost 2 s a test."""
    monkeypatch.setattr(dimse_platform, "SAME_ASSOCIATION_WAIT", 0.5)


@pytest.fixture
def waiting(serve):
    """A daemon with one image stored on a silent archive: committing, for an hour."""
    with StorageArchive(commit=["silent"]) as archive:
        target = {"name": "pacs", "kind": "dimse", **archive.options(storage_commitment=True,
                                                                    commitment_timeout_seconds=3600)}
        srv = serve(forward={"targets": [target]}, dicom={"timeout_seconds": 5})
        res = srv.http.post(srv.url("/api/dsio/filters/v1/images"), files=images.upload_files(
            images.image_info(), images.png16(images.raw_image(48, 64)))).json()
        [entry] = srv.http.post(srv.url("/api/sensord/v1/forward"),
                                json={"target": "pacs", "resourceId": res["id"]}).json()["entries"]
        assert wait_until(lambda: srv.http.get(srv.url(OUTBOX)).json()["counts"] == {"committing": 1}, 15), \
            srv.http.get(srv.url(OUTBOX)).json()
        yield srv, entry


def test_the_outbox_lists_committing_entries_and_the_status_counts_them(waiting):
    srv, entry = waiting
    listed = srv.http.get(srv.url(OUTBOX), params={"state": "committing"})
    assert listed.status_code == 200
    [shown] = listed.json()["entries"]
    assert (shown["id"], shown["state"], shown["target"]) == (entry, "committing", "pacs")
    assert 3590 < shown["nextAttempt"] - shown["updated"] <= 3600       # the deadline of the wait
    assert srv.http.get(srv.url(OUTBOX), params={"state": "pending"}).json()["entries"] == []
    assert srv.http.get(srv.url("/api/sensord/v1/status")).json()["outbox"]["counts"] == {"committing": 1}
    bad = srv.http.get(srv.url(OUTBOX), params={"state": "waiting"})
    assert bad.status_code == 400 and "committing" in bad.json()["message"]


@pytest.mark.process
def test_the_commands_show_committing_entries_and_their_wait(waiting):
    srv, entry = waiting
    env = {**os.environ, "SENSORD_USER": USER, "SENSORD_PASSWORD": PASSWORD}

    def cli(*words):
        done = subprocess.run(SENSORD + [*words, "--url", srv.base], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = cli("outbox", "list", "--state", "committing")
    assert f"{entry:>6}  committing pacs" in listed and "waiting" in listed and "for storage commitment" in listed
    summary = cli("status")
    assert "committing 1" in summary
    assert f"committing {entry} to pacs: waiting" in summary and "stored again if none in" in summary
