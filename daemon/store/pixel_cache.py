"""A byte-bounded LRU of decoded images, so a resource is decoded once.

The PNG on disk is the truth; this cache only saves decode time. Arrays are
handed out read-only so no caller can change what another one sees.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class PixelCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            array = self._items.get(key)
            if array is not None:
                self._items.move_to_end(key)
            return array

    def put(self, key: str, array: np.ndarray) -> np.ndarray:
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

    def drop(self, key: str) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
