"""Run a WSGI app (a fake platform written in a test) on a free loopback port."""
from __future__ import annotations

import contextlib
import socket
import threading
import time

from waitress.server import create_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
