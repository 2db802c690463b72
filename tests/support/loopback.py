"""Run a WSGI app (a fake platform written in a test) on a free loopback port."""
from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from pathlib import Path

from waitress.server import create_server


_handed_out: set[int] = set()
_pick = random.Random()      # its own: a test that seeds the module's generator must not make ports collide


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nothing is bound to now, often bound later (by a child process, an SCP, a
    daemon of a later test). Taken below the kernel's ephemeral range, where the kernel never picks
    a connection's source port: no client socket can hold it when it is bound, and a client that
    connects while nothing listens is refused, never connected to itself. Never the same twice."""
    low = _ephemeral_low()
    if low > 11024:
        for _ in range(200):
            port = _pick.randrange(10000, low)
            if port in _handed_out:
                continue
            with socket.socket() as s:      # no SO_REUSEADDR: a port in TIME_WAIT counts as taken
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    while True:                             # no room below the range: any port the kernel gives
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_until(predicate, timeout: float = 10.0, *, interval: float = 0.05) -> bool:
    """Poll ``predicate`` every ``interval`` s until it holds or ``timeout`` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def closed_port_url() -> str:
    """A URL on which nothing listens: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


@contextlib.contextmanager
def serving(app, *, threads: int = 8):
    """Yield the base URL of ``app`` served by waitress on 127.0.0.1."""
    server = create_server(app, host="127.0.0.1", port=0, threads=threads, ident="fake-platform")
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            server.asyncore.loop(timeout=0.2, map=server._map, count=1)

    thread = threading.Thread(target=loop, name="fake-platform", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
        for channel in list(server._map.values()):
            channel.handle_close()
        server.task_dispatcher.shutdown(timeout=2)


@contextlib.contextmanager
def serving_fake(fake):
    """Yield ``(fake, base URL)`` for a fake platform; its held requests are let go at the end."""
    with serving(fake.app) as url:
        try:
            yield fake, url
        finally:
            fake.faults.release()
