"""HTTP/1.1 over a bare socket: for tests that need to see what arrives
when (an interim 100, an answer before the body is sent, a close)."""
from __future__ import annotations

import base64
import json
import socket
import ssl
import time
from dataclasses import dataclass, field

from tests.support.server import PASSWORD, USER

BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def connect(port: int, *, cafile: str | None = None, timeout: float = 5.0) -> socket.socket:
    """A connection to 127.0.0.1:port; over TLS (handshake done) when ``cafile`` is given."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if cafile is None:
        return sock
    context = ssl.create_default_context(cafile=cafile)
    return context.wrap_socket(sock, server_hostname="localhost")


def head(method: str, path: str, port: int, headers: dict[str, str] | None = None, *,
         auth: bool = True) -> bytes:
    """A request's start line and headers, ending in the blank line."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: localhost:{port}"]
    if auth:
        lines.append(f"Authorization: {BASIC}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    rest: bytes = field(default=b"", repr=False)      # bytes read past this response

    def json(self):
        return json.loads(self.body)


def read_response(sock: socket.socket, timeout: float = 5.0, *, buffered: bytes = b"") -> Response | None:
    """The next response (an interim 100 is one), or None if the connection
    closed or ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    data = buffered

    def more() -> bool:
        nonlocal data
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, socket.timeout, ConnectionError, ssl.SSLError):
            return False
        data += chunk
        return bool(chunk)

    while b"\r\n\r\n" not in data:
        if not more():
            return None
    top, _, data = data.partition(b"\r\n\r\n")
    first, *lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    status = int(first.split()[1])
    length = int(headers.get("content-length", "0")) if status >= 200 else 0
    while len(data) < length:
        if not more():
            return None
    return Response(status, headers, data[:length], data[length:])


def closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes the connection within ``timeout`` (what it
    sends meanwhile is read and dropped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (TimeoutError, socket.timeout):
            return False
        except (ConnectionError, ssl.SSLError):
            return True
    return False
