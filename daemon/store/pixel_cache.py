"""A byte-bounded LRU of decoded images, so a resource is decoded once.

The PNG on disk is the truth; this cache only saves decode time. Arrays are
handed out read-only so no caller can change what another one sees.

The daemon builds one cache for ``store.pixel_cache_mb`` and shares it: the
resource store and the session images each see it through a ``CacheScope``,
so the budget holds for both together and their keys never meet.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np


class PixelCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            array = self._items.get(key)
            if array is not None:
                self._items.move_to_end(key)
            return array

    def put(self, key: Hashable, array: np.ndarray) -> np.ndarray:
        array.flags.writeable = False
        if array.nbytes > self.max_bytes:
            return array
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = array
            self._bytes += array.nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes
        return array

    def drop(self, key: Hashable) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes

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

    def put(self, key: str, array: np.ndarray) -> np.ndarray:
        return self.cache.put((self.name, key), array)

    def drop(self, key: str) -> None:
        self.cache.drop((self.name, key))
