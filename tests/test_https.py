"""HTTPS on the daemon's port, as the vendor's service serves it: a
certificate path in the config, the whole API through the TLS front."""
from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from sensord.daemon.host import health
from tests.support.daemon_process import MODALITY, ROOT, DaemonProcess, daemon_process
from tests.support.images import image_info, png16, raw_image, upload_files
from tests.support.loopback import wait_until
from tests.support.modality import create_session, device_of, expose, subscribe_status
from tests.support.server import PASSWORD, USER

FILTERS = "/api/dsio/filters/v1"


@pytest.fixture
def tls_serve(serve, pki):
    return lambda **sections: serve(server={"tls_cert": pki.cert, "tls_key": pki.key}, **sections)


def test_the_apis_over_https_hand_out_https_urls(tls_serve, pki):
    srv = tls_serve()
    assert srv.base.startswith("https://")
    # The name the vendor SDK uses by default, checked against the certificate.
    localhost = f"https://localhost:{srv.server.port}"
    assert srv.http.get(localhost + MODALITY).ok

    dev = device_of(srv, "Simradix Select")["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    _, info = expose(srv, sid, dev, subscribe_status(srv, sid))      # event stream over TLS too
    assert info["imageUrl"].startswith("https://127.0.0.1:")
    media = srv.http.get(info["imageUrl"])
    assert media.status_code == 200 and media.headers["Content-Type"] == "image/png"

    media = png16(raw_image())
    created = srv.http.post(srv.url(FILTERS + "/images"), files=upload_files(image_info(), media))
    assert created.status_code == 201, created.text
    assert created.json()["url"].startswith("https://") and created.headers["Location"].startswith("https://")
    assert srv.http.get(created.json()["url"]).content == media


def test_plain_http_on_the_https_port_gets_no_answer(tls_serve):
    srv = tls_serve()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{srv.server.port}{MODALITY}", timeout=5)
    assert srv.http.get(srv.url(MODALITY)).ok       # and the front serves on


def test_the_health_probe_goes_through_tls(tls_serve):
    srv = tls_serve()
    assert health.check(srv.daemon, srv.server, timeout=5) == (True, "healthy")


def config_with_tls(pki, key: str | None = None) -> str:
    return f'[server]\ntls_cert = "{pki.cert}"\ntls_key = "{key if key is not None else pki.key}"\n'


@pytest.mark.process
def test_serve_over_https_with_the_cli_and_sigterm(tmp_path, pki):
    daemon = DaemonProcess(tmp_path, config_with_tls(pki), cert=pki.cert)
    daemon.start()
    try:
        assert f"listening on https://127.0.0.1:{daemon.port}" in daemon.log()
        env = {**os.environ, "SENSORD_USER": USER, "SENSORD_PASSWORD": PASSWORD}
        # No --url: the CLI finds the daemon (https, port, certificate) in the same config.
        config = daemon.config.read_text().replace("[server]\n", f"[server]\nport = {daemon.port}\n")
        (tmp_path / "cli.toml").write_text(config)
        status = subprocess.run([sys.executable, "-m", "sensord.daemon.host.cli", "status", "--config", str(tmp_path / "cli.toml")],
                                capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        assert status.returncode == 0, status.stderr
        assert "devices (3):" in status.stdout
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.kill()
    assert "Traceback" not in daemon.log()


@pytest.mark.parametrize("which, expected", [
    ("missing", "does not exist"),
    ("other_key", "does not match the certificate"),
    ("encrypted_key", "is encrypted"),
])
@pytest.mark.process
def test_a_certificate_that_cannot_be_used_stops_the_start_naming_it(tmp_path, pki, which, expected):
    key = str(tmp_path / "missing.pem") if which == "missing" else getattr(pki, which)
    daemon = DaemonProcess(tmp_path, config_with_tls(pki, key))
    with open(daemon.log_path, "w") as log:
        code = subprocess.run([sys.executable, "-m", "sensord.daemon.host.cli", "serve", "--config", str(daemon.config),
                               "--port", str(daemon.port), "--state-dir", str(daemon.state)],
                              stdout=log, stderr=subprocess.STDOUT, env=daemon.env, cwd=ROOT, timeout=60).returncode
    assert code == 2
    assert expected in daemon.log() and key in daemon.log()
    assert "Traceback" not in daemon.log()


@pytest.mark.process
def test_plain_http_stays_the_default(tmp_path):
    with daemon_process(tmp_path) as daemon:
        assert f"listening on http://127.0.0.1:{daemon.port}" in daemon.log()


def served_certificate(port: int) -> bytes:
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port)))


def der(path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(Path(path).read_text())


@pytest.mark.process
def test_sighup_reads_a_certificate_renewed_in_place(tmp_path, pki):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(pki.cert, cert)
    shutil.copy(pki.key, key)
    with daemon_process(tmp_path, f'[server]\ntls_cert = "{cert}"\ntls_key = "{key}"\n', cert=str(cert)) as daemon:
        assert served_certificate(daemon.port) == der(pki.cert)

        (tmp_path / "garbage.key").write_text("not a key")      # a broken renewal changes nothing
        shutil.copy(tmp_path / "garbage.key", key)
        daemon.signal(signal.SIGHUP)
        assert wait_until(lambda: "reload refused" in daemon.log()), daemon.log()
        assert served_certificate(daemon.port) == der(pki.cert)

        shutil.copy(pki.other_cert, cert)                         # renewed: same paths, new files
        shutil.copy(pki.other_key, key)
        daemon.signal(signal.SIGHUP)
        assert wait_until(lambda: "TLS certificate read again" in daemon.log()), daemon.log()
        assert served_certificate(daemon.port) == der(pki.other_cert)
