"""A TCP relay on loopback that can hold connections: it stands between an
archive and the daemon's listener so a test decides when a storage
commitment report gets through.

While ``holding``, each connection that arrives is kept open and unanswered
(``held`` is set); ``release()`` drops the held ones (as a dead daemon's
port would: the sender gives up) and from then on relays byte for byte to
``upstream``. Bytes only: no DICOM is parsed here.
"""
from __future__ import annotations

import socket
import threading


class HoldingRelay:
    def __init__(self, port: int, upstream: int):
        self.upstream = upstream
        self.holding = True
        self.held = threading.Event()
        self._kept: list[socket.socket] = []
        self._closed = False
        self._server = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self.holding = False
        for conn in self._kept:
            conn.close()
        self._kept.clear()

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=5)
        self._server.close()
        self.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.holding:
                self._kept.append(conn)
                self.held.set()
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                conn.close()
                continue
            for source, sink in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(60)
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            source.close()
