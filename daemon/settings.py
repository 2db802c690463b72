"""Settings: embedded defaults, one TOML file over them, CLI flags over that.

Every key lives in a dataclass below with its default; ``config/sensord.toml``
documents the same keys (a test keeps the two equal). An unknown section or
key is an error at start that names it, so a typo never silently falls back
to a default.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensord.filters.pixel_hash import ALGORITHMS as HASH_ALGS


class SettingsError(ValueError):
    """The configuration cannot be used; the message names the key."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 43809
    threads: int = 16
    max_upload_mb: int = 128
    # Connections open at once (more wait in the listen backlog); sized with
    # the unit's LimitNOFILE (host/descriptors.py).
    max_connections: int = 2000
    # A request's headers must be in within this many seconds of its first
    # byte (of the accept, for a connection's first request), or the
    # connection is closed; a TLS handshake likewise.
    header_timeout_seconds: float = 5.0
    tls_handshake_seconds: float = 5.0
    # SIGTERM: how long work in progress gets before the daemon exits anyway.
    shutdown_seconds: float = 20.0
    # HTTPS: a PEM certificate (chain) and its key; empty cert: plain HTTP.
    tls_cert: str = ""
    tls_key: str = ""
    # Host names (or addresses) besides localhost, 127.0.0.1, [::1] and the
    # address in `host` that requests may name in their Host header.
    allowed_hosts: list = field(default_factory=list)


@dataclass(frozen=True)
class AuthSettings:
    realm: str = "sensord"
    # user name -> password hash made by `sensord hash-password`
    users: dict = field(default_factory=dict)
    # user name -> "client" (the DSIO APIs, its own sessions and resources),
    # "operator" (also sensord's API, the status page, everyone's work) or
    # "metrics" (/metrics only); a user not listed is a client (daemon/api/roles.py)
    roles: dict = field(default_factory=dict)
    # Wrong guesses for one user name from one client (an address; all of
    # loopback is one) before that client waits, and for how long; each
    # wait after the first doubles, up to lockout_max_seconds (api/lockout.py).
    max_failures: int = 5
    lockout_seconds: int = 30
    lockout_max_seconds: int = 900
    # Password hash checks (scrypt, ~100 ms of CPU each) run at once at most.
    max_concurrent_checks: int = 2


@dataclass(frozen=True)
class StoreSettings:
    state_dir: str = ""
    lifetime_seconds: int = 8 * 3600
    quota_mb: int = 4096
    sweep_seconds: int = 60
    pixel_cache_mb: int = 256


@dataclass(frozen=True)
class ImageSettings:
    max_width: int = 8192
    max_height: int = 8192
    png_compression: int = 1
    jpeg_quality: int = 90
    # Largest imageInfo part of an upload, and of any JSON body, in KiB.
    max_info_kb: int = 64
    # Working memory that decodes and filters in progress may hold at once,
    # in MiB (store/pixel_budget.py); beyond it a request waits up to
    # pixel_budget_wait_seconds, then gets 503. Fits one filter call at 8192x8192.
    pixel_budget_mb: int = 1280
    pixel_budget_wait_seconds: float = 2.0


@dataclass(frozen=True)
class DriverSettings:
    # Sensor drivers by URL: sim://, serial:///dev/ttyUSB0 (see drivers/).
    urls: list = field(default_factory=lambda: ["sim://"])
    # Serial ports that appear matching this pattern get a serial driver ("" = off).
    serial_ports: str = ""
    poll_seconds: int = 2


@dataclass(frozen=True)
class AcquisitionSettings:
    hash_alg: str = "MD5"
    gamma: float = 2.3
    preview_max: int = 256
    min_free_mb: int = 256
    max_subscribers: int = 64


@dataclass(frozen=True)
class ForwardSettings:
    # [[forward.targets]]: name, kind (eyened, v7, datamint, dicomweb), the
    # outbox's own keys (concurrency, max_attempts, max_age_hours,
    # backoff_base, backoff_max) and the platform's options.
    targets: list = field(default_factory=list)
    # [[forward.rules]]: target, source = "acquired", filter = "raw" | "unmap"
    # | "select:MODE" | "supreme:TASK:SHARPNESS" | "ae:TASK:SHARPNESS".
    rules: list = field(default_factory=list)
    poll_seconds: int = 1
    # Days finished work stays for operators to look at: an MPPS step whose
    # N-SET was delivered or dropped, with its messages and instances, and a
    # delivered image outbox entry (after its last change).
    keep_delivered_days: int = 30


@dataclass(frozen=True)
class DicomSettings:
    # This station's AE title: the calling AE of every association, and the
    # Scheduled Station AE Title asked of the worklist.
    ae_title: str = "SENSORD"
    # Where sensord accepts associations (storage commitment reports); port 0: no listener.
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    # Seconds to wait for an association to open, and for any DIMSE answer.
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class WorklistSettings:
    host: str = ""                  # empty: no worklist
    port: int = 104
    called_ae: str = ""
    modality: str = "IO"
    refresh_seconds: int = 60


