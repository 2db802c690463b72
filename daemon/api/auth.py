"""HTTP Basic authentication for every endpoint.

Passwords are stored as werkzeug scrypt hashes. Checking scrypt costs tens
of milliseconds by design, which would dominate every request of a client
that sends its credentials each time; so once a user's credentials have
verified, a keyed HMAC of them is remembered and later requests compare
against it in constant time. The key is random per process, so the cache
is worthless outside it; failed attempts always pay the full scrypt cost.

That cost is also a lever for a guesser, so uncached checks pass a gate
of bounded concurrency (hash_gate.py), and a client with too many wrong
guesses for a user name waits a while (lockout.py) before any hash is
paid: the threat and the choice are lockout.py's docstring. Who may do what once in is roles.py's
business.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
import threading
from pathlib import Path

from flask import Flask, request
from werkzeug.datastructures import Authorization
from werkzeug.security import check_password_hash, generate_password_hash

from sensord.daemon.durable import write_atomic
from sensord.daemon.errors import ServiceError

from . import roles as roles_mod
from .errors import ApiError
from .hash_gate import ChecksBusy, HashGate
from .lockout import Lockout, client_of, retry_after_header

log = logging.getLogger("sensord.auth")

DEFAULT_USER = "admin"
PASSWORD_FILE = "admin-password"
LOGGED_NAME_MAX = 64        # characters of a sent user name that reach the log


def loggable_name(name: str | None) -> str:
    """A user name as sent, made safe for one log line: truncated, then
    quoted with control characters and newlines escaped (repr)."""
    if name is None:
        return "None"
    if len(name) <= LOGGED_NAME_MAX:
        return repr(name)
    return f"{name[:LOGGED_NAME_MAX]!r}... ({len(name)} characters)"


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


class Authenticator:
    """Checks Basic credentials against configured user -> hash pairs."""

    def __init__(self, users: dict[str, str], *, realm: str = "sensord", roles: dict[str, str] | None = None,
                 lockout: Lockout | None = None, max_concurrent_checks: int = 2):
        self.users = dict(users)
        self.realm = realm
        self.roles = dict(roles or {})
        self.lockout = lockout if lockout is not None else Lockout()
        self.gate = HashGate(max_concurrent_checks)
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def role_of(self, user: str) -> str:
        """The user's role; a user the role table does not name is a client."""
        return self.roles.get(user, roles_mod.CLIENT)

    def _digest(self, user: str, password: str) -> bytes:
        return hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()

    def check(self, user: str | None, password: str | None) -> bool:
        if user is None or password is None:
            return False
        digest = self._digest(user, password)
        return self._remembered(user, digest) or self._verify(user, password, digest)

    def _remembered(self, user: str, digest: bytes) -> bool:
        """These credentials verified already in this process (and no reload came since)."""
        with self._lock:
            known = self._verified.get(user)
        return known is not None and hmac.compare_digest(known, digest)

    def _verify(self, user: str, password: str, digest: bytes) -> bool:
        """The full check against the hash, through the gate; remembered when right."""
        users = self.users
        hashed = users.get(user)
        # Unknown users still pay for a hash so timing does not reveal names.
        dummy = _dummy_hash()       # (made outside the gate: the first call hashes too)
        with self.gate.slot():      # ChecksBusy (503) when too many wait already
            ok = check_password_hash(hashed or dummy, password) and hashed is not None
        if ok:
            with self._lock:
                if self.users is users:     # not replaced by a reload meanwhile
                    self._verified[user] = digest
        return ok

    def set_users(self, users: dict[str, str], *, realm: str, roles: dict[str, str] | None = None) -> None:
        """Replace the users (a reload): a removed user or an old password stops
        working at once, and so does a role taken away (``roles``, when given)."""
        with self._lock:
            self.users = dict(users)
            self.realm = realm
            if roles is not None:
                self.roles = dict(roles)
            self._verified.clear()
        self.lockout.forget_credentials()

    def refusal(self, authorization: str | None, *, remote: str | None = None) -> ServiceError | None:
        """Why a request with this Authorization header may not go on, or None if it may.

        The one decision on credentials: the app asks it before each view,
        and the server asks it as soon as a request's headers are in, so an
        unauthenticated body is never read.
        """
        auth = Authorization.from_header(authorization) if authorization else None
        basic = auth if auth is not None and auth.type == "basic" else None
        name = basic.username if basic is not None else None
        if basic is not None and name is not None:
            password = basic.password or ""
            digest = self._digest(name, password)
            client = client_of(remote)
            # A client that guessed too often is refused before any hash, the right
            # password too: letting it in would tell a guesser which guess was right.
            wait = self.lockout.retry_after(name, client)
            if wait > 0:
                log.debug("refused user %s from %s: waiting after failed logins", loggable_name(name), remote)
                return ApiError(429, f"too many failed logins for this user from here; try again in "
                                     f"{retry_after_header(wait)} s",
                                headers={"Retry-After": retry_after_header(wait)})
            if self._remembered(name, digest):
                return None
            if self.lockout.repeated(name, client, digest):     # failed before: no hash, no news
                log.debug("rejected credentials for user %s from %s again", loggable_name(name), remote)
            else:
                try:
                    ok = self._verify(name, password, digest)
                except ChecksBusy as busy:      # the hash gate is full (503): not a failure
                    return busy
                if ok:
                    self.lockout.succeeded(name, client)
                    return None
                waits = self.lockout.failed(name, client, digest)
                log.warning("rejected credentials for user %s from %s", loggable_name(name), remote)
                if waits:
                    log.warning("user %s from %s waits %.0f s before another try: too many failed logins",
                                loggable_name(name), remote, waits)
        elif auth is not None:
            log.warning("rejected credentials that are not HTTP Basic from %s", remote)
        return ApiError(401, "authentication required (HTTP Basic)",
                        headers={"WWW-Authenticate": f'Basic realm="{self.realm}", charset="UTF-8"'})

    def install(self, app: Flask) -> None:
        @app.before_request
        def _require_auth():
            if roles_mod.is_public():
                return          # the health probes: no credentials asked, none looked at
            refused = self.refusal(request.headers.get("Authorization"), remote=request.remote_addr)
            if refused is not None:
                raise refused
            credentials = request.authorization
            assert credentials is not None and credentials.username is not None   # refusal() let them in
            user = credentials.username
            roles_mod.remember(user, self.role_of(user))
            roles_mod.require_role()


@functools.cache
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16), method="scrypt")


def ensure_users(users: dict[str, str], state_dir: Path) -> dict[str, str]:
    """With no configured users, create ``admin`` with a random password kept in the state folder.

    The password is written once (mode 0600) so an operator can read it and the
    imaging software can be configured; it survives restarts.
    """
    if users:
        return users
    path = state_dir / PASSWORD_FILE
    if path.exists():
        password = path.read_text().strip()
    else:
        password = secrets.token_urlsafe(18)
        state_dir.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o077)
        try:
            write_atomic(path, (password + "\n").encode())
        finally:
            os.umask(old)
    log.warning("no [auth.users] configured: user %r, password in %s", DEFAULT_USER, path)
    return {DEFAULT_USER: hash_password(password)}
