"""waitress, sized for the daemon, with a loop that stops from its own thread.

waitress's ``run()`` only returns once every socket is closed, and closing
them from another thread races its ``select``. Here the loop polls until
``stop()`` is asked for and does the closing itself: the listener at once,
then each connection as soon as it has no request in progress, until none
is left or the deadline passes.

What a connection must do before its request reaches the app (headers in
time, credentials before the body, bodies within the limit) is the front
door's (host/front_door.py); how many connections fit in the process's file
descriptors is descriptors.py's.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments

from . import descriptors
from .front_door import Door, FrontDoorServer
from .tls import TlsFront, load_context
from .workers import WorkerPool

log = logging.getLogger("sensord.server")

POLL = 0.05         # seconds between looks at the connections while draining
TURN = 0.5          # longest wait of the serving loop, so deadlines are kept to within it
# poll(), not waitress's default select(): select cannot watch a descriptor
# numbered 1024 or above, and a thousand connections reach that.
USE_POLL = True


class Server:
    """Plain HTTP on host:port; or, with ``server.tls_cert``, HTTPS there
    through a TLS front (host/tls.py) and waitress on a loopback port.
    A certificate that cannot be used raises ValueError naming the file."""

    def __init__(self, app, settings, *, host: str | None = None, port: int | None = None):
        cfg = settings.server
        host = host if host is not None else cfg.host
        port = port if port is not None else cfg.port
        self.front: TlsFront | None = None
        context = load_context(cfg.tls_cert, cfg.tls_key) if cfg.tls_cert else None
        # The socket map that the loop below polls: the listener, its wake-up
        # trigger and one channel per connection. (waitress would make the same
        # empty dict itself; owning it saves reading its private ``_map``.)
        self._map: dict[int, Any] = {}
        # Every open event stream holds a thread: give them their own.
        threads = cfg.threads + settings.acquisition.max_subscribers
        # Behind the TLS front a connection holds three descriptors, not one.
        budget = descriptors.connection_budget(cfg.max_connections, per_connection=3 if context else 1,
                                               threads=threads)
        adj = Adjustments(
            host="127.0.0.1" if context else host,
            port=0 if context else port,
            url_scheme="https" if context else "http",     # the URLs the API hands out
            threads=threads,
            channel_request_lookahead=1,   # lets a stream notice a client that left
            # The front door answers a Content-Length over the limit (413,
            # JSON); this bound, a little above it, leaves room for the
            # framing of a chunked body, which Flask then bounds exactly.
            max_request_body_size=(cfg.max_upload_mb << 20) + (1 << 20),
            # The map also holds the listener and its trigger; connections
            # beyond the budget wait in the listen backlog.
            connection_limit=budget + 2,
            backlog=1024,
            asyncore_use_poll=USE_POLL,
            ident="sensord",
            clear_untrusted_proxy_headers=True,
            channel_timeout=120,
            # Images are megabytes: read them in large pieces and keep them in
            # memory (waitress's defaults read 8 KiB at a time and spool
            # anything over 512 KiB to a temporary file).
            recv_bytes=1 << 18,
            inbuf_overflow=64 << 20,
            outbuf_overflow=64 << 20,
        )
        if len(adj.listen) != 1:
            # waitress would listen on each address through a
            # MultiSocketServer, which this loop cannot drive.
            raise ValueError(f"server.host {host!r} resolves to more than one address; name one")
        door = Door(app.extensions["sensord"], scheme=adj.url_scheme,
                    header_timeout=cfg.header_timeout_seconds, max_upload_mb=cfg.max_upload_mb)
        dispatcher = WorkerPool()       # up to adj.threads, started as requests need them
        dispatcher.set_thread_count(adj.threads)
        try:
            server = FrontDoorServer(app, self._map, door=door, adj=adj, dispatcher=dispatcher)
        except BaseException:
            door.close()
            dispatcher.shutdown(timeout=1)
            raise
        self._server = server
        if context is not None:
            try:
                backend = ("127.0.0.1", self._server.effective_port)  # type: ignore[attr-defined]  # set by BaseWSGIServer.__init__; missing from types-waitress
                self.front = TlsFront(context, host, port, backend=backend,
                                      handshake_timeout=cfg.tls_handshake_seconds, max_connections=budget)
                door.tls_peer = self.front.peer_of
            except OSError:
                self._server.close()
                door.close()
                dispatcher.shutdown(timeout=1)
                raise
        self._accepting = True
        self._stop_accepting = threading.Event()
        self._stop = threading.Event()
        self._deadline = float("inf")
        # Readiness (daemon/health_checks.py): the socket listens from here until a stop.
        self._listening = True
        checks = getattr(door.services, "health", None)
        if checks is not None:
            checks.add("listening", self._listening_check)

    @property
    def port(self) -> int:
        return self.front.port if self.front else self._server.effective_port  # type: ignore[attr-defined]  # missing from types-waitress

    @property
    def scheme(self) -> str:
        return "https" if self.front else "http"

    def run(self) -> None:
        """Serve until ``stop()``; drain; then close every socket and the worker threads."""
        server = self._server
        if self.front is not None:
            self.front.start()
        try:
            while not self._stop.is_set():
                server.asyncore.loop(timeout=TURN, map=self._map, count=1, use_poll=USE_POLL)
                server.tend()       # (the listener does it too, but not once it is closed)
                if self._stop_accepting.is_set():
                    self._close_listener()
            self._close_listener()
            self._drain()
        except Exception:
            log.exception("the HTTP server loop failed")
            raise
        finally:
            # Whatever is still open at the deadline is cut; then wait for the
            # worker threads. The wake-up trigger goes last because a
            # finishing task still pulls it.
            left = self._channels()
            if left:
                log.warning("closing %d connection(s) with a request still in progress", len(left))
            for channel in left:
                try:
                    channel.handle_close()
                except Exception:
                    log.exception("closing a connection failed")
            # types-waitress types the timeout as int and ``trigger`` as int; waitress
            # adds the timeout to time.time(), and ``trigger`` is a waitress.trigger.trigger.
            server.task_dispatcher.shutdown(timeout=max(0.5, min(5.0, self._deadline - time.monotonic())))  # type: ignore[arg-type]
            server.door.close()     # (before the trigger it pulls)
            server.trigger.close()  # type: ignore[attr-defined]
            if self.front is not None:
                self.front.stop()

    def _channels(self) -> list:
        return [c for c in list(self._map.values()) if c is not self._server.trigger]

    def _close_listener(self) -> None:
        if self._accepting:
            self._accepting = False
            wasyncore.dispatcher.close(self._server)

    def _drain(self) -> None:
        """Close connections as they fall idle; return once none is left or at the deadline."""
        server = self._server
        while time.monotonic() < self._deadline:
            server.tend()       # (the closed listener no longer does it each turn)
            for channel in self._channels():
                if _idle(channel):
                    channel.handle_close()
            if not self._channels():
                return
            server.asyncore.loop(timeout=POLL, map=self._map, count=1, use_poll=USE_POLL)

    def _listening_check(self) -> str | None:
        return None if self._listening else "stopping: no new connections are accepted"

    def stop_accepting(self) -> None:
        """Close the listening socket (from the loop's thread); keep serving open connections."""
        self._listening = False
        if self.front is not None:
            self.front.stop_accepting()     # waitress's own listener is loopback, for the front
            return
        self._stop_accepting.set()
        self._wake()

    def stop(self, grace: float = 0.0) -> None:
        """Stop accepting, let requests in progress finish for up to ``grace`` seconds,
        then end the loop. Safe from any thread and from a signal handler; a
        second call can only shorten the deadline."""
        self._listening = False
        self._deadline = min(self._deadline, time.monotonic() + grace)
        if self.front is not None:
            self.front.stop_accepting()
        self._stop.set()
        self._wake()

    def _wake(self) -> None:
        try:
            self._server.pull_trigger()
        except OSError:
            pass        # the loop has already ended and closed its trigger


def _idle(channel) -> bool:
    """No request being received, none queued or running, nothing left to
    send, and no bytes of a next request waiting unread in the socket."""
    if channel.linger_until is not None:
        return True         # answered; only draining what the client still sends
    if channel.request is not None or channel.requests or channel.total_outbufs_len:
        return False
    try:
        return not channel.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return True         # a broken connection has nothing left to finish
