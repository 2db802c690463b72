"""SIGHUP against the real daemon process: what is safe changes live, the
rest is named in the log, an invalid file changes nothing."""
from __future__ import annotations

import signal

import pytest
import requests

from sensord.daemon.api.auth import hash_password
from tests.support.daemon_process import MODALITY, daemon_process
from tests.support.loopback import wait_until
from tests.support.sdnotify import datagram_socket, fields
from tests.support.server import PASSWORD, USER

NURSE, NURSE_PASSWORD = "nurse", "another long passphrase"


def create_session(daemon, auth, index: int) -> requests.Response:
    device = daemon.http.get(daemon.url(MODALITY + "/devices"), auth=auth).json()[index]["deviceId"]
    return requests.post(daemon.url(MODALITY + "/acquisition"), json={"deviceId": device}, auth=auth, timeout=10)


@pytest.mark.process
def test_sighup_applies_users_and_log_level_and_names_what_needs_a_restart(tmp_path):
    notify_path = str(tmp_path / "notify")
    with datagram_socket(notify_path, timeout=10) as notify, \
            daemon_process(tmp_path, '[log]\nlevel = "INFO"\n', env={"NOTIFY_SOCKET": notify_path}) as daemon:
        assert fields(notify.recv(4096))["READY"] == "1"
        first = create_session(daemon, (USER, PASSWORD), 0)
        assert first.status_code == 201
        assert f"session {first.json()['sessionId']} created" in daemon.log()

        # The nurse replaces the dentist, logging drops to warnings, and a
        # key that only a restart can change is changed too.
        daemon.write_config(f'{NURSE} = "{hash_password(NURSE_PASSWORD)}"\n'
                            '[log]\nlevel = "WARNING"\n[server]\nthreads = 12\n')
        text = daemon.config.read_text()
        daemon.config.write_text(text.replace(f'{USER} = ', "# removed: ", 1))
        daemon.signal(signal.SIGHUP)
        reloading = fields(notify.recv(4096))
        assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
        assert fields(notify.recv(4096))["READY"] == "1"

        log = daemon.log()
        assert "reload: server.threads changed; that takes a restart" in log
        # (the "applied" line itself is INFO, under the new WARNING level)
        second = create_session(daemon, (NURSE, NURSE_PASSWORD), 1)
        assert second.status_code == 201
        assert requests.get(daemon.url(MODALITY), auth=(USER, PASSWORD), timeout=5).status_code == 401
        assert requests.get(daemon.url(MODALITY), auth=(NURSE, NURSE_PASSWORD), timeout=5).status_code == 200
        assert f"session {second.json()['sessionId']} created" not in daemon.log()
        assert "reload refused" not in daemon.log()


@pytest.mark.process
def test_an_invalid_config_on_sighup_changes_nothing(tmp_path):
    with daemon_process(tmp_path) as daemon:
        daemon.config.write_text(daemon.config.read_text() + "[store]\nlifetime = 5\n")
        daemon.signal(signal.SIGHUP)
        assert wait_until(lambda: "reload refused" in daemon.log()), daemon.log()
        assert "unknown key 'store.lifetime'" in daemon.log()
        assert daemon.http.get(daemon.url(MODALITY)).status_code == 200
        assert daemon.proc.poll() is None


@pytest.mark.process
def test_a_rule_for_a_target_that_is_not_running_is_refused(tmp_path):
    with daemon_process(tmp_path) as daemon:
        daemon.write_config('[[forward.targets]]\nname = "dm"\nkind = "datamint"\napi_key = "k"\n'
                            'url = "http://127.0.0.1:9"\n[[forward.rules]]\ntarget = "dm"\n')
        daemon.signal(signal.SIGHUP)
        assert wait_until(lambda: "reload refused" in daemon.log()), daemon.log()
        assert "new targets need a restart" in daemon.log()
        assert daemon.http.get(daemon.url(MODALITY)).status_code == 200
