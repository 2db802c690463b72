"""A bound on the password hash checks running at once.

A scrypt check costs ~100 ms of CPU by design. Without a bound, a handful
of clients sending wrong passwords (each to a different made-up name, so
no lockout stops them) keeps every core busy and every worker thread in a
hash, and the imaging software's uploads queue behind them. Through this
gate at most ``concurrent`` checks run and at most ``waiting`` more wait
for a turn; a check beyond that is refused at once (503, Retry-After), so
a flood of guesses ties up a few threads, not all of them. Requests whose
credentials already verified never come here (the authenticator's cache).
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from sensord.daemon.errors import ServiceError


class ChecksBusy(ServiceError):
    """Too many password checks in progress: try again in a moment."""
    status = 503
    headers = {"Retry-After": "1"}


class HashGate:
    def __init__(self, concurrent: int, *, waiting: int = 8):
        self.concurrent = concurrent
        self._running = threading.BoundedSemaphore(concurrent)
        self._admitted = threading.BoundedSemaphore(concurrent + waiting)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``concurrent`` slots for the body; raise ChecksBusy if the queue is full."""
        if not self._admitted.acquire(blocking=False):
            raise ChecksBusy("too many password checks in progress; try again in a moment")
        try:
            with self._running:
                yield
        finally:
            self._admitted.release()
