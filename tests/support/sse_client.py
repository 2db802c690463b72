"""A server-sent events reader for tests: a real streaming HTTP client in a thread."""
from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time

END = ("<end>", None)


class EventStream:
    def __init__(self, http, url: str, **kwargs):
        self.response = http.get(url, stream=True, timeout=(5, 30), **kwargs)
        self.status_code = self.response.status_code
        # The socket under the response's buffered reader (for close(), below).
        self._sock = None
        if self.status_code == 200:
            self._sock = socket.socket(fileno=os.dup(self.response.raw._fp.fp.fileno()))
        self.events: queue.Queue = queue.Queue()
        self.ended = threading.Event()
        if self.status_code == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        event, data = "message", []
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    self.events.put((event, json.loads("\n".join(data))))
                    event, data = "message", []
        except Exception:
            pass    # the connection closed under us: that ends the stream too
        finally:
            self.ended.set()
            self.events.put(END)

    def next(self, timeout: float = 5.0, *, heartbeats: bool = False):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event within {timeout} s")
            item = self.events.get(timeout=left)
            if item[0] == "heartbeat" and not heartbeats:
                continue
            return item

    def until(self, predicate, timeout: float = 5.0) -> list:
        """Events up to and including the first that satisfies ``predicate``."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            item = self.next(max(deadline - time.monotonic(), 0.001))
            if item is END:
                raise AssertionError(f"stream ended before the awaited event; saw {seen}")
            seen.append(item)
            if predicate(*item):
                return seen

    def close(self):
        # The reader thread sits in recv() holding the response's buffer lock;
        # shutting the socket down wakes it, so close() does not wait for the
        # server's next heartbeat. The server sees the client go away.
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self.ended.wait(5)
        self.response.close()
