"""The receiving end of sd_notify: a datagram socket and its KEY=VALUE fields."""
from __future__ import annotations

import socket


def datagram_socket(address: str, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(timeout)
    return sock


def fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n"))
