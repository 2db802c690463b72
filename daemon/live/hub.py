"""Publish/subscribe for server-sent events.

A ``Hub`` fans events out to its subscribers; each subscriber has its own
queue so a slow client never delays the publisher or the others. All hubs
share one ``SubscriberLimit`` because every open stream holds one of
waitress's worker threads: past the cap a new subscriber is refused (503)
instead of starving the rest of the API.
"""
from __future__ import annotations

import collections
import threading

from sensord.daemon.errors import ServiceError

CLOSED = object()   # what get() returns once the subscription has ended


class TooManySubscribers(ServiceError):
    status = 503
    headers = {"Retry-After": "5"}


class SubscriberLimit:
    def __init__(self, maximum: int):
        self.maximum = maximum
        self._count = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            if self._count >= self.maximum:
                raise TooManySubscribers(f"{self.maximum} event subscribers are already connected; "
                                         "try again later")
            self._count += 1

    def release(self) -> None:
        with self._lock:
            self._count -= 1

    @property
    def count(self) -> int:
        return self._count


class Subscription:
    # A client that stops reading must not grow memory without bound: past
    # this many queued events the oldest are dropped (status is a state, and
    # the newest state is what matters).
    MAX_QUEUED = 256

    def __init__(self, hub: "Hub"):
        self._hub = hub
        self._items: collections.deque = collections.deque(maxlen=self.MAX_QUEUED)
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def get(self, timeout: float | None):
        """The next event, None after ``timeout`` seconds without one, or CLOSED."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._items:
                return self._items.popleft()
            return CLOSED if self._closed else None

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._hub._forget(self)

    @property
    def closed(self) -> bool:
        return self._closed


class Hub:
    def __init__(self, limit: SubscriberLimit):
        self._limit = limit
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()
        self._closed = False

    def subscribe(self) -> Subscription:
        with self._lock:
            if self._closed:
                raise LookupError("this event source has ended")
            self._limit.acquire()
            sub = Subscription(self)
            self._subscribers.add(sub)
            return sub

    def publish(self, event: str, data) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.put((event, data))

    def close(self) -> None:
        """End every subscription (their streams finish cleanly) and refuse new ones."""
        with self._lock:
            self._closed = True
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.close()

    def _forget(self, sub: Subscription) -> None:
        with self._lock:
            if sub not in self._subscribers:
                return
            self._subscribers.discard(sub)
        self._limit.release()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
