"""The front door: what happens to a connection before the app sees a request.

waitress on its own bounds a connection only by how long it stays silent,
reads a request's whole body before the app may refuse it, and answers its
own errors in plain text. Its server and channel are subclassed here so that:

- a request's headers are in within ``header_timeout`` seconds of its first
  byte (of the accept, for a connection's first request), however slowly
  they trickle, or the connection is closed;
- once the headers are in, and before a byte of the body is taken, the
  request is put to the app's own decisions on headers: ``origin.refusal``
  (Host and Origin), then the authenticator's ``refusal`` (credentials,
  lockout). They run in a small pool, so a password hash never stalls the
  loop that serves every connection. A refused request is answered with the
  refusal's status, headers and JSON body, and its connection closed;
  ``Expect: 100-continue`` is answered 100 only for a request let in;
- a body declared larger than ``server.max_upload_mb`` is answered 413
  before it is read, and waitress's own errors (400, 413, 431, 501, 500)
  carry the JSON error body too (door_answers.py);
- a connection closed after an answer while its client may still be sending
  is half-closed and drained (the bytes discarded, for a bounded time), so
  the client reads the answer rather than a connection reset;
- running out of file descriptors on accept pauses accepting for a moment
  instead of spinning on a listener that stays readable.

The Flask-level checks stay as a second line behind all this.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.utilities import RequestEntityTooLarge

from sensord.daemon.api import health, origin
from sensord.daemon.errors import ServiceError

from .door_answers import SHORT_OF_DESCRIPTORS, Answer, JsonErrorTask, os_answer, waitress_answer

log = logging.getLogger("sensord.server")

GATE_THREADS = 16       # above the authenticator's own bound on hashes running and waiting,
                        # so a request with cached credentials never queues behind guesses
LINGER_SECONDS = 2.0    # how long a closing connection's late body bytes are drained
ACCEPT_PAUSE = 0.25     # seconds without accepting after the process ran out of descriptors
ACCEPT_BATCH = 64       # connections accepted per turn of the loop (waitress: one)
NOTE_EVERY = 60.0       # seconds between log lines about connections closed for slowness
SWEEP_EVERY = 0.1       # seconds between looks at the connections' deadlines


class Request(HTTPRequestParser):
    let_in = False      # the door's checks passed: its body may be read, 100 Continue sent

    def what(self) -> tuple[str, str]:
        """(method, path): str at run time, though types-waitress says bytes or nothing."""
        me: Any = self
        return str(me.command), str(me.path)


class Door:
    """The decisions on a request's headers and the settings the channels need."""

    def __init__(self, services, *, scheme: str, header_timeout: float, max_upload_mb: int):
        self.services = services
        self.scheme = scheme
        self.header_timeout = header_timeout
        self.max_upload_mb = max_upload_mb
        self.max_body = max_upload_mb << 20
        # Behind the TLS front every connection comes from loopback: its
        # peer_of(source port) names the client (the lockout counts by it).
        self.tls_peer: Callable[[int], str | None] | None = None
        self._pool = ThreadPoolExecutor(GATE_THREADS, thread_name_prefix="front-door")
        # Decisions made, for the loop's thread to apply (FrontDoorServer.tend).
        # Not trigger thunks: those run under the trigger's lock, and a
        # decision already made calls back at once, from the loop's thread.
        self.decided: deque[tuple[FrontDoorChannel, Request, Future]] = deque()
        # Once closed, no wake-up: the trigger's pipe is closed next, and its
        # descriptor number may already name another file.
        self._lock, self._closed = threading.Lock(), False

    def ask(self, channel: "FrontDoorChannel", request: Request) -> None:
        """Decide in the pool; the loop's thread applies the decision once woken."""
        method, path = request.what()
        future = self._pool.submit(self.decide, method, dict(request.headers), self.remote_of(channel.addr), path)

        def back(done: Future) -> None:
            self.decided.append((channel, request, done))
            with self._lock:
                if not self._closed:
                    channel.server.pull_trigger()

        future.add_done_callback(back)

    def remote_of(self, addr) -> str | None:
        """The client's address: the connection's peer, or the TLS client behind it."""
        if not addr:
            return None
        return (self.tls_peer(addr[1]) if self.tls_peer is not None else None) or addr[0]

    def decide(self, method: str, headers: dict, remote: str | None, path: str = "") -> ServiceError | None:
        # Host and Origin first, as in the app: a page that may not reach us
        # gets no 401 that would make the browser offer saved credentials.
        services = self.services
        refused = origin.refusal(method, headers, scheme=self.scheme, server=services.settings.server)
        if refused is None:
            if health.open_to_all(method, path):    # the probes need no credentials, and take no body
                refused = health.body_refusal(headers)
            else:
                refused = services.auth.refusal(headers.get("AUTHORIZATION"), remote=remote)
        return refused

    def refused(self, status: int) -> None:
        """Count a request answered here, before the app (the app counts its own)."""
        metrics = getattr(self.services, "metrics", None)
        if metrics is not None:
            metrics.refused_at_door(status)

    def close(self) -> None:
        """Before the loop's trigger is closed."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)


class FrontDoorChannel(HTTPChannel):
    error_task_class = JsonErrorTask
    parser_class = Request
    # What waitress sets and types-waitress leaves out or types too narrowly.
    requests_lock: threading.Lock
    requests: list

    def __init__(self, server, sock, addr, adj, map=None):
        # Set before waitress's __init__ adds the channel to the loop's map.
        self.door: Door = server.door
        self.header_due: float | None = time.monotonic() + self.door.header_timeout
        self.let_in = False                   # a request of this connection passed the door
        self.waiting: Request | None = None   # the request whose headers are being decided on
        self.held = b""                       # bytes read after those headers, meanwhile
        self.discarding = False               # refused: nothing more is parsed
        self.linger_until: float | None = None
        self.task_sending = False             # a task's thread is in write_soon (see there)
        super().__init__(server, sock, addr, adj, map)

    # -- reading -------------------------------------------------------------
    def readable(self):
        if self.linger_until is not None:
            return not self.will_close
        if self.waiting is not None or self.discarding:
            return False        # the body waits in the client, not here
        return super().readable()

    def writable(self):
        if self.linger_until is not None:
            return self.will_close
        if self.task_sending and not (self.will_close or self.close_when_flushed) \
                and self.total_outbufs_len <= self.adj.outbuf_high_watermark:
            return False        # (above the mark the task waits for the loop to send)
        return super().writable()

    def handle_read(self):
        if self.linger_until is not None:
            self.recv(self.adj.recv_bytes)      # discarded; wasyncore closes on EOF
            return
        super().handle_read()

    def received(self, data):
        """waitress's HTTPChannel.received, stopping at each request's end of
        headers until the door has decided on them."""
        if not data:
            return False
        with self.requests_lock:
            if self.will_close or self.close_when_flushed or self.discarding:
                return False
            if self.waiting is not None:    # (readable() is False meanwhile)
                self.held += data
                return True
            while data:
                if self.request is None:
                    self.request = self.parser_class(self.adj)
                    if self.let_in:     # a later request: its own time for its headers
                        self.header_due = time.monotonic() + self.door.header_timeout
                request = self.request
                had_headers = request.headers_finished
                try:
                    n = request.received(data)
                except OSError as err:      # spooling a large body to a temporary file
                    log.warning("cannot receive a request body: %s", err)
                    self._refuse(request, os_answer(err))
                    return True
                if request.headers_finished and not had_headers and not request.empty \
                        and (request.error is None or isinstance(request.error, RequestEntityTooLarge)):
                    self.waiting, self.held, self.header_due = request, data[n:], None
                    self.door.ask(self, request)
                    return True
                if (request.let_in and request.expect_continue and request.headers_finished
                        and not self.requests and not self.sent_continue):
                    self.send_continue()
                if request.completed:
                    self._queue(request)
                    if request.error is not None:   # answered, then closed: parse no further
                        self.discarding = True
                        break
                if n >= len(data):
                    break
                data = data[n:]
        return True

    def answered(self, request: Request, decision: Future) -> None:
        """The door's decision on ``request`` (in the loop's thread)."""
        if self.waiting is not request or not self.connected:
            return          # closed meanwhile
        try:
            refused = decision.result()
        except Exception:
            log.exception("deciding on a request's headers failed")
            refused = ServiceError("internal error; the daemon log has the details")
        held, self.waiting, self.held = self.held, None, b""
        with self.requests_lock:
            if refused is not None:
                method, path = request.what()
                log.debug("refused %s %s from %s: %s %s", method, path[:200],
                          self.addr[0] if self.addr else "?", refused.status, refused.message)
                self.door.refused(refused.status)
                self._refuse(request, Answer.of(refused))
                return
            self.let_in = request.let_in = True
            if request.error is not None or request.content_length > self.door.max_body:
                # Too large by its Content-Length (waitress's bound has slack for chunked framing).
                self._refuse(request, waitress_answer(RequestEntityTooLarge(""), self.door.max_upload_mb))
                return
            if request.completed:
                self._queue(request)
            elif request.expect_continue and not self.requests and not self.sent_continue:
                self.send_continue()
        if held:
            self.received(held)

    def write_soon(self, data):
        """waitress's, with the loop kept off the socket meanwhile: the task's
        thread sends holding the output lock, so the loop's tries to send fail
        at once and it spins on the writable socket, holding the GIL from the
        sending thread (5-6 ms lost on a 6.5 MiB answer). What is left when
        the task is done sending, the loop sends, woken for it."""
        self.task_sending = True
        try:
            return super().write_soon(data)
        finally:
            self.task_sending = False
            if self.total_outbufs_len and self.connected:
                self.server.pull_trigger()

    def send_continue(self):
        # waitress also sends it when a request in progress ends; never for one not let in.
        if self.request is not None and self.request.let_in:
            super().send_continue()

    def _refuse(self, request: Request, answer: Answer) -> None:
        """Answer ``request`` with ``answer`` in turn and close (requests_lock held)."""
        request.error, request.completed = answer, True
        self.discarding = True
        self._queue(request)

    def _queue(self, request: Request) -> None:
        # As waitress does with a request once it is complete (requests_lock held).
        self.sent_continue = False
        if not request.empty:
            self.requests.append(request)
            if len(self.requests) == 1:
                self.server.add_task(self)  # type: ignore[arg-type]  # waitress's tasks are channels
        self.request = None

    # -- closing -------------------------------------------------------------
    def handle_write(self):
        if self.close_when_flushed and not self.will_close and not self.requests and self.connected:
            # As waitress, but once the answer is out: half-close and drain, not close.
            self._flush_exception(self._flush_some)
            if self.will_close:
                self.handle_close()
            elif not self.total_outbufs_len:
                self.close_when_flushed = False
                self._linger()
            return
        super().handle_write()

    def _linger(self) -> None:
        try:
            if self.socket is None:
                raise OSError("closed")
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self.handle_close()
            return
        self.discarding = True
        self.linger_until = time.monotonic() + LINGER_SECONDS

    def handle_close(self):
        self.waiting, self.held = None, b""
        super().handle_close()

    def overdue(self, now: float) -> str | None:
        """Why the server should close this connection now, if it should."""
        if self.linger_until is not None:
            return "lingered" if now >= self.linger_until else None
        if self.header_due is not None and now >= self.header_due and not self.requests \
                and self.waiting is None:
            return "slow headers"
        return None


class FrontDoorServer(TcpWSGIServer):
    """waitress's TCP server with the channels above, deadlines swept by
    ``sweep()``, and accepting paused while descriptors run short."""

    channel_class = FrontDoorChannel
    # What waitress sets and types-waitress types wrongly or leaves out.
    active_channels: dict[int, FrontDoorChannel]  # type: ignore[assignment]
    _map: dict

    def __init__(self, application, map, *, door: Door, adj, dispatcher):
        self.door = door
        self._accept_paused_until = 0.0
        self._slow_closed = 0
        self._next_note = self._next_sweep = 0.0
        super().__init__(application, map, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0])

    def readable(self):
        # Asked once per turn of the loop, before any channel is: the place
        # (as for waitress's own maintenance) to apply the door's decisions
        # and deadlines, so channels are polled for what they now want.
        self.tend()
        listening = super().readable()      # (also waitress's idle-channel maintenance)
        return listening and time.monotonic() >= self._accept_paused_until

    def tend(self) -> None:
        """Apply the door's decisions, then close connections past their deadlines."""
        decided = self.door.decided
        while decided:
            channel, request, future = decided.popleft()
            channel.answered(request, future)
        if time.monotonic() >= self._next_sweep:
            self.sweep()

    def handle_accept(self):
        # Each turn of the loop polls every connection, so taking one per
        # turn, as waitress does, makes a burst of N cost N turns of N.
        for _ in range(ACCEPT_BATCH):
            if len(self._map) >= self.adj.connection_limit or not self._accept_one():
                return

    def _accept_one(self) -> bool:
        """Accept one connection; False if there was none to take, or no descriptor for it."""
        try:
            pair = self.accept()
        except OSError as err:
            if err.errno in SHORT_OF_DESCRIPTORS:
                # The connection stays in the backlog; accepting again at
                # once would find the listener readable and fail forever.
                if not self._accept_paused_until:
                    log.warning("out of file descriptors (%s): accepting paused while it lasts", err)
                self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE
            else:
                log.warning("accepting a connection failed: %s", err)
            return False
        if pair is None:
            return False
        if self._accept_paused_until:
            log.info("accepting connections again")
            self._accept_paused_until = 0.0
        conn, addr = pair
        try:
            self.set_socket_options(conn)
            self.channel_class(self, conn, addr, self.adj, map=self._map)
        except OSError as err:
            log.warning("setting up a connection failed: %s", err)
            conn.close()
        return True

    def sweep(self) -> None:
        """Close connections past their deadlines (from the loop's thread)."""
        now = time.monotonic()
        self._next_sweep = now + SWEEP_EVERY
        for channel in list(self.active_channels.values()):
            why = channel.overdue(now)
            if why is not None:
                if why == "slow headers":
                    self._slow_closed += 1
                channel.handle_close()
        if self._slow_closed and now >= self._next_note:
            log.warning("closed %d connection(s) whose request headers took longer than %g s",
                        self._slow_closed, self.door.header_timeout)
            self._slow_closed, self._next_note = 0, now + NOTE_EVERY
