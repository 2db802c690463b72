"""The state folder is the daemon's alone: one `sensord serve` at a time on
it, and outside systemd nothing in it is readable by other users."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import images
from tests.support.daemon_process import MODALITY, ROOT, daemon_process
from tests.support.loopback import free_port, wait_until

FAST = '[drivers]\nurls = ["sim://?time_scale=0.01&seed=5"]\n'


def expose_one(daemon) -> tuple[str, str]:
    """A session with one exposed image on disk: (session id, image id)."""
    http = daemon.http
    dev = http.get(daemon.url(MODALITY + "/devices")).json()[0]["deviceId"]
    sid = http.post(daemon.url(MODALITY + "/acquisition"), json={"deviceId": dev}).json()["sessionId"]
    status = daemon.url(f"{MODALITY}/acquisition/{sid}/status")
    assert http.put(daemon.url(f"{MODALITY}/acquisition/{sid}/info"), json={"enable": True}).status_code == 200
    assert wait_until(lambda: http.get(status).json()["ready"], 15)
    assert http.post(daemon.url(f"/api/sensord/v1/devices/{dev}/expose")).status_code == 200
    assert wait_until(lambda: http.get(status).json()["totalImages"] == 1, 15)
    return sid, http.get(status).json()["lastImageId"]


@pytest.mark.process
def test_a_second_serve_on_a_locked_state_folder_exits_2_naming_the_holder_and_changes_nothing(tmp_path):
    with daemon_process(tmp_path, FAST) as daemon:
        sid, iid = expose_one(daemon)
        image_file = daemon.state / "sessions" / sid / f"{iid}.png"
        assert image_file.is_file()
        before = image_file.read_bytes()

        second = subprocess.run(
            [sys.executable, "-m", "sensord.daemon.host.cli", "serve", "--config", str(daemon.config),
             "--port", str(free_port()), "--state-dir", str(daemon.state)],
            cwd=ROOT, env=daemon.env, capture_output=True, text=True, timeout=30)

        assert second.returncode == 2, second.stderr
        assert f"process {daemon.proc.pid}" in second.stderr and str(daemon.state) in second.stderr
        assert image_file.read_bytes() == before
        media = daemon.http.get(daemon.url(f"{MODALITY}/acquisition/{sid}/images/{iid}/media"))
        assert media.status_code == 200 and media.content == before
        assert (daemon.state / "sensord.lock").read_text().strip() == str(daemon.proc.pid)
        assert daemon.proc.poll() is None


@pytest.mark.process
def test_outside_systemd_what_a_start_creates_is_the_owners_alone(tmp_path):
    # A usual login umask (files 0644, folders 0755 unless the daemon says
    # otherwise), and no sign of systemd.
    with daemon_process(tmp_path, FAST, env={"INVOCATION_ID": ""}, preexec_fn=lambda: os.umask(0o022)) as daemon:
        expose_one(daemon)
        uploaded = daemon.http.post(daemon.url("/api/dsio/filters/v1/images"), files=images.upload_files(
            images.image_info(), images.png16(images.raw_image())))
        assert uploaded.status_code == 201, uploaded.text
        modes = {str(path.relative_to(tmp_path)): stat.S_IMODE(path.lstat().st_mode)
                 for path in [daemon.state, *daemon.state.rglob("*")]}
    assert {"state", "state/sensord.lock", "state/resources", "state/sessions"} <= set(modes)
    assert any(name.endswith(".png") for name in modes)
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if (tmp_path / name).is_dir() else 0o600)}
    assert not wrong, wrong
