"""The daemon as systemd runs it: `sensord serve --config FILE` in a child process."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.loopback import free_port, wait_until
from tests.support.server import PASSWORD, USER, _password_hash

ROOT = Path(__file__).resolve().parents[2]
MODALITY = "/api/dsio/modality/v1"


class DaemonProcess:
    def __init__(self, folder: Path, config: str, *, env: dict | None = None, cert: str | None = None,
                 preexec_fn=None):
        """``cert``: the daemon serves HTTPS with it (``config`` names it too); the client trusts it.
        ``preexec_fn``: run in the child before the daemon starts (e.g. to lower a limit)."""
        self.preexec_fn = preexec_fn
        self.folder = folder
        self.config = folder / "sensord.toml"
        self.state = folder / "state"
        self.log_path = folder / "sensord.log"
        self.port = free_port()
        self.base = f"{'https' if cert else 'http'}://127.0.0.1:{self.port}"
        self.http = requests.Session()
        self.http.auth = (USER, PASSWORD)
        if cert:
            # trust_env off, or $REQUESTS_CA_BUNDLE overrides verify.
            self.http.verify, self.http.trust_env = cert, False
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        self.env.update(env or {})
        self.write_config(config)
        self.proc: subprocess.Popen | None = None

    def write_config(self, extra: str) -> None:
        """The test user, then ``extra`` TOML (which must not repeat [auth.users]
        nor [auth.roles]), then the test user's role: operator, last so that
        ``extra`` may go on with [auth.users]."""
        self.config.write_text(f'[auth.users]\n{USER} = "{_password_hash()}"\n\n{extra}\n'
                               f'\n[auth.roles]\n"{USER}" = "operator"\n')

    def url(self, path: str) -> str:
        return self.base + path

    def start(self, timeout: float = 30) -> None:
        for _ in range(3):
            logged = self.log_path.stat().st_size if self.log_path.exists() else 0
            with open(self.log_path, "a") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "sensord.daemon.host.cli", "serve", "--config", str(self.config),
                     "--port", str(self.port), "--state-dir", str(self.state)],
                    cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self.preexec_fn)
            if wait_until(lambda: self.up() or self.proc.poll() is not None, timeout) \
                    and self.proc.poll() is None and self.up():
                return
            # The port was free when picked; if something took it since, pick another and start again.
            if self.proc.poll() is None or b"Address already in use" not in self.log_path.read_bytes()[logged:]:
                break
            self.port = free_port()
            self.base = f"{self.base.split('://')[0]}://127.0.0.1:{self.port}"
        self.kill()
        raise AssertionError(f"the daemon did not come up (exit {self.proc.poll()}):\n{self.log()}")

    def up(self) -> bool:
        try:
            return self.http.get(self.url(MODALITY), timeout=5).status_code == 200
        except (requests.ConnectionError, requests.Timeout):     # not listening yet, or slow to answer
            return False

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def daemon_process(folder: Path, config: str = "", **kwargs):
    """A started daemon; killed at the end if the test left it running."""
    daemon = DaemonProcess(folder, config, **kwargs)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.kill()
