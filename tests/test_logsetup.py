"""Log format under journald and the configured levels."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from sensord.daemon.host import logsetup
from sensord.daemon.settings import LogSettings
from tests.support.daemon_process import ROOT

SCRIPT = ("import logging; from sensord.daemon.host import logsetup; from sensord.daemon.settings import LogSettings; "
          "logsetup.configure(LogSettings()); logging.getLogger('sensord').warning('sensor unplugged')")


def run_with_stderr_to(path, journal_stream: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal_stream is not None:
        env["JOURNAL_STREAM"] = journal_stream
    with open(path, "w") as err:
        subprocess.run([sys.executable, "-c", SCRIPT], stderr=err, env=env, cwd=ROOT, check=True, timeout=60)
    return path.read_text().strip()


@pytest.mark.process
def test_no_timestamp_when_stderr_is_the_journal_stream(tmp_path):
    path = tmp_path / "stderr"
    path.touch()
    st = os.stat(path)
    # <4>: the syslog priority journald reads (and strips) so `journalctl -p warning` filters
    assert run_with_stderr_to(path, f"{st.st_dev}:{st.st_ino}") == "<4>WARNING sensord: sensor unplugged"


@pytest.mark.process
def test_timestamp_when_the_variable_names_another_stream(tmp_path):
    # Inherited by a child whose stderr went elsewhere: the journal does not stamp these lines.
    for value in ("1:2", "garbage", None):
        line = run_with_stderr_to(tmp_path / "stderr", value)
        assert line.endswith("WARNING sensord: sensor unplugged") and line[:4].isdigit(), line


def test_levels_quiet_the_scheduler_and_follow_overrides_and_reloads():
    try:
        logsetup.apply_levels(LogSettings(level="INFO"))
        assert logging.getLogger().level == logging.INFO
        assert logging.getLogger("apscheduler.executors.default").getEffectiveLevel() == logging.WARNING

        logsetup.apply_levels(LogSettings(level="INFO", loggers={"sensord.forward": "DEBUG", "apscheduler": "INFO"}))
        assert logging.getLogger("sensord.forward").getEffectiveLevel() == logging.DEBUG
        assert logging.getLogger("apscheduler.scheduler").getEffectiveLevel() == logging.INFO

        logsetup.apply_levels(LogSettings(level="WARNING"))          # the override is gone again
        assert logging.getLogger("sensord.forward").getEffectiveLevel() == logging.WARNING
    finally:
        logsetup.apply_levels(LogSettings(level="WARNING"))
        logging.getLogger().setLevel(logging.WARNING)