@dataclass(frozen=True)
class MppsSettings:
    host: str = ""                  # empty: no MPPS
    port: int = 104
    called_ae: str = ""


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    # logger name -> level, over `level` (e.g. "sensord.forward" = "DEBUG")
    loggers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    drivers: DriverSettings = field(default_factory=DriverSettings)
    acquisition: AcquisitionSettings = field(default_factory=AcquisitionSettings)
    forward: ForwardSettings = field(default_factory=ForwardSettings)
    dicom: DicomSettings = field(default_factory=DicomSettings)
    worklist: WorklistSettings = field(default_factory=WorklistSettings)
    mpps: MppsSettings = field(default_factory=MppsSettings)
    log: LogSettings = field(default_factory=LogSettings)

    @property
    def state_dir(self) -> Path:
        return Path(self.store.state_dir)


# (section, key) -> (lowest, highest) for numeric keys
_BOUNDS = {
    ("server", "port"): (0, 65535),
    ("server", "threads"): (4, 256),
    ("server", "max_upload_mb"): (1, 4096),
    ("server", "max_connections"): (16, 100_000),
    ("server", "header_timeout_seconds"): (0.5, 300.0),
    ("server", "tls_handshake_seconds"): (0.5, 300.0),
    ("server", "shutdown_seconds"): (0.5, 3600.0),
    ("auth", "max_failures"): (1, 1000),
    ("auth", "lockout_seconds"): (1, 86400),
    ("auth", "lockout_max_seconds"): (1, 7 * 86400),
    # Running plus waiting checks (this + 8, api/hash_gate.py) stay below the
    # front door's 16 threads, so cached credentials never queue behind guesses.
    ("auth", "max_concurrent_checks"): (1, 6),
    ("store", "lifetime_seconds"): (1, 30 * 24 * 3600),
    ("store", "quota_mb"): (1, 10**7),
    ("store", "sweep_seconds"): (1, 86400),
    ("store", "pixel_cache_mb"): (0, 65536),
    ("images", "max_width"): (1, 65535),
    ("images", "max_height"): (1, 65535),
    ("images", "png_compression"): (0, 9),
    ("images", "jpeg_quality"): (1, 100),
    ("images", "max_info_kb"): (1, 16384),
    ("images", "pixel_budget_mb"): (1, 1 << 20),
    ("images", "pixel_budget_wait_seconds"): (0.0, 60.0),
    ("drivers", "poll_seconds"): (1, 3600),
    ("forward", "poll_seconds"): (1, 3600),
    ("forward", "keep_delivered_days"): (1, 3650),
    ("acquisition", "gamma"): (0.1, 10.0),
    ("acquisition", "preview_max"): (16, 4096),
    ("acquisition", "min_free_mb"): (0, 10**7),
    ("acquisition", "max_subscribers"): (1, 1024),
    ("dicom", "listen_port"): (0, 65535),
    ("dicom", "timeout_seconds"): (1.0, 600.0),
    ("worklist", "port"): (1, 65535),
    ("worklist", "refresh_seconds"): (5, 86400),
    ("mpps", "port"): (1, 65535),
}
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _section(cls, name: str, table: Any, source: str):
    if not isinstance(table, dict):
        raise SettingsError(f"{source}: [{name}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise SettingsError(f"{source}: unknown key '{name}.{key}' (known: {', '.join(fields)})")
        default = getattr(cls(), key)
        if type(default) is float and type(value) is int:
            value = float(value)
        # bool is an int in Python; a port of `true` is still a mistake.
        if type(value) is not type(default):
            raise SettingsError(
                f"{source}: '{name}.{key}' must be a {type(default).__name__}, got {value!r}")
        bounds = _BOUNDS.get((name, key))
        if bounds and not bounds[0] <= value <= bounds[1]:
            raise SettingsError(f"{source}: '{name}.{key}' = {value} is outside {bounds[0]}..{bounds[1]}")
        values[key] = value
    return cls(**values)


def _host_name_ok(name: object) -> bool:
    """A DNS name or an IP address, without port, scheme or wildcard."""
    if not isinstance(name, str) or not name:
        return False
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        ipaddress.ip_address(bare)
        return True
    except ValueError:
        return name.isascii() and all(c.isalnum() or c in "-._" for c in name) and name.strip(".") != ""


def _check(settings: Settings, source: str) -> None:
    for name in settings.server.allowed_hosts:
        if not _host_name_ok(name):
            raise SettingsError(f"{source}: 'server.allowed_hosts' takes host names or addresses "
                                f"without port or scheme (like \"sensor-pc.clinic.lan\"), got {name!r}")
    if settings.log.level.upper() not in _LEVELS:
        raise SettingsError(f"{source}: 'log.level' must be one of {', '.join(_LEVELS)}")
    for name, level in settings.log.loggers.items():
        if not isinstance(level, str) or level.upper() not in _LEVELS:
            raise SettingsError(f"{source}: 'log.loggers.{name}' must be one of {', '.join(_LEVELS)}")
    if settings.acquisition.hash_alg not in HASH_ALGS:
        raise SettingsError(f"{source}: 'acquisition.hash_alg' must be one of {', '.join(HASH_ALGS)}")
    from sensord.drivers import SCHEMES
    for url in settings.drivers.urls:
        if not isinstance(url, str) or "://" not in url:
            raise SettingsError(f"{source}: 'sensord.drivers.urls' must be a list of driver URLs like \"sim://\"")
        if url.split("://", 1)[0].lower() not in SCHEMES:
            raise SettingsError(f"{source}: unknown sensor driver scheme in {url!r} "
                                f"(known: {', '.join(s + '://' for s in SCHEMES)})")
    names = [t.get("name") for t in settings.forward.targets if isinstance(t, dict)]
    for i, rule in enumerate(settings.forward.rules):
        if not isinstance(rule, dict) or set(rule) - {"target", "source", "filter"}:
            raise SettingsError(f"{source}: forward.rules[{i}] takes target, source and filter")
        if rule.get("target") not in names:
            raise SettingsError(f"{source}: forward.rules[{i}] names no configured target "
                                f"({rule.get('target')!r}; targets: {', '.join(map(str, names)) or 'none'})")
        if rule.get("source", "acquired") != "acquired":
            raise SettingsError(f"{source}: forward.rules[{i}].source must be \"acquired\"")
    for user, hashed in settings.auth.users.items():
        if not isinstance(hashed, str) or "$" not in hashed:
            raise SettingsError(
                f"{source}: 'auth.users.{user}' must be a hash made by `sensord hash-password`")
    for user, role in settings.auth.roles.items():
        # (the names of daemon/api/roles.py, which this base module may not import)
        if role not in ("client", "operator", "metrics"):
            raise SettingsError(f"{source}: 'auth.roles.{user}' must be \"client\", \"operator\" or \"metrics\", "
                                f"got {role!r}")
    _check_ae_title(settings.dicom.ae_title, "dicom.ae_title", source, required=True)
    for section in ("worklist", "mpps"):
        peer = getattr(settings, section)
        if peer.host:
            _check_ae_title(peer.called_ae, f"{section}.called_ae", source, required=True)
    if settings.auth.lockout_max_seconds < settings.auth.lockout_seconds:
        raise SettingsError(f"{source}: 'auth.lockout_max_seconds' must be at least 'auth.lockout_seconds'")


def _check_ae_title(value: str, key: str, source: str, *, required: bool) -> None:
    """PS3.5 AE VR: 1-16 characters of the default repertoire, no backslash or control character."""
    stripped = value.strip()
    if not stripped and not required:
        return
    if not stripped or len(stripped) > 16 or not value.isascii() or "\\" in value \
            or any(ord(c) < 32 for c in value):
        raise SettingsError(f"{source}: '{key}' must be an AE title of 1 to 16 ASCII characters "
                            f"(no backslash), got {value!r}")


def default_state_dir() -> str:
    # systemd's StateDirectory= hands us the folder (colon-separated if several).
    managed = os.environ.get("STATE_DIRECTORY", "")
    return managed.split(":")[0] if managed else "state"


def from_mapping(data: dict, *, source: str = "settings") -> Settings:
    known = {f.name: f.type for f in dataclasses.fields(Settings)}
    sections = {}
    for name, table in data.items():
        if name not in known:
            raise SettingsError(f"{source}: unknown section [{name}] (known: {', '.join(known)})")
        cls = type(getattr(Settings(), name))
        sections[name] = _section(cls, name, table, source)
    settings = Settings(**sections)
    _check(settings, source)
    return settings


def load(path: str | os.PathLike | None = None, *, overrides: dict | None = None) -> Settings:
    """Load settings: defaults, then the TOML file at ``path``, then ``overrides``.

    ``overrides`` maps "section.key" to a value (the CLI's --host/--port/--state-dir).
    """
    data: dict = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as err:
            raise SettingsError(f"cannot read config {path}: {err.strerror}") from err
        except tomllib.TOMLDecodeError as err:
            raise SettingsError(f"{path}: not valid TOML: {err}") from err
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        data.setdefault(section, {})[key] = value
    settings = from_mapping(data, source=source)
    if not settings.store.state_dir:
        store = dataclasses.replace(settings.store, state_dir=default_state_dir())
        settings = dataclasses.replace(settings, store=store)
    state = Path(settings.store.state_dir).expanduser().resolve()
    return dataclasses.replace(settings, store=dataclasses.replace(settings.store, state_dir=str(state)))
