"""Certificates for the HTTPS tests, made with the openssl command."""
from __future__ import annotations

import os
import shutil
import subprocess
import types

import pytest


def _openssl(folder, *args):
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A self-signed certificate for localhost, its key, and keys that do not fit."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("pki")
    _openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem",
             "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    _openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other_key.pem",
             "-out", "other_cert.pem", "-days", "2", "-subj", "/CN=other")
    _openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-passout", "pass:x", "-keyout",
             "encrypted_key.pem", "-out", "encrypted_cert.pem", "-days", "2", "-subj", "/CN=enc")
    (d / "combined.pem").write_bytes((d / "cert.pem").read_bytes() + (d / "key.pem").read_bytes())
    (d / "garbage.pem").write_bytes(os.urandom(600))
    return types.SimpleNamespace(**{p.stem: str(p) for p in d.glob("*.pem")}, dir=d)
