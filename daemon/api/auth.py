"""HTTP Basic authentication for every endpoint.

Passwords are stored as werkzeug scrypt hashes. Checking scrypt costs tens
of milliseconds by design, which would dominate every request of a client
that sends its credentials each time; so once a user's credentials have
verified, a keyed HMAC of them is remembered and later requests compare
against it in constant time. The key is random per process, so the cache
is worthless outside it; failed attempts always pay the full scrypt cost.
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

from .errors import ApiError

log = logging.getLogger("sensord.auth")

DEFAULT_USER = "admin"
PASSWORD_FILE = "admin-password"


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


class Authenticator:
    """Checks Basic credentials against configured user -> hash pairs."""

    def __init__(self, users: dict[str, str], *, realm: str = "sensord"):
        self.users = dict(users)
        self.realm = realm
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _digest(self, user: str, password: str) -> bytes:
        return hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()

    def check(self, user: str | None, password: str | None) -> bool:
        if user is None or password is None:
            return False
        digest = self._digest(user, password)
        with self._lock:
            known = self._verified.get(user)
        if known is not None and hmac.compare_digest(known, digest):
            return True
        users = self.users
        hashed = users.get(user)
        # Unknown users still pay for a hash so timing does not reveal names.
        ok = check_password_hash(hashed or _dummy_hash(), password) and hashed is not None
        if ok:
            with self._lock:
                if self.users is users:     # not replaced by a reload meanwhile
                    self._verified[user] = digest
        return ok

    def set_users(self, users: dict[str, str], *, realm: str) -> None:
        """Replace the users (a reload): a removed user or an old password stops working at once."""
        with self._lock:
            self.users = dict(users)
            self.realm = realm
            self._verified.clear()

    def refusal(self, authorization: str | None, *, remote: str | None = None) -> ServiceError | None:
        """Why a request with this Authorization header may not go on, or None if it may.

        The one decision on credentials: the app asks it before each view,
        and the server asks it as soon as a request's headers are in, so an
        unauthenticated body is never read.
        """
        auth = Authorization.from_header(authorization) if authorization else None
        if auth is not None and auth.type == "basic" and self.check(auth.username, auth.password):
            return None
        if auth is not None:
            log.warning("rejected credentials for user %r from %s", auth.username, remote)
        return ApiError(401, "authentication required (HTTP Basic)",
                        headers={"WWW-Authenticate": f'Basic realm="{self.realm}", charset="UTF-8"'})

    def install(self, app: Flask) -> None:
        @app.before_request
        def _require_auth():
            refused = self.refusal(request.headers.get("Authorization"), remote=request.remote_addr)
            if refused is not None:
                raise refused


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
