"""The console script, run as the operator runs it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from werkzeug.security import check_password_hash

from tests.support.loopback import free_port, wait_until

SENSORD = [sys.executable, "-m", "sensord.daemon.host.cli"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.process
def test_hash_password_reads_stdin():
    out = subprocess.run(SENSORD + ["hash-password"], input="s3cret\n", capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout.strip()
    assert check_password_hash(out, "s3cret") and not check_password_hash(out, "other")


@pytest.mark.process
def test_unknown_config_key_stops_the_start(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[store]\nlifetime = 5\n")
    run = subprocess.run(SENSORD + ["serve", "--config", str(config)], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 2
    assert "store.lifetime" in run.stderr


@pytest.mark.process
def test_serve_on_defaults_creates_admin_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    proc = subprocess.Popen(SENSORD + ["serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        password_file = tmp_path / "state" / "admin-password"
        base = f"http://127.0.0.1:{port}/api/dsio/filters/v1"
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(base, auth=("admin", password_file.read_text().strip()), timeout=2)
                break
            except (OSError, requests.ConnectionError):
                assert time.monotonic() < deadline and proc.poll() is None, "daemon did not come up"
                time.sleep(0.1)
        assert response.status_code == 200
        assert password_file.stat().st_mode & 0o777 == 0o600
        assert requests.get(base, auth=("admin", "guess"), timeout=5).status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.stdout.read()
    assert "admin-password" in output
    assert "Traceback" not in output


@pytest.mark.process
def test_expose_and_battery_from_the_command_line(serve):
    from tests.support.modality import (
        API,
        create_session,
        devices,
        put_info,
        state_is,
        subscribe_status,
    )
    from tests.support.server import PASSWORD, USER

    srv = serve()
    dev = next(d for d in devices(srv) if d["battery"]["hasBattery"])["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    stream = subscribe_status(srv, sid)
    put_info(srv, sid, enable=True)
    stream.until(lambda e, d: d["ready"], timeout=10)
    env = {**os.environ, "SENSORD_USER": USER, "SENSORD_PASSWORD": PASSWORD}

    def cli(*words):
        return subprocess.run(SENSORD + list(words) + ["--url", srv.base], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=60)

    done = cli("expose", dev[:8])                   # a unique start of the id is enough
    assert done.returncode == 0, done.stderr
    stream.until(state_is("NewImage"), timeout=10)
    assert cli("battery", dev, "4").returncode == 0
    stream.until(state_is("LowBattery"))
    refused = cli("expose", dev)
    assert refused.returncode == 1 and "409" in refused.stderr
    assert srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()["totalImages"] == 1


@pytest.mark.process
def test_outbox_from_the_command_line(serve):
    from tests.support import images
    from tests.support.loopback import closed_port_url
    from tests.support.server import PASSWORD, USER

    target = {"name": "dm", "kind": "datamint", "url": closed_port_url(), "api_key": "k", "max_attempts": 1}
    srv = serve(forward={"targets": [target]})
    res = srv.http.post(srv.url("/api/dsio/filters/v1/images"), files=images.upload_files(
        images.image_info(), images.png16(images.raw_image()))).json()
    [entry] = srv.http.post(srv.url("/api/sensord/v1/forward"), json={"target": "dm", "resourceId": res["id"]}).json()["entries"]
    env = {**os.environ, "SENSORD_USER": USER, "SENSORD_PASSWORD": PASSWORD}

    def cli(*words):
        return subprocess.run(SENSORD + ["outbox", *words, "--url", srv.base], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=60)

    assert wait_until(lambda: "dead" in cli("list", "--state", "dead").stdout)
    listed = cli("list", "--state", "dead")
    assert listed.returncode == 0 and f"{entry:>6}  dead" in listed.stdout and "ConnectionError" in listed.stdout
    assert cli("retry", str(entry)).returncode == 0
    assert cli("drop", "999").returncode == 1
    assert wait_until(lambda: cli("drop", str(entry)).returncode == 0)   # in flight again after the retry
    assert "the outbox is empty" in cli("list").stdout


@pytest.mark.process
def test_devices_and_status_from_the_command_line(serve):
    from tests.support.modality import create_session, devices
    from tests.support.server import PASSWORD, USER

    srv = serve()
    dev = devices(srv)[0]
    create_session(srv, dev["deviceId"], clientName="OP4 Workstation")
    env = {**os.environ, "SENSORD_USER": USER, "SENSORD_PASSWORD": PASSWORD}

    def cli(*words):
        return subprocess.run(SENSORD + [*words, "--url", srv.base], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=60)

    listed = cli("devices")
    assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == 3
    assert f"{dev['deviceId']}  InUse" in listed.stdout and "battery" in listed.stdout
    summary = cli("status")
    assert summary.returncode == 0, summary.stderr
    assert "devices (3):" in summary.stdout and "sessions (1):" in summary.stdout
    assert "NoAcquisitionInfo" in summary.stdout and "OP4 Workstation" in summary.stdout
    assert "outbox: empty" in summary.stdout
    env["SENSORD_PASSWORD"] = "wrong"
    assert cli("status").returncode == 1
