"""Is the daemon alive? What the systemd watchdog ping is conditional on.

The probe GETs ``/healthz`` over loopback, without credentials (it needs
none, api/health.py), and the daemon is healthy when that answers 200. The
answer goes through waitress's loop, the front door's decision pool and a
worker thread into the app, which runs the daemon's live checks
(daemon/health_checks.py: the scheduler still runs, on which expiry sweeps,
outbox delivery and port polling depend). So the watchdog and ``/healthz``
are the same checks, kept in one place. The readiness checks (disk, state
folder, outbox...) do not gate the watchdog: a restart cures none of them.
"""
from __future__ import annotations

import http.client
import json
import ssl

PROBE_PATH = "/healthz"

# A server bound to every address is reached over loopback.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def probe_host(host: str) -> str:
    return _WILDCARDS.get(host, host)


def check(daemon, server, *, timeout: float = 5.0) -> tuple[bool, str]:
    """``(True, "healthy")``, or ``(False, reason)`` naming what failed."""
    return check_http(probe_host(daemon.settings.server.host), server.port, timeout=timeout,
                      tls=server.scheme == "https")


def check_http(host: str, port: int, *, timeout: float = 5.0, tls: bool = False) -> tuple[bool, str]:
    """GET /healthz without credentials; healthy when it answers 200.

    Over HTTPS the probe goes through the TLS front too, without checking the
    certificate: it asks whether we answer, not who we are."""
    where = f"GET {'https' if tls else 'http'}://{host}:{port}{PROBE_PATH}"
    conn: http.client.HTTPConnection
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", PROBE_PATH, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read(64 * 1024)
    except (OSError, http.client.HTTPException) as err:
        return False, f"{where}: {str(err) or type(err).__name__}"
    finally:
        conn.close()
    if response.status != 200:
        return False, f"{where} answered {response.status}{_failing(body)}"
    return True, "healthy"


def _failing(body: bytes) -> str:
    """": name: detail; ..." of the failing checks in a /healthz answer, or "" if it names none."""
    try:
        failing = [f"{c['name']}: {c['detail']}" for c in json.loads(body)["checks"] if not c["ok"]]
    except (ValueError, KeyError, TypeError):
        return ""
    return ": " + "; ".join(failing) if failing else ""
