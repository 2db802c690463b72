"""Failed logins: lock a user name out for a while after too many.

After ``max_failures`` failed attempts for one user name, every attempt for
that name is refused without looking at the password, the right one
included, until the window has passed. Refusing unchecked is the point:
a guesser learns nothing during the window and costs no password hash.
Once the window has passed the name gets one attempt: a failure locks it
again at once for twice the previous window (up to ``max_seconds``); a
success forgets the name.

Names are counted as sent, known or not, since a guesser needs no real
user name to cost us a hash. So that random names cannot grow memory, the
table keeps the ``max_names`` most recently failed names (oldest dropped
first) and keys each by a digest, so a megabyte-long name costs 32 bytes.

The clock is monotonic and injectable: tests step it instead of sleeping.
"""
from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    window: float = 0.0         # the last lockout's length; the next one doubles it


class Lockout:
    def __init__(self, *, max_failures: int = 5, seconds: float = 30, max_seconds: float = 900,
                 max_names: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.seconds = seconds
        self.max_seconds = max(max_seconds, seconds)
        self.max_names = max_names
        self.clock = clock
        self._records: OrderedDict[bytes, _Record] = OrderedDict()
        self._lock = threading.Lock()
        # Every failure and every lockout started since the start, for the metrics.
        self.failures_total = 0
        self.lockouts_total = 0

    @staticmethod
    def _key(name: str) -> bytes:
        return hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()

    def __len__(self) -> int:
        return len(self._records)

    def retry_after(self, name: str) -> float:
        """Seconds until ``name`` may try again; 0 when it may try now."""
        with self._lock:
            record = self._records.get(self._key(name))
            if record is None:
                return 0.0
            return max(0.0, record.locked_until - self.clock())

    def failed(self, name: str) -> float:
        """Count a failure; returns the length of the lockout it starts (0 for none)."""
        key = self._key(name)
        with self._lock:
            record = self._records.pop(key, None) or _Record()
            self._records[key] = record         # most recent last
            while len(self._records) > self.max_names:
                self._records.popitem(last=False)
            record.failures += 1
            self.failures_total += 1
            if record.failures < self.max_failures:
                return 0.0
            self.lockouts_total += 1
            record.window = self.seconds if not record.window else min(record.window * 2, self.max_seconds)
            record.locked_until = self.clock() + record.window
            return record.window

    def succeeded(self, name: str) -> None:
        with self._lock:
            if self._records:
                self._records.pop(self._key(name), None)


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up, at least 1 (0 would invite an immediate retry)."""
    return str(max(1, math.ceil(seconds)))
