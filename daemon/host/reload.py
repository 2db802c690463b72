"""SIGHUP: read the configuration again and apply what is safe to change live.

Safe: what each request or exposure reads afresh (users and roles, log level, image
lifetime and quota, acquisition options, forwarding rules, the host names
a request may give, and the TLS certificate for new connections when HTTPS
is on). Not safe without
a restart: what was built once at start (the listening socket and its
threads, the drivers, the state folder, the forward targets with their
connections and deliveries in flight). Those changes are named in the log
and left for the next start; an invalid file changes nothing at all.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from sensord.daemon.api import auth, roles
from sensord.daemon.forward import filter_spec
from sensord.daemon.settings import Settings, SettingsError

from . import logsetup
from .tls import load_context

log = logging.getLogger("sensord")

RELOADABLE = frozenset({
    "log.level", "log.loggers",
    "auth.users", "auth.realm", "auth.roles",     # read by each request (a role taken away at once)
    "store.lifetime_seconds", "store.quota_mb",
    "images.png_compression", "images.jpeg_quality", "images.max_info_kb",
    "acquisition.hash_alg", "acquisition.gamma", "acquisition.preview_max", "acquisition.min_free_mb",
    "forward.rules",
    "server.allowed_hosts",     # read by each request's Host check
})


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """"section.key" for every value that differs, in the settings' order."""
    changed = []
    for section in dataclasses.fields(Settings):
        before, after = getattr(old, section.name), getattr(new, section.name)
        for key in dataclasses.fields(before):
            if getattr(before, key.name) != getattr(after, key.name):
                changed.append(f"{section.name}.{key.name}")
    return changed


def _merge(old: Settings, new: Settings, keys: list[str]) -> Settings:
    """``old`` with the values of ``keys`` taken from ``new``."""
    sections: dict[str, dict[str, object]] = {}
    for dotted in keys:
        section, key = dotted.split(".")
        sections.setdefault(section, {})[key] = getattr(getattr(new, section), key)
    return dataclasses.replace(old, **{
        name: dataclasses.replace(getattr(old, name), **values) for name, values in sections.items()})


def _check_rules(daemon, rules: list[dict]) -> None:
    running = set(daemon.forwarder.targets)
    for rule in rules:
        if rule["target"] not in running:
            raise ValueError(f"forward rule names target {rule['target']!r}, which is not running "
                             "(new targets need a restart)")
        filter_spec.parse(rule.get("filter", "raw"))


def reload(daemon, load: Callable[[], Settings], front=None) -> list[str]:
    """Apply the reloadable changes; return the keys applied.

    With HTTPS on (``front``, the TLS front) the certificate and key are read
    again even when their paths did not change: a certificate renewed in place
    takes effect for the next connections."""
    try:
        new = load()
        if new.forward.rules != daemon.settings.forward.rules:
            _check_rules(daemon, new.forward.rules)
        tls = new.server if front is not None and new.server.tls_cert else None
        context = load_context(tls.tls_cert, tls.tls_key) if tls else None
    except (SettingsError, ValueError) as err:
        log.error("reload refused, still running on the previous settings: %s", err)
        return []
    reloadable = RELOADABLE | ({"server.tls_cert", "server.tls_key"} if context else set())
    changed = changed_keys(daemon.settings, new)
    now = [k for k in changed if k in reloadable]
    later = [k for k in changed if k not in reloadable]
    if later:
        log.warning("reload: %s changed; that takes a restart", ", ".join(later))
    if context is not None:
        front.set_context(context)
        log.info("reload: TLS certificate read again from %s", new.server.tls_cert)     # = tls.tls_cert
    if not now:
        log.info("reload: nothing else to apply" if context else "reload: nothing to apply")
        return []
    settings = _merge(daemon.settings, new, now)
    logsetup.apply_levels(settings.log)
    daemon.auth.set_users(auth.ensure_users(settings.auth.users, settings.state_dir),
                          realm=settings.auth.realm,
                          roles=roles.effective_roles(settings.auth.users, settings.auth.roles, auth.DEFAULT_USER))
    daemon.store.lifetime = settings.store.lifetime_seconds
    daemon.store.quota_bytes = settings.store.quota_mb << 20
    acq = settings.acquisition
    daemon.sessions.options = dataclasses.replace(
        daemon.sessions.options, hash_alg=acq.hash_alg, gamma=acq.gamma, preview_max=acq.preview_max,
        min_free_bytes=acq.min_free_mb << 20, png_compression=settings.images.png_compression)
    daemon.forwarding.set_rules(settings.forward.rules)
    daemon.settings = settings
    log.info("reload: applied %s", ", ".join(now))
    return now
