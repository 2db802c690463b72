"""The type checker passes over sensord.daemon, sensord.drivers and sensord.filters.

mypy cannot follow the editable install's import hook, and the folders are
not named ``sensord`` on disk, so it checks them through a ``sensord/``
folder of symbolic links, configured by pyproject.toml's ``[tool.mypy]``.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.process


def test_mypy_finds_no_errors(tmp_path):
    farm = tmp_path / "sensord"
    farm.mkdir()
    for folder in ("daemon", "drivers", "filters"):
        (farm / folder).symlink_to(ROOT / folder, target_is_directory=True)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(ROOT / ".mypy_cache"),
         "-p", "sensord.daemon", "-p", "sensord.drivers", "-p", "sensord.filters"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Success: no issues found" in done.stdout
