"""Who may reach the daemon from a web browser (DESIGN.md, "Who may reach it").

Any page a browser on this PC shows can send requests to localhost, and a
browser that has opened the status page adds its saved Basic credentials to
them. Two checks, both made before the credentials are looked at:

1. The ``Host`` header must name this daemon: localhost, 127.0.0.1, [::1],
   the address in ``server.host`` when that is not a wildcard, or a name in
   ``server.allowed_hosts``; with or without a port. A DNS-rebinding page
   (its own name, resolved to 127.0.0.1) gets 421 and not even the 401 that
   would make the browser offer the saved credentials. Because only these
   names get through, the URLs the API builds from ``Host`` (Location,
   imageUrl, previewUrl) always name this daemon.

2. A request from another origin is refused (403): a foreign ``Origin`` (or
   ``Origin: null``: sandboxed frames, files, data URLs), or ``Sec-Fetch-Site``
   ``cross-site``/``same-site`` (another port of 127.0.0.1 is "same-site").
   For state-changing methods always; for reads too, except a top-level
   navigation (a user following a link to the status page), since a read from
   another site can still cost: an event stream holds a worker thread and a
   subscriber slot, and an image pulled into another site's page sits in that
   page's process. Requests that carry neither header (the vendor's SDK, curl,
   newman, the CLI) are not from a browser page and are unaffected; this is
   what makes it safe to take JSON whatever content type it is labelled with.

``refusal()`` is the one decision, on plain values, so that the server can
ask it as soon as a request's headers are in, before it asks for credentials.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from flask import Flask, current_app, request

from sensord.daemon.errors import ServiceError

from .errors import ApiError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FOREIGN_SITES = frozenset({"cross-site", "same-site"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def normal_name(name: str) -> str:
    """A host name or address as compared: lower case, IPv6 without brackets
    and in its short form (``[0::1]`` and ``::1`` are one address)."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port or None)`` of a Host header value, or None if it is not one."""
    value = value.strip()
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            return None
        name, rest = value[1:close], value[close + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    else:
        name, colon, port_text_or_empty = value.partition(":")
        port_text = port_text_or_empty if colon else None
        # Anything but a DNS name or IPv4 address (spaces, a second Host joined
        # by a comma, user@, a path) names nothing of ours.
        if not name or not name.isascii() or not all(c.isalnum() or c in "-._" for c in name):
            return None
    port = None
    if port_text:               # "host:" is allowed an empty port
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5) or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    return normal_name(name), port


def accepted_names(server) -> frozenset[str]:
    """The names ``Host`` may give, from the ``[server]`` settings."""
    names = set(LOOPBACK_NAMES)
    if server.host.strip() not in WILDCARDS:
        # The address the daemon listens on (its health probe and a LAN
        # client use it); a wildcard stands for every address, so those
        # must be listed in allowed_hosts.
        names.add(normal_name(server.host))
    names.update(normal_name(n) for n in server.allowed_hosts)
    return frozenset(names)


def _headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header values by one spelling of their name (``SEC_FETCH_SITE``), from
    Flask's headers, a WSGI-style ``HTTP_`` mapping or waitress's parser."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    found = {}
    for key, value in items:
        key = key.upper().replace("-", "_")
        found[key[5:] if key.startswith("HTTP_") else key] = value
    return found


def _origin_of(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path or parts.query or parts.username:
        return None
    return scheme, normal_name(parts.hostname), port if port is not None else DEFAULT_PORTS[scheme]


def refusal(method: str, headers: Mapping[str, str] | Iterable[tuple[str, str]], *,
            scheme: str, server) -> ServiceError | None:
    """Why a request may not go on (421, 400 or 403), or None if it may.

    ``headers`` as any of ``_headers()`` takes; ``scheme`` is the one the
    daemon serves (https behind the TLS front); ``server`` the ``[server]``
    settings, read afresh each time so a reload applies.
    """
    h = _headers(headers)
    host = h.get("HOST")
    if host is None:
        # HTTP/1.1 requires it (RFC 9112 3.2), every client we know sends it,
        # and without it the URLs we hand out would name no real host.
        return ApiError(400, "the request has no Host header")
    parsed = split_host(host)
    if parsed is None or parsed[0] not in accepted_names(server):
        return ApiError(421, f"Host {host[:100]!r} does not name this daemon (accepted: localhost, "
                             "127.0.0.1, [::1], the address in server.host and server.allowed_hosts)")
    name, port = parsed
    own = (scheme, name, port if port is not None else DEFAULT_PORTS.get(scheme, 0))

    method = method.upper()
    site = h.get("SEC_FETCH_SITE", "").strip().lower()
    navigation = (h.get("SEC_FETCH_MODE", "").strip().lower() == "navigate"
                  and h.get("SEC_FETCH_DEST", "document").strip().lower() == "document")
    if method in SAFE_METHODS and navigation:
        return None         # a user following a link to the page; frames are refused by its headers
    origin = h.get("ORIGIN")
    why = None
    if origin is not None and _origin_of(origin) != own:
        why = f"Origin {origin[:100]!r} is not this daemon's ({scheme}://{host[:100]})"
    elif site in FOREIGN_SITES:
        why = f"Sec-Fetch-Site is {site}"
    if why is None:
        return None
    what = "state-changing requests" if method not in SAFE_METHODS else "requests"
    return ApiError(403, f"{what} from another web page are refused: {why}")


def install(app: Flask) -> None:
    """Ask ``refusal()`` before every view. Install it before the
    authentication hook: Flask runs them in that order."""
    @app.before_request
    def _check_origin():
        refused = refusal(request.method, request.headers, scheme=request.scheme,
                          server=current_app.extensions["sensord"].settings.server)
        if refused is not None:
            raise refused
