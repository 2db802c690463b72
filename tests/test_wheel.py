"""What a user installs: the wheel, not the editable checkout.

The tree is copied (as a fresh clone would be, without the virtual
environment or caches), built into a wheel, installed non-editable into a
new virtual environment, and `sensord serve` is started from there with the
shipped configuration, away from the checkout. A module, static file or the
default config left out of the wheel fails here, where the editable install
of `make test` would not notice.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import requests

from tests.support.loopback import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("daemon", "drivers", "filters")
IGNORED = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", "state",
                                 "artifacts", ".pytest_cache", ".mypy_cache")

pytestmark = pytest.mark.process


def _run(*command, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, command))}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the wheel's path, the bin folder of a venv that has it installed)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work / "dist"), str(source),
         timeout=600)
    [wheel] = (work / "dist").glob("sensord-*.whl")
    venv.create(work / "venv", with_pip=True)
    bin_dir = work / "venv" / "bin"
    _run(str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel), timeout=900)
    return wheel, bin_dir


def test_the_wheel_holds_every_module_and_data_file(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"sensord/{path.relative_to(ROOT).as_posix()}"
                for folder in FOLDERS for path in (ROOT / folder).rglob("*")
                if path.is_file() and "__pycache__" not in path.parts}
    expected.add("sensord/config/sensord.toml")
    assert sorted(expected - names) == []
    # One namespace: nothing of ours at the top level, where other distributions live.
    tops = {name.split("/")[0] for name in names}
    assert tops == {"sensord", next(top for top in tops if top.endswith(".dist-info"))}


def test_every_installed_module_imports(installed):
    _, bin_dir = installed
    script = ("import importlib, pkgutil, sensord.daemon, sensord.drivers, sensord.filters\n"
              "for pkg in (sensord.daemon, sensord.drivers, sensord.filters):\n"
              "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
              "        importlib.import_module(m.name)\n"
              "import sensord.daemon, pathlib\n"
              "print(pathlib.Path(sensord.daemon.__file__).parent)\n")
    done = _run(str(bin_dir / "python"), "-c", script, cwd=bin_dir, timeout=120)
    # From site-packages, not from this checkout.
    assert "site-packages" in done.stdout and str(ROOT) not in done.stdout


def test_the_installed_daemon_serves_both_apis_and_the_status_page(installed, tmp_path):
    _, bin_dir = installed
    config = tmp_path / "sensord.toml"
    # The documented config as a service install copies it (`sensord default-config`).
    config.write_text(_run(str(bin_dir / "sensord"), "default-config", timeout=60).stdout)
    assert config.read_text() == (ROOT / "config" / "sensord.toml").read_text()
    port, state = free_port(), tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STATE_DIRECTORY", "NOTIFY_SOCKET")}
    log_path = tmp_path / "sensord.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(bin_dir / "sensord"), "serve", "--config", str(config), "--port", str(port),
                                 "--state-dir", str(state)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        password_file = state / "admin-password"

        def up() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return password_file.exists() and requests.get(base + "/", timeout=5).status_code == 401
            except (requests.ConnectionError, requests.Timeout):     # not listening yet, or slow to answer
                return False

        assert wait_until(up, 60), log_path.read_text()
        http = requests.Session()
        http.auth = ("admin", password_file.read_text().strip())
        assert http.get(base + "/api/dsio/modality/v1", timeout=10).status_code == 200
        devices = http.get(base + "/api/dsio/modality/v1/devices", timeout=10)
        assert devices.status_code == 200 and len(devices.json()) == 3     # the default sim://
        icon = http.get(devices.json()[0]["iconUrl"], timeout=10)          # package data, from the wheel
        assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/png"
        assert http.get(base + "/api/dsio/filters/v1", timeout=10).status_code == 200
        page = http.get(base + "/", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
        for asset in ("status.js", "status.css"):
            assert http.get(f"{base}/assets/{asset}", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log_path.read_text()
