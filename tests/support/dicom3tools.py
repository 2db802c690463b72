"""dciodvfy, the DICOM standard's IOD validator (David Clunie's dicom3tools), for the tests.

``dciodvfy()`` (session scope) gives the path of the program, installing
Debian's ``dicom3tools`` package once if needed: as root on Debian it runs
``apt-get update`` and ``apt-get install dicom3tools``, holding a file lock
so parallel test workers install it once; elsewhere, or if that fails, the
tests that need it are skipped with the reason (CI runs as root on Debian,
so there it installs).

``validate(path)`` runs it on one file and returns its output (stdout and
stderr together, as dciodvfy mixes them); `problems` picks the lines that
are errors or warnings.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

DCIODVFY = "dciodvfy"
LOCK = Path(tempfile.gettempdir()) / "sensord-tests-apt.lock"


def ensure_installed() -> str:
    """The path of dciodvfy, installing Debian's dicom3tools once if needed."""
    found = shutil.which(DCIODVFY)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("dciodvfy is not installed and this is not a root Debian machine (apt-get install dicom3tools)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # another worker may be installing it right now
        try:
            if not shutil.which(DCIODVFY):
                for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "dicom3tools"]):
                    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
                    if done.returncode != 0:
                        pytest.skip(f"{' '.join(command)} failed ({done.returncode}): "
                                    f"{done.stderr.strip()[-500:]}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    found = shutil.which(DCIODVFY)
    if not found:
        pytest.skip("dicom3tools installed, but dciodvfy is not on the PATH")
    return found


@pytest.fixture(scope="session")
def dciodvfy() -> str:
    return ensure_installed()


def validate(program: str, path: Path) -> str:
    done = subprocess.run([program, str(path)], capture_output=True, text=True, timeout=120)
    return (done.stdout + done.stderr).strip()


def problems(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith(("Error", "Warning"))]
