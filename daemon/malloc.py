"""Giving memory back to the system: glibc's allocator, tuned and trimmed.

Images are megabytes, and numpy asks the C allocator for each array. glibc
gives every thread that allocates while another holds the lock an arena
of its own (up to 8 per core), and memory freed in an arena stays there
for that arena's next allocation. With a dozen waitress threads taking
turns at 8-40 MiB of pixels each, a daemon holding two images peaked at
372 MiB in the side-by-side with Orthanc (``python -m bench orthanc_side``),
159 MiB with two arenas (`tune`), and kept it: freed memory inside an
arena is not returned until `trim` (``malloc_trim(0)``) gives its free
pages back.

One arena (`ARENAS`), not one per core: glibc serves an array freed in
one arena only to the threads of that arena, so with two, each kept its
own freed images (a run of uploads and PNG answers peaked 114-118 MiB,
102 MiB with one, in the same run at the same speed). Mapping every large
block on its own (a fixed ``M_MMAP_THRESHOLD``) peaked as low but cost
9-18 % of an upload and a PNG answer: each image then faults in fresh pages.

`Trimmer` trims once image work has stopped: each scheduled `tick`
trims when bytes were freed since the last trim and none are held. Not
after every request: a trim returns the pages the next request would
fault in again (a few ms per 8 MiB array).

Elsewhere (musl, macOS) these are no-ops: ``mallopt`` and
``malloc_trim`` are glibc's.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from typing import Callable

log = logging.getLogger("sensord.memory")

ARENAS = 1              # every thread shares it: see above
_M_ARENA_MAX = -8       # mallopt parameter number, from glibc's malloc.h

_libc: ctypes.CDLL | None = None
_looked = False


def _glibc() -> ctypes.CDLL | None:
    global _libc, _looked
    if not _looked:
        _looked = True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
            if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
                _libc = libc
        except OSError:
            _libc = None
    return _libc


def tune(arenas: int = ARENAS) -> bool:
    """Cap the number of malloc arenas; True if glibc took it.

    Call before the threads start: arenas already made stay.
    """
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give free heap pages back to the system; True if glibc released any."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


class Trimmer:
    """Trims after image work, once nothing is held.

    ``freed()`` counts the bytes given back so far (it only grows);
    ``busy()`` says whether work holds memory now. ``trim`` is the call
    (replaceable in tests).
    """

    def __init__(self, freed: Callable[[], int], busy: Callable[[], bool], *,
                 trim: Callable[[], bool] = trim):
        self._freed, self._busy, self._trim = freed, busy, trim
        self._seen = freed()
        self._lock = threading.Lock()
        self.trims = 0

    def tick(self) -> bool:
        """Trim if bytes were freed since the last trim and none are held now; True if it did."""
        with self._lock:
            freed = self._freed()
            if freed == self._seen or self._busy():
                return False
            since, self._seen = freed - self._seen, freed
            self._trim()
            self.trims += 1
        log.debug("trimmed the heap after %d MiB of image work", since >> 20)
        return True
