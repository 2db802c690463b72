"""Failed logins: slow a guesser down without locking anyone else out.

The threat. Whoever reaches the port may try passwords: on the default
loopback port every program and every user of this PC (and web pages,
through navigations to user:password@ URLs); with ``server.host`` on the
LAN, other machines. Two harms follow: finding a password by trying
(guessing), and making the daemon refuse a right password by failing on
purpose (a denial of service). Counted per user name alone, five wrong
passwords for "admin" from anywhere locked the operator out, for up to
``max_seconds``.

The choice:

- Failures count per key, (user name, client), so a guesser holds back its
  own client only. The client is the peer's address (for HTTPS, the one the
  TLS front saw: ``client_of``). Every loopback address (127/8, ::1) is one
  client, and so is each IPv6 /64: a guesser picks its source among those
  at will. The source port is no identity (a new one per connection), and
  the peer's OS user cannot be read under the unit's sandbox (ProcSubset=pid
  hides /proc/net, and netlink is not allowed).
- A guess is a password not tried from that key before: a repeat of one
  that failed there (a client set up with an old password, or someone
  hammering one wrong password) is refused at once, costs no hash, tells
  nothing new and counts towards nothing but the metrics. The last
  ``REMEMBERED`` failed credentials of a key are kept, as part of the
  keyed digest auth.py makes (worthless outside this process).
- After ``max_failures`` wrong guesses the key waits: its new credentials
  are refused (429, unchecked: no hash paid, nothing learnt) until
  ``seconds`` have passed; then it gets one more guess, whose failure makes
  it wait again, twice as long, up to ``max_seconds``. A password checked
  right forgets the key.
- While a key waits, the right password is refused too: letting it in
  would answer each guess with right or wrong at the guesser's request
  rate. Outside a wait, credentials this process verified already (auth.py's
  cache) get in without a hash.

What it costs. Where clients share a key (every program on this PC), a
program guessing different passwords for a user name holds that user off
from this PC a window at a time; the choice is to give a guesser no answer
rather than keep that user in. A client set up with an old password, the
common accident, locks nobody out (its repeats are not guesses). Long
random passwords (the generated admin password has 24 characters) make
guessing moot.

Bounds: the table keeps the ``max_keys`` most recently failed keys (the
oldest dropped first), each under a digest, so a megabyte-long name costs
32 bytes, with at most ``REMEMBERED`` digests of ``TRIED_BYTES`` each.

The clock is monotonic and injectable: tests step it instead of sleeping.
"""
from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

REMEMBERED = 8          # failed credentials remembered per key
TRIED_BYTES = 16        # of each one's digest
LOOPBACK = "loopback"   # the one client every program on this PC is


def client_of(remote: str | None) -> str:
    """The client a failure counts against: the peer's address, with every
    loopback address as one and each IPv6 /64 as one."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote[:64]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return LOOPBACK
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass
class _Record:
    failures: int = 0           # wrong guesses, repeats not counted
    locked_until: float = 0.0
    window: float = 0.0         # the last wait's length; the next one doubles it
    tried: bytes = b""          # the last REMEMBERED failed credentials, TRIED_BYTES each

    def tried_before(self, credential: bytes) -> bool:
        mine = credential[:TRIED_BYTES]
        return any(self.tried[i:i + TRIED_BYTES] == mine for i in range(0, len(self.tried), TRIED_BYTES))


class Lockout:
    def __init__(self, *, max_failures: int = 5, seconds: float = 30, max_seconds: float = 900,
                 max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.seconds = seconds
        self.max_seconds = max(max_seconds, seconds)
        self.max_keys = max_keys
        self.clock = clock
        self._records: OrderedDict[bytes, _Record] = OrderedDict()
        self._lock = threading.Lock()
        # Every failure (repeats too) and every wait started since the start, for the metrics.
        self.failures_total = 0
        self.lockouts_total = 0

    @staticmethod
    def _key(name: str, client: str) -> bytes:
        return hashlib.sha256(client.encode() + b"\0" + name.encode("utf-8", "surrogatepass")).digest()

    def __len__(self) -> int:
        return len(self._records)

    def retry_after(self, name: str, client: str) -> float:
        """Seconds until ``name`` may guess again from ``client``; 0 when it may now."""
        with self._lock:
            record = self._records.get(self._key(name, client))
            if record is None:
                return 0.0
            return max(0.0, record.locked_until - self.clock())

    def _touch(self, key: bytes) -> _Record:
        """The key's record, made the most recent (lock held); the table kept to its bound."""
        record = self._records.pop(key, None) or _Record()
        self._records[key] = record
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)
        return record

    def repeated(self, name: str, client: str, credential: bytes) -> bool:
        """Whether ``credential`` (a keyed digest of user and password) already
        failed from this key; if so it is counted as a failure, and nothing more."""
        key = self._key(name, client)
        with self._lock:
            record = self._records.get(key)
            if record is None or not record.tried_before(credential):
                return False
            self._touch(key)
            self.failures_total += 1
            return True

    def failed(self, name: str, client: str, credential: bytes) -> float:
        """Count a wrong guess; returns the length of the wait it starts (0 for none)."""
        with self._lock:
            record = self._touch(self._key(name, client))
            self.failures_total += 1
            if not record.tried_before(credential):
                record.tried = (record.tried + credential[:TRIED_BYTES])[-REMEMBERED * TRIED_BYTES:]
            record.failures += 1
            if record.failures < self.max_failures:
                return 0.0
            self.lockouts_total += 1
            record.window = self.seconds if not record.window else min(record.window * 2, self.max_seconds)
            record.locked_until = self.clock() + record.window
            return record.window

    def succeeded(self, name: str, client: str) -> None:
        with self._lock:
            if self._records:
                self._records.pop(self._key(name, client), None)

    def forget_credentials(self) -> None:
        """Forget which credentials failed (a reload: one may be right now); the waits stay."""
        with self._lock:
            for record in self._records.values():
                record.tried = b""


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up, at least 1 (0 would invite an immediate retry)."""
    return str(max(1, math.ceil(seconds)))
