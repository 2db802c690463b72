"""An in-process TLS front: terminates HTTPS and pipes the bytes to waitress.

waitress has no TLS, and the vendor's service speaks HTTPS on its port. The
standard library (``ssl`` + ``asyncio``) is enough to terminate TLS and copy
bytes both ways, so no proxy to install or supervise. The backend is waitress
on a loopback port only: the plain-text leg never leaves the machine.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading

log = logging.getLogger("sensord.tls")

READ_SIZE = 1 << 18     # images are megabytes: move them in large pieces


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ValueError(f"TLS {what} file {path} does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot read TLS {what} file {path}: {exc.strerror or exc}") from None


def load_context(cert_path: str, key_path: str = "") -> ssl.SSLContext:
    """A server context (TLS 1.2 or newer) from PEM files; ValueError saying what is wrong.

    An empty ``key_path`` means the private key is in ``cert_path``.
    """
    cert = _read(cert_path, "certificate")
    key_file = key_path or cert_path
    key = _read(key_path, "key") if key_path else cert
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise ValueError(f"TLS certificate file {cert_path} holds no PEM certificate")
    if b"PRIVATE KEY-----" not in key:
        raise ValueError(f"TLS key file {key_file} holds no PEM private key"
                         + ("" if key_path else "; append the key to it or give a key file"))

    def no_password():      # OpenSSL would otherwise prompt on the tty: a daemon would hang
        raise ValueError(f"TLS key file {key_file} is encrypted and the daemon cannot ask for "
                         f"its password; decrypt it: openssl pkey -in {key_file} -out plain.pem")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path or None, password=no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"TLS key in {key_file} does not match the certificate "
                             f"in {cert_path}") from None
        raise ValueError(f"TLS certificate {cert_path} or key {key_file} is not valid PEM "
                         f"(OpenSSL: {exc.reason or exc})") from None
    return context


class TlsFront:
    """Listens for TLS on ``host:port`` and pipes each connection to ``backend``.

    Binds at construction (a busy port raises OSError there, port 0 is resolved
    at once); ``start()`` serves from a daemon thread named "tls-front".

    A connection that has not finished its handshake within
    ``handshake_timeout`` seconds is closed. At most ``max_connections`` are
    open at once (each holds descriptors); the next ones wait in the listen
    backlog until one ends.
    """

    def __init__(self, context: ssl.SSLContext, host: str, port: int, backend: tuple[str, int],
                 *, handshake_timeout: float = 10.0, max_connections: int = 1000):
        self._context, self._backend, self._handshake_timeout = context, backend, handshake_timeout
        self._slots = asyncio.Semaphore(max_connections)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family, backlog=1024)
        self._sock.setblocking(False)
        self._port = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task] = set()      # live connections, for stop() to cancel
        # Our port on each connection to the backend -> the TLS client's address (peer_of).
        self._peers: dict[int, str] = {}
        self._stop_asked = asyncio.Event()
        self._ready, self._lock, self._stopping = threading.Event(), threading.Lock(), False

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> None:
        if self._thread is not None or self._stopping:
            raise RuntimeError("a TLS front starts once")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(self._loop,), name="tls-front", daemon=True)
        self._thread.start()
        self._ready.wait()

    def peer_of(self, backend_port: int) -> str | None:
        """The address of the TLS client whose bytes come to the backend from
        ``backend_port`` (the source port the backend sees); None if none does."""
        return self._peers.get(backend_port)

    def set_context(self, context: ssl.SSLContext) -> None:
        """Use ``context`` for the connections accepted from now on (a renewed certificate)."""
        self._context = context

    def stop_accepting(self) -> None:
        """Close the listener only; the connections already open go on."""
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._close_listener)
            except RuntimeError:
                pass        # the loop has just ended

    def _close_listener(self) -> None:
        # Close the socket once the accept task has let go of it.
        if self._accepting is not None and not self._accepting.done():
            self._accepting.add_done_callback(lambda _: self._sock.close())
            self._accepting.cancel()
        else:
            self._sock.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener, then the connections, then the loop; safe twice, from any thread."""
        with self._lock:
            first, self._stopping = not self._stopping, True
        if self._thread is None or self._loop is None:     # not started (start() sets the loop first)
            self._sock.close()
            return
        if first:
            try:
                self._loop.call_soon_threadsafe(self._stop_asked.set)
            except RuntimeError:
                pass        # the loop has already ended
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.run_until_complete(self._main())
        except Exception:
            log.exception("the TLS front failed")
        finally:
            self._ready.set()       # never leave start() waiting
            self._sock.close()
            loop.close()

    async def _main(self) -> None:
        accepting = self._accepting = asyncio.create_task(self._accept())
        self._ready.set()
        await self._stop_asked.wait()
        accepting.cancel()
        await asyncio.gather(accepting, return_exceptions=True)
        self._sock.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.sleep(0)      # the aborted transports close their sockets

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()     # beyond the budget, wait in the backlog
            try:
                conn, peer = await loop.sock_accept(self._sock)
            except OSError as exc:      # out of file descriptors and the like: do not spin
                self._slots.release()
                log.warning("accepting a TLS connection failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            except BaseException:       # cancelled: stop() or stop_accepting()
                self._slots.release()
                raise
            task = asyncio.create_task(self._serve(conn, peer))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _serve(self, conn: socket.socket, peer) -> None:
        # Our own accept and handshake (not start_server's) keep a handshaking
        # connection inside a task, so stop() can cancel it too.
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        streams: list[asyncio.StreamWriter] = []
        source: int | None = None
        try:
            try:
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol, conn, ssl=self._context,
                    ssl_handshake_timeout=self._handshake_timeout, ssl_shutdown_timeout=10.0)
            except OSError as exc:          # scanners, plain HTTP, silent or old clients
                log.debug("TLS handshake with %s failed: %r", peer, exc)
                return
            streams.append(asyncio.StreamWriter(transport, protocol, reader, loop))
            try:
                up_reader, up = await asyncio.open_connection(*self._backend, limit=READ_SIZE)
            except OSError as exc:
                log.warning("cannot reach the HTTP server at %s:%s (%s); closed the TLS "
                            "connection from %s", *self._backend, exc, peer[0])
                return
            streams.append(up)
            # Before the first byte goes up: the backend decides on headers by the client's address.
            source = up.get_extra_info("sockname")[1]
            self._peers[source] = peer[0]
            for writer in streams:
                writer.transport.set_write_buffer_limits(high=READ_SIZE)
            await asyncio.gather(_pipe(reader, up, streams), _pipe(up_reader, streams[0], streams))
            for writer in reversed(streams):    # the TLS goodbye last, bounded by its timeout
                writer.close()
                await writer.wait_closed()
        except OSError as exc:
            log.debug("TLS connection from %s ended: %r", peer, exc)
        except Exception:
            log.exception("piping the TLS connection from %s failed", peer)
        finally:                            # also when stop() cancels: close at once
            if source is not None:
                self._peers.pop(source, None)
            for writer in streams:
                writer.transport.abort()
            conn.close()                    # in case no transport took the socket


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, streams) -> None:
    """Copy until EOF, forwarding each piece at once (event streams); pass the EOF on."""
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():      # the plain side: half-close, the reply may still come
            writer.write_eof()
        else:                           # TLS cannot half-close
            writer.close()
    except OSError as exc:              # resets, TLS errors, broken pipes: ordinary
        log.debug("TLS connection ended: %r", exc)
        for each in streams:
            each.transport.abort()
