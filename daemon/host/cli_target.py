"""Which daemon the operator CLI talks to, and as whom: its URL, the
certificate to trust, the state folder, the user and the password.

The CLI reads the same configuration as the daemon, so on a service install
``sensord status --config /etc/sensord/sensord.toml`` finds what the service
uses. The state folder (where the daemon wrote ``admin-password``) is, first
found:

1. ``--state-dir``;
2. ``--state-dir`` in the ExecStart of the installed unit that runs this
   config (unit_file.py), then ``[store] state_dir`` in the config;
3. that unit's ``StateDirectory=`` under /var/lib (``/var/lib/sensord``),
   which is what ``$STATE_DIRECTORY`` holds inside the service;
4. ``$STATE_DIRECTORY``, else ``./state``: what ``sensord serve`` would use
   from this shell (``make run`` in a checkout).

Every failure is a ``CliError`` whose message says what to do.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sensord.daemon import settings as settings_mod
from sensord.daemon.api.auth import DEFAULT_USER, PASSWORD_FILE

from . import unit_file
from .health import probe_host


class CliError(Exception):
    """A failure the CLI reports as one line on stderr; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass
class Target:
    base: str                   # the daemon's base URL
    verify: str | bool          # the certificate to trust, or True: the system's trust store
    trust_env: bool             # False: $REQUESTS_CA_BUNDLE and proxies are not consulted
    user: str
    user_from: str
    password: str
    password_from: str
    state_dir: Path
    state_from: str


def find(args) -> Target:
    config = args.config or os.environ.get("SENSORD_CONFIG") or None
    unit = _unit_running(config)
    overrides = {"server.host": unit.option("--host") if unit else None,
                 "server.port": _port(unit.option("--port")) if unit else None}
    try:
        settings = settings_mod.load(config, overrides=overrides)
    except settings_mod.SettingsError as err:
        raise CliError(str(err), code=2) from None
    state_dir, state_from = _state_folder(args, config, unit, settings)
    base, verify, trust_env = _address(args, settings, unit)
    user, user_from = _user(args)
    password, password_from = _password(state_dir, state_from)
    return Target(base, verify, trust_env, user, user_from, password, password_from, state_dir, state_from)


def _unit_running(config: str | None) -> unit_file.Unit | None:
    """The installed unit whose ExecStart serves ``config``, or None."""
    if config is None:
        return None
    path = unit_file.find()
    if path is None:
        return None
    try:
        unit = unit_file.read(path)
    except OSError:
        return None
    served = unit.option("--config")
    try:
        return unit if served is not None and os.path.samefile(served, config) else None
    except OSError:
        return None


def _port(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _state_folder(args, config: str | None, unit: unit_file.Unit | None, settings) -> tuple[Path, str]:
    if args.state_dir:
        return Path(args.state_dir).expanduser().resolve(), "--state-dir"
    # Inside the service a relative folder is taken from the unit's working directory (/ by default).
    service_cwd = Path(unit.working_directory or "/") if unit else Path.cwd()
    if unit is not None and unit.option("--state-dir"):
        return service_cwd / str(unit.option("--state-dir")), f"ExecStart= of {unit.path}"
    configured = _configured_state_dir(config)
    if configured:
        return (service_cwd / configured).expanduser().resolve(), f"[store] state_dir in {config}"
    if unit is not None and unit.state_folder is not None:
        return unit.state_folder, f"StateDirectory= of {unit.path}"
    if os.environ.get("STATE_DIRECTORY"):
        return Path(settings.store.state_dir), "$STATE_DIRECTORY"
    return Path(settings.store.state_dir), "the default ./state of the current folder"


def _configured_state_dir(config: str | None) -> str:
    if config is None:
        return ""
    with open(config, "rb") as f:           # settings.load has read it already
        data = tomllib.load(f)
    value = data.get("store", {}).get("state_dir", "")
    return value if isinstance(value, str) else ""


def _address(args, settings, unit: unit_file.Unit | None) -> tuple[str, str | bool, bool]:
    if args.url:
        base = args.url.rstrip("/")
        if args.cacert:
            return base, _readable_certificate(args.cacert, "--cacert"), False
        return base, True, True
    server = settings.server
    scheme = "https" if server.tls_cert else "http"
    host = probe_host(server.host)
    if ":" in host:
        host = f"[{host}]"          # an IPv6 address in a URL
    base = f"{scheme}://{host}:{server.port}"
    if scheme == "http":
        return base, True, False
    if args.cacert:
        return base, _readable_certificate(args.cacert, "--cacert"), False
    # Our own daemon on loopback: trust its (typically self-signed) certificate.
    # requests lets $REQUESTS_CA_BUNDLE override a session's verify, so the
    # environment is not consulted (nor its proxies: this is loopback).
    cert = server.tls_cert
    if not os.access(cert, os.R_OK) and unit is not None:
        # A LoadCredential= copy exists only while the service runs: use the file it copies.
        source = unit.credential_source(cert)
        if source and os.access(source, os.R_OK):
            return base, source, False
    return base, _readable_certificate(cert, "[server] tls_cert"), False


def _readable_certificate(path: str, named_by: str) -> str:
    try:
        with open(path, "rb"):
            return path
    except OSError as err:
        hint = ""
        if Path(path).is_relative_to(unit_file.CREDENTIALS_ROOT):
            hint = (" (a LoadCredential= copy exists only while the service runs: "
                    "is it running? systemctl status sensord)")
        raise CliError(f"cannot read the daemon's certificate {path}, {named_by}: {err.strerror}{hint}; "
                       f"pass --cacert with the certificate file (e.g. /etc/sensord/tls.crt)") from None


def _user(args) -> tuple[str, str]:
    if args.user:
        return args.user, "--user"
    if os.environ.get("SENSORD_USER"):
        return os.environ["SENSORD_USER"], "$SENSORD_USER"
    return DEFAULT_USER, "the default user"


def _password(state_dir: Path, state_from: str) -> tuple[str, str]:
    if os.environ.get("SENSORD_PASSWORD"):
        return os.environ["SENSORD_PASSWORD"], "$SENSORD_PASSWORD"
    path = state_dir / PASSWORD_FILE
    try:
        return path.read_text().strip(), str(path)
    except FileNotFoundError:
        raise CliError(f"no password: {path} does not exist (state folder from {state_from}; the daemon "
                       f"writes it at its first start when [auth.users] is empty); set SENSORD_PASSWORD, "
                       f"or name the daemon's --config or --state-dir") from None
    except PermissionError:
        raise CliError(f"cannot read {path}: permission denied (the service's state folder is root's: "
                       f"run as root), or set SENSORD_PASSWORD") from None
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror}; set SENSORD_PASSWORD") from None
