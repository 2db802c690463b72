"""A real daemon behind a real waitress server on a free port, in this process."""
from __future__ import annotations

import contextlib
import functools
import threading
from pathlib import Path

import requests

from sensord.daemon.api.auth import hash_password
from sensord.daemon.app import create_app
from sensord.daemon.host.server import Server
from sensord.daemon.service import Sensord
from sensord.daemon.settings import from_mapping

USER, PASSWORD = "dentist", "correct horse battery staple"   # an operator: most tests drive devices
CLIENT, CLIENT_PASSWORD = "imaging", "another correct horse"    # a client: the imaging software's role


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


@functools.cache
def client_password_hash() -> str:
    return hash_password(CLIENT_PASSWORD)


def default_users() -> dict:
    """[auth.users] of the tests: the operator and the client."""
    return {USER: _password_hash(), CLIENT: client_password_hash()}


def make_settings(state_dir: Path, **sections):
    data = {"store": {"state_dir": str(state_dir)},
            "auth": {"users": default_users(), "roles": {USER: "operator"}},
            "server": {"port": 0, "threads": 8}, "acquisition": {"max_subscribers": 16},
            "drivers": {"urls": ["sim://?time_scale=0.01&seed=5"]}}
    for name, table in sections.items():
        data.setdefault(name, {}).update(table)
    return from_mapping(data)


class Running:
    """A started daemon: its services, its base URL and an authenticated client."""

    def __init__(self, daemon: Sensord, server):
        self.daemon = daemon
        self.server = server
        self.base = f"{server.scheme}://127.0.0.1:{server.port}"
        self.http = requests.Session()
        self.http.auth = (USER, PASSWORD)
        if server.scheme == "https":
            # Self-signed in the tests; trust_env off, or $REQUESTS_CA_BUNDLE overrides verify.
            self.http.verify = daemon.settings.server.tls_cert
            self.http.trust_env = False

    def url(self, path: str) -> str:
        return self.base + path

    def as_user(self, user: str, password: str) -> "Running":
        """The same daemon, with ``.http`` logged in as another user (role tests)."""
        view = Running(self.daemon, self.server)
        view.http.auth = (user, password)
        return view


@contextlib.contextmanager
def running(settings, *, prepare=None):
    daemon = Sensord(settings)
    if prepare is not None:
        prepare(daemon)
    daemon.start()
    server = Server(create_app(daemon), settings, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield Running(daemon, server)
    finally:
        daemon.end_event_streams()
        server.stop()
        thread.join(timeout=10)
        daemon.close()
