"""A byte-bounded LRU of decoded images, so a resource is decoded once.

The PNG on disk is the truth; this cache only saves decode time. Arrays are
handed out read-only so no caller can change what another one sees. An
upload's pixels come in as `Scanlines` (proved, row filters maybe still to
undo): the first `get` undoes them, in place, and every later one gets
the same array.

The daemon builds one cache for ``store.pixel_cache_mb`` and shares it: the
resource store and the session images each see it through a ``CacheScope``,
so the budget holds for both together and their keys never meet.

Pixels nobody asked for in ``idle_seconds`` are dropped by `drop_idle`
(called periodically): a client filters an image within moments of
uploading it, and a cache full of last hour's images is memory the daemon
never gives back (`daemon.malloc` returns what is freed).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import numpy as np

from sensord.filters.png_scanlines import Scanlines

Held = TypeVar("Held", np.ndarray, Scanlines)


def _array(value: np.ndarray | Scanlines) -> np.ndarray:
    array = value if isinstance(value, np.ndarray) else value.pixels()
    array.flags.writeable = False
    return array


IDLE_SECONDS = 30.0


class PixelCache:
    def __init__(self, max_bytes: int, *, idle_seconds: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.max_bytes = max_bytes
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._items: OrderedDict[Hashable, np.ndarray | Scanlines] = OrderedDict()
        self._used: dict[Hashable, float] = {}     # when each was last put or got
        self._bytes = 0
        self._lock = threading.Lock()
        # Bytes let go so far (evicted, dropped, idle), for the heap trimmer.
        self.dropped_bytes = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            held = self._items.get(key)
            if held is None:
                return None
            self._items.move_to_end(key)
            self._used[key] = self._clock()
        return _array(held)     # (outside the cache's lock: undoing row filters takes ms)

    def drop_idle(self) -> int:
        """Drop what nobody asked for in ``idle_seconds``; returns how many."""
        horizon = self._clock() - self.idle_seconds
        with self._lock:
            idle = [key for key in self._items if self._used.get(key, horizon) <= horizon]
            for key in idle:
                self._pop(key)
        return len(idle)

    def _pop(self, key: Hashable) -> None:
        """(the lock held)"""
        old = self._items.pop(key, None)
        self._used.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
            self.dropped_bytes += old.nbytes

    def put(self, key: Hashable, value: Held) -> Held:
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
        if value.nbytes > self.max_bytes:
            return value
        with self._lock:
            self._pop(key)
            self._items[key] = value
            self._used[key] = self._clock()
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes:
                self._pop(next(iter(self._items)))
        return value

    def drop(self, key: Hashable) -> None:
        with self._lock:
            self._pop(key)

    @property
    def used_bytes(self) -> int:
        """Bytes of pixels held now; never more than ``max_bytes``."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def scope(self, name: str) -> CacheScope:
        """This cache as seen by one of its users: keys under ``name``."""
        return CacheScope(self, name)


class CacheScope:
    """One user's share of a PixelCache: same LRU, same budget, own keys.

    A key is stored as ``(name, key)``, so a resource id and a session image
    id cannot collide however they are chosen.
    """

    def __init__(self, cache: PixelCache, name: str):
        self.cache = cache
        self.name = name

    def get(self, key: str) -> np.ndarray | None:
        return self.cache.get((self.name, key))

    def put(self, key: str, value: Held) -> Held:
        return self.cache.put((self.name, key), value)

    def drop(self, key: str) -> None:
        self.cache.drop((self.name, key))
