"""Running under systemd: the notify protocol, the health check behind the
watchdog, the daemon's READY/WATCHDOG/STOPPING sequence, and the unit file."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from sensord.daemon.host import health, sdnotify
from sensord.daemon.host.lifecycle import Watchdog
from tests.support.loopback import free_port
from tests.support.sdnotify import datagram_socket, fields

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "sensord.service"
MODALITY = "/api/dsio/modality/v1"


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """A bound datagram socket that ``$NOTIFY_SOCKET`` names (a path)."""
    path = tmp_path / "notify"
    with datagram_socket(str(path)) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


# -- sdnotify ------------------------------------------------------------------
def test_notify_without_socket_variable_does_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify(READY=1) is False
    assert sdnotify.ready("up") is False and sdnotify.watchdog() is False


def test_notify_sends_one_datagram_to_a_path(notify_socket):
    assert sdnotify.ready("listening on 127.0.0.1:1, 3 devices")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=listening on 127.0.0.1:1, 3 devices"
    assert sdnotify.status("two\nlines") and notify_socket.recv(4096) == b"STATUS=two lines"
    assert sdnotify.stopping() and notify_socket.recv(4096) == b"STOPPING=1"


def test_notify_to_an_abstract_socket(monkeypatch):
    name = f"sensord-test-{uuid.uuid4().hex}"
    with datagram_socket("\0" + name) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_notify_to_a_missing_socket_is_a_false_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.ready() is False


@pytest.mark.parametrize("usec, pid, expected", [
    (None, None, None),
    ("2000000", None, 2.0),
    ("2000000", "self", 2.0),
    ("2000000", "other", None),         # the variable was meant for another process
    ("0", None, None),
    ("soon", None, None),
])
def test_watchdog_interval(monkeypatch, usec, pid, expected):
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            value = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
            monkeypatch.setenv(name, value)
    assert sdnotify.watchdog_interval() == expected


# -- health check and watchdog ----------------------------------------------
def test_health_check_needs_the_scheduler_and_the_http_server(serve):
    srv = serve()
    assert health.check(srv.daemon, srv.server) == (True, "healthy")
    srv.daemon.scheduler.close()
    ok, reason = health.check(srv.daemon, srv.server)
    assert not ok and "scheduler" in reason
    ok, reason = health.check_http("127.0.0.1", free_port(), timeout=2)
    assert not ok and "GET http://127.0.0.1:" in reason


def test_health_probe_reaches_a_wildcard_listener_over_loopback():
    assert health.probe_host("0.0.0.0") == "127.0.0.1"
    assert health.probe_host("::") == "::1"
    assert health.probe_host("192.0.2.7") == "192.0.2.7"


def test_watchdog_pings_only_after_a_passing_check(notify_socket, caplog):
    answers = iter([(False, "the scheduler is not running")] + [(True, "healthy")] * 100)
    dog = Watchdog(lambda timeout: next(answers), 0.2, healthy_status="listening")
    dog.start()
    try:
        received = [notify_socket.recv(4096) for _ in range(3)]
    finally:
        dog.stop()
    assert received == [b"STATUS=unhealthy: the scheduler is not running", b"WATCHDOG=1", b"STATUS=listening"]
    assert "the scheduler is not running" in caplog.text


# -- the daemon under a notify socket ----------------------------------------
@pytest.mark.process
def test_serve_tells_systemd_ready_watchdog_and_stopping(tmp_path):
    port, state = free_port(), tmp_path / "state"
    env = {k: v for k, v in os.environ.items()
           if k not in ("STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC")}
    env.update(NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="2000000")
    log_path = tmp_path / "sensord.log"
    with datagram_socket(env["NOTIFY_SOCKET"], timeout=30) as notify, open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sensord.daemon.host.cli", "serve", "--port", str(port),
                                 "--state-dir", str(state)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            try:
                first = fields(notify.recv(4096))
            except TimeoutError:
                pytest.fail(f"no READY within 30 s; exit code {proc.poll()}:\n{log_path.read_text()}")
            # READY is the first word, and the listener accepts at that very moment.
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            assert first["READY"] == "1"
            assert first["STATUS"] == f"listening on 127.0.0.1:{port}, 3 devices"
            password = (state / "admin-password").read_text().strip()
            devices = requests.get(f"http://127.0.0.1:{port}{MODALITY}/devices",
                                   auth=("admin", password), timeout=5)
            assert devices.status_code == 200 and len(devices.json()) == 3

            notify.settimeout(10)                                       # (each comes in a second, unless loaded)
            pings = [fields(notify.recv(4096)) for _ in range(2)]      # a ping every second
            assert pings == [{"WATCHDOG": "1"}] * 2

            proc.send_signal(signal.SIGTERM)
            notify.settimeout(10)
            while (message := fields(notify.recv(4096))) == {"WATCHDOG": "1"}:
                pass                                                    # a ping already on its way
            assert message == {"STOPPING": "1", "STATUS": "SIGTERM: stopping"}
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log_path.read_text()
    assert "Traceback" not in output, output


# -- the unit file -------------------------------------------------------------
def unit_copy(tmp_path) -> Path:
    """The unit with ExecStart on an executable that exists here, so that
    `systemd-analyze` judges the rest of it."""
    text = UNIT.read_text()
    assert "ExecStart=/opt/sensord/bin/sensord serve" in text
    copy = tmp_path / "sensord.service"
    copy.write_text(text.replace("/opt/sensord/bin/sensord", f"{sys.executable} -m sensord.daemon.host.cli"))
    return copy


def systemd_analyze(*args) -> subprocess.CompletedProcess:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not on PATH (no systemd on this machine)")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def test_unit_file_verifies(tmp_path):
    copy = unit_copy(tmp_path)
    run = systemd_analyze("verify", str(copy))
    # Unknown or malformed settings are only warned about ("..., ignoring"),
    # with exit code 0: any line about the unit counts as an error.
    about_unit = [line for line in (run.stdout + run.stderr).splitlines()
                  if copy.name in line or str(copy) in line]
    assert run.returncode == 0 and not about_unit, run.stdout + run.stderr


def test_unit_file_is_sandboxed(tmp_path):
    copy = unit_copy(tmp_path)
    # The exposure score in tenths: the unit scores 1.5 (0 best, 10.0 worst).
    run = systemd_analyze("security", "--offline=true", "--threshold=20", str(copy))
    if "--offline" in run.stderr and "unrecognized" in run.stderr:
        pytest.skip("this systemd-analyze has no offline security analysis")
    assert run.returncode == 0, run.stdout[-600:] + run.stderr


def test_unit_reloads_with_sighup_and_outwaits_the_shutdown_bound():
    from sensord.daemon.settings import ServerSettings

    lines = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                 if "=" in line and not line.startswith("#"))
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # systemd's SIGKILL must not cut the daemon's own bounded stop short.
    assert int(lines["TimeoutStopSec"]) > ServerSettings().shutdown_seconds


def test_unit_with_the_https_credentials_enabled_verifies(tmp_path):
    copy = unit_copy(tmp_path)
    text = copy.read_text()
    assert text.count("#LoadCredential=") == 2
    copy.write_text(text.replace("#LoadCredential=", "LoadCredential="))
    run = systemd_analyze("verify", str(copy))
    about_unit = [line for line in (run.stdout + run.stderr).splitlines() if copy.name in line]
    assert run.returncode == 0 and not about_unit, run.stdout + run.stderr
