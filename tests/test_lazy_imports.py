"""The DICOM stack is imported only when the configuration asks for DICOM.

pydicom, pynetdicom and pyjpegls cost the daemon ~26 MB resident (idle
110 -> 82 MB with the default configuration), so `sensord serve` with sim
devices and no DICOM configured must not import them, and each setting that
needs them must. Each case runs the real ``serve`` path (settings, state
lock, services, app, server and its socket) in a fresh interpreter, whose
server loop reports ``sys.modules`` instead of serving.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process

DICOM = ("pydicom", "pynetdicom", "jpeg_ls")

SERVE = """
import json, sys
from sensord.daemon.host import cli, server

def report(self):
    print("MODULES " + json.dumps(sorted(sys.modules)), flush=True)

server.Server.run = report          # the start as it is, then no serving
sys.exit(cli.main(sys.argv[1:]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def modules_after_start(tmp_path: Path, config: str) -> set[str]:
    path = tmp_path / "sensord.toml"
    path.write_text('[log]\nlevel = "WARNING"\n' + config)
    done = subprocess.run([sys.executable, "-c", SERVE, "serve", "--config", str(path), "--port", "0",
                           "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("MODULES ")]
    assert len(lines) == 1, done.stdout[-2000:] + done.stderr[-2000:]
    return set(json.loads(lines[0][len("MODULES "):]))


def test_the_default_configuration_imports_no_dicom_module(tmp_path):
    modules = modules_after_start(tmp_path, "")     # sim devices, no target, no worklist, no MPPS
    assert "sensord.daemon.service" in modules and "sensord.drivers.sim" in modules   # it did start
    assert not [m for m in DICOM if m in modules]
    assert not [m for m in modules if m.startswith(("sensord.daemon.forward.platforms.dicom",
                                                    "sensord.daemon.forward.mpps",
                                                    "sensord.daemon.forward.commitment",
                                                    "sensord.daemon.worklist.query"))]
    # Nor requests (~5 MB): only HTTP platform targets need it.
    assert "requests" not in modules


@pytest.mark.parametrize("config", [
    '[[forward.targets]]\nname = "pacs"\nkind = "dimse"\nhost = "127.0.0.1"\nport = 4242\ncalled_ae = "PACS"\n',
    '[[forward.targets]]\nname = "web"\nkind = "dicomweb"\nurl = "http://127.0.0.1:9/dicom-web"\n',
    '[worklist]\nhost = "127.0.0.1"\nport = 9\ncalled_ae = "WL"\n',
    '[mpps]\nhost = "127.0.0.1"\nport = 9\ncalled_ae = "MPPS"\n',
    "[dicom]\nlisten_port = {port}\n",
], ids=["dimse-target", "dicomweb-target", "worklist", "mpps", "listen-port"])
def test_each_dicom_setting_imports_the_dicom_stack(tmp_path, config):
    modules = modules_after_start(tmp_path, config.format(port=_free_port()))
    assert "pydicom" in modules
    if "dicomweb" not in config:        # DICOMweb builds files; the others also speak DIMSE
        assert "pynetdicom" in modules
