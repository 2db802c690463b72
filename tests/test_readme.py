"""The README's shell lines, run as written (port and /etc paths aside) with
bash, and the operator CLI run as the README runs it: a subprocess from
another folder, finding the daemon from the config it reads."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.loopback import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
SENSORD = [sys.executable, "-m", "sensord.daemon.host.cli"]
MODALITY = "/api/dsio/modality/v1"


def readme_block(first_line: str) -> str:
    """The README's indented code block whose first line contains ``first_line``."""
    lines = (ROOT / "README.md").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("    ") and first_line in line and (i == 0 or not lines[i - 1].strip()):
            block = []
            for follow in lines[i:]:
                if follow and not follow.startswith("    "):
                    break
                block.append(follow[4:])
            return "\n".join(block).strip() + "\n"
    raise AssertionError(f"README.md has no code block starting with a line holding {first_line!r}")


def shell_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SENSORD_") and k not in ("STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["SENSORD_UNIT"] = "/nonexistent/sensord.service"     # this machine's own unit, if any, stays out
    return {**env, **extra}


class Daemon:
    """`sensord serve --config FILE` from ``cwd``, as an operator or systemd starts it."""

    def __init__(self, config: Path, cwd: Path, port: int, *, env: dict | None = None, scheme="http",
                 cert: str | bool = False):
        self.port, self.base = port, f"{scheme}://127.0.0.1:{port}"
        self.log = cwd / "daemon.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(SENSORD + ["serve", "--config", str(config)], cwd=cwd,
                                         env=env or shell_env(), stdout=log, stderr=subprocess.STDOUT)
        self.cert = cert

    def up(self) -> bool:
        try:
            return requests.get(self.base + MODALITY, timeout=5, verify=self.cert).status_code == 401
        except (requests.ConnectionError, requests.Timeout):     # not listening yet, or slow to answer
            return False

    def __enter__(self):
        if not wait_until(lambda: self.up() or self.proc.poll() is not None, 30) or not self.up():
            self.stop()
            raise AssertionError(f"the daemon did not come up:\n{self.log.read_text()}")
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __exit__(self, *exc):
        self.stop()


def one_line_failure(run: subprocess.CompletedProcess) -> str:
    assert run.returncode != 0 and "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sensord: "), run.stderr
    return lines[0]


@pytest.mark.process
def test_the_walk_through_runs_as_written(tmp_path):
    """`make run` in one terminal (state in ./state, admin made at first
    start), the walk-through in another, in the same folder."""
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("needs curl and bash")
    port = free_port()
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")             # the walk-through calls .venv/bin/sensord
    config = tmp_path / "port.toml"                              # the embedded defaults but the port
    config.write_text(f"[server]\nport = {port}\n")
    script = readme_block('A="admin:$(cat state/admin-password)"').replace("43809", str(port))
    env = shell_env(SENSORD_CONFIG=str(config))                  # for `sensord expose`: the port
    with Daemon(config, tmp_path, port):
        run = subprocess.run(["bash", "-c", "set -o pipefail\n" + script], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert "expose: done on" in run.stdout
    states = [json.loads(line[len("data: "):])["state"] for line in run.stdout.splitlines()
              if line.startswith("data: {") and '"state"' in line]
    assert states.index("Reading") < states.index("NewImage"), states
    [image] = json.loads(run.stdout[run.stdout.rindex("[{"):])       # the last command's answer
    assert image["width"] > 0 and image["deviceInfo"]["deviceId"] in run.stdout


@pytest.mark.process
def test_the_https_step_and_the_cli_on_a_service_like_install(tmp_path):
    """The README's HTTPS step (its folder made by the step itself), a daemon
    with its state elsewhere, and the operator CLI from another folder:
    through the config, then through the shipped unit with its
    LoadCredential= lines on (the credential copy absent, as from a shell)."""
    if shutil.which("openssl") is None or shutil.which("bash") is None:
        pytest.skip("needs openssl and bash")
    etc = tmp_path / "etc" / "sensord"                            # /etc/sensord, not there yet
    step = readme_block("install -d /etc/sensord").replace("/etc/sensord", str(etc))
    made = subprocess.run(["bash", "-e", "-c", step], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    cert, key = etc / "tls.crt", etc / "tls.key"
    assert cert.is_file() and key.stat().st_mode & 0o077 == 0

    port, state = free_port(), tmp_path / "var" / "state"
    daemon_config = tmp_path / "sensord.toml"
    daemon_config.write_text(f'[server]\nport = {port}\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
                             f'[store]\nstate_dir = "{state}"\n'
                             f'[drivers]\nurls = ["sim://?time_scale=0.01"]\n')
    (tmp_path / "daemon-cwd").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    # As the README configures the service: the credential paths, and no state_dir.
    service_config = tmp_path / "service.toml"
    tls = readme_block("[server]")
    assert "/run/credentials/sensord.service/tls.crt" in tls
    service_config.write_text(tls.replace("[server]\n", f"[server]\nport = {port}\n"))
    # The shipped unit, its LoadCredential= lines uncommented as the README says. (Its
    # StateDirectory= would be /var/lib/sensord, out of a test's reach: tests/test_cli_operator.py
    # covers it; here the daemon's --state-dir in ExecStart names the folder.)
    unit = tmp_path / "sensord.service"
    shipped = (ROOT / "systemd" / "sensord.service").read_text()
    assert "#LoadCredential=tls.crt:/etc/sensord/tls.crt" in shipped
    exec_start = f"--config {service_config} --state-dir {state}"
    unit.write_text(shipped.replace("--config /etc/sensord/sensord.toml", exec_start)
                    .replace("#LoadCredential=", "LoadCredential=").replace("/etc/sensord", str(etc)))

    def sensord(*words, **env):
        return subprocess.run(SENSORD + list(words), cwd=elsewhere, env=shell_env(**env),
                              capture_output=True, text=True, timeout=60)

    with Daemon(daemon_config, tmp_path / "daemon-cwd", port, scheme="https", cert=str(cert)):
        assert (state / "admin-password").is_file()
        status = sensord("status", "--config", str(daemon_config))
        assert status.returncode == 0, status.stderr
        assert f"sensord at https://127.0.0.1:{port}" in status.stdout and "devices (3):" in status.stdout

        through_unit = sensord("devices", "--config", str(service_config), SENSORD_UNIT=str(unit))
        assert through_unit.returncode == 0, through_unit.stderr
        assert len(through_unit.stdout.strip().splitlines()) == 3

        line = one_line_failure(sensord("devices", "--config", str(service_config)))
        assert "/run/credentials/sensord.service/tls.crt" in line and "is it running?" in line

        wrong = sensord("status", "--config", str(daemon_config), SENSORD_PASSWORD="guess")
        assert "wrong user or password" in one_line_failure(wrong)

    line = one_line_failure(sensord("status", "--config", str(daemon_config)))
    assert f"cannot reach the daemon at https://127.0.0.1:{port}" in line
