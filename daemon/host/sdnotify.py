"""The systemd notify protocol (sd_notify(3)) in the standard library.

systemd passes ``$NOTIFY_SOCKET``, a datagram socket that is a file path or,
starting with ``@``, a Linux abstract socket name. A message is one datagram
of ``KEY=value`` lines. Without the variable (not under systemd, or not a
``Type=notify`` unit) every call here does nothing.
"""
from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("sensord.sdnotify")


def _address() -> str | None:
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    if path.startswith("@"):
        return "\0" + path[1:]      # abstract namespace: a leading NUL byte
    if path.startswith("/"):
        return path
    log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket; not notifying", path)
    return None


def format_message(fields: dict[str, object]) -> bytes:
    """``KEY=value`` lines; a value cannot span lines, so newlines become spaces."""
    lines = []
    for key, value in fields.items():
        if not key or "=" in key or "\n" in key:
            raise ValueError(f"not a notify field name: {key!r}")
        lines.append(f"{key}={str(value).replace(chr(10), ' ')}")
    return "\n".join(lines).encode()


def notify(**fields: object) -> bool:
    """Send ``fields`` as one datagram, e.g. ``notify(READY=1, STATUS="up")``.

    Returns whether it was sent: False without ``$NOTIFY_SOCKET``, or when the
    send failed (logged; a daemon keeps running when its manager is gone).
    """
    address = _address()
    if address is None or not fields:
        return False
    message = format_message(fields)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as err:
        log.warning("cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"), err)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """The service is up (``READY=1``), with an optional status line in the same datagram."""
    return notify(READY=1, **({"STATUS": status} if status is not None else {}))


def stopping(status: str | None = None) -> bool:
    """The service is shutting down (``STOPPING=1``)."""
    return notify(STOPPING=1, **({"STATUS": status} if status is not None else {}))


def reloading(status: str | None = None) -> bool:
    """A reload has begun (``RELOADING=1``); ``ready()`` ends it. The monotonic
    timestamp lets ``Type=notify-reload`` managers tell this reload from an older one."""
    return notify(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000,
                  **({"STATUS": status} if status is not None else {}))


def watchdog() -> bool:
    """Keep-alive ping for ``WatchdogSec=`` (``WATCHDOG=1``)."""
    return notify(WATCHDOG=1)


def status(text: str) -> bool:
    """A free-form status line, shown by ``systemctl status``."""
    return notify(STATUS=text)


def watchdog_interval() -> float | None:
    """The watchdog timeout in seconds from ``$WATCHDOG_USEC``, or None when
    there is none for this process (unset, malformed, not positive, or
    ``$WATCHDOG_PID`` naming another process). Ping at half of it."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None
