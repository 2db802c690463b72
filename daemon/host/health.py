"""Is the daemon alive? What the systemd watchdog ping is conditional on.

Two checks: the scheduler still runs (expiry sweeps, outbox delivery, port
polling depend on it), and the HTTP server answers a real request over
loopback. Every endpoint requires authentication, so the probe sends none and
expects the 401 challenge: that answer goes through waitress's loop, the
front door's decision pool and a worker thread (the ones Flask runs on)
without the probe holding a password.
"""
from __future__ import annotations

import http.client
import ssl

PROBE_PATH = "/api/dsio/modality/v1"        # the base URL that clients GET to see whether we are up

# A server bound to every address is reached over loopback.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def probe_host(host: str) -> str:
    return _WILDCARDS.get(host, host)


def check(daemon, server, *, timeout: float = 5.0) -> tuple[bool, str]:
    """``(True, "healthy")``, or ``(False, reason)`` naming the first failed check."""
    if not daemon.scheduler.running:
        return False, "the scheduler is not running"
    return check_http(probe_host(daemon.settings.server.host), server.port, timeout=timeout,
                      tls=server.scheme == "https")


def check_http(host: str, port: int, *, timeout: float = 5.0, tls: bool = False) -> tuple[bool, str]:
    """GET the Modality API base URL without credentials; healthy when it answers 401 with a challenge.

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
        response.read()
    except (OSError, http.client.HTTPException) as err:
        return False, f"{where}: {str(err) or type(err).__name__}"
    finally:
        conn.close()
    if response.status != 401 or not response.getheader("WWW-Authenticate"):
        return False, f"{where} answered {response.status}, not the 401 challenge"
    return True, "healthy"
