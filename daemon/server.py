"""waitress, sized for the daemon, with a loop that stops from its own thread.

waitress's ``run()`` only returns once every socket is closed, and closing
them from another thread races its ``select``. Here the loop polls until
``stop()`` is asked for, then closes the listener and connections itself.
"""
from __future__ import annotations

import logging
import threading

from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger("sensord.server")


class Server:
    def __init__(self, app, settings, *, host: str | None = None, port: int | None = None):
        cfg = settings.server
        self._server = create_server(
            app,
            host=host if host is not None else cfg.host,
            port=port if port is not None else cfg.port,
            # Every open event stream holds a thread: give them their own.
            threads=cfg.threads + settings.acquisition.max_subscribers,
            channel_request_lookahead=1,   # lets a stream notice a client that left
            # A little above Flask's limit so that Flask answers 413 with a JSON body.
            max_request_body_size=(cfg.max_upload_mb << 20) + (1 << 20),
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
        self._stop = threading.Event()

    @property
    def port(self) -> int:
        return self._server.effective_port

    def run(self) -> None:
        """Serve until ``stop()``; then close every socket and the worker threads."""
        server = self._server
        try:
            while not self._stop.is_set():
                server.asyncore.loop(timeout=1.0, map=server._map, count=1)
        except Exception:
            log.exception("the HTTP server loop failed")
            raise
        finally:
            # Listener first (accept nothing new), then the connections, then
            # wait for the worker threads; the wake-up trigger goes last
            # because a finishing task still pulls it.
            wasyncore.dispatcher.close(server)
            for channel in list(server._map.values()):
                if channel is server.trigger:
                    continue
                try:
                    channel.handle_close()
                except Exception:
                    log.exception("closing a connection failed")
            server.task_dispatcher.shutdown()
            server.trigger.close()

    def stop(self) -> None:
        """Ask the loop to end; safe from any thread and from a signal handler."""
        self._stop.set()
        try:
            self._server.pull_trigger()
        except OSError:
            pass        # the loop has already ended and closed its trigger
