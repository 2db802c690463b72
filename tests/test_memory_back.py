"""Memory given back: idle cached pixels dropped, the heap trimmed once image work stops."""
from __future__ import annotations

import numpy as np

from sensord.daemon import malloc
from sensord.daemon.store.pixel_budget import PixelBudget
from sensord.daemon.store.pixel_cache import PixelCache
from tests.support.filters_api import API, upload


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_tune_and_trim_answer_without_failing_anywhere():
    assert isinstance(malloc.tune(), bool)      # False where the C library is not glibc
    assert isinstance(malloc.trim(), bool)


def test_the_trimmer_trims_once_after_work_is_freed_and_none_is_held():
    freed, busy, trims = [0], [False], []
    trimmer = malloc.Trimmer(lambda: freed[0], lambda: busy[0], trim=lambda: trims.append(1) or True)
    assert not trimmer.tick()                   # nothing freed yet
    freed[0], busy[0] = 8 << 20, True
    assert not trimmer.tick()                   # freed, but work still holds memory
    busy[0] = False
    assert trimmer.tick() and len(trims) == 1
    assert not trimmer.tick() and len(trims) == 1      # nothing freed since


def test_the_budget_counts_what_work_gives_back():
    budget = PixelBudget(100 << 20)
    with budget.reserve(10 << 20, what="a test"):
        assert budget.released_bytes == 0
    with budget.admit(5 << 20, what="an exposure"):
        pass
    assert budget.released_bytes == 15 << 20 and budget.reserved_bytes == 0


def test_pixels_nobody_asked_for_are_dropped_and_counted():
    clock = Clock()
    cache = PixelCache(1 << 20, idle_seconds=30, clock=clock)
    cache.put("old", np.zeros((64, 64), np.uint16))
    cache.put("used", np.zeros((64, 64), np.uint16))
    clock.now += 20
    assert cache.get("used") is not None        # asked for: fresh again
    clock.now += 15
    assert cache.drop_idle() == 1
    assert cache.get("old") is None and cache.get("used") is not None
    assert cache.used_bytes == 64 * 64 * 2 and cache.dropped_bytes == 64 * 64 * 2
    cache.put("big", np.zeros((1 << 19) - 2048, np.uint16))  # evicts "used" to stay within budget
    assert cache.used_bytes <= cache.max_bytes and cache.dropped_bytes == 2 * 64 * 64 * 2


def test_the_daemon_trims_after_an_upload_and_a_filter(serve, monkeypatch):
    srv = serve()
    trims = []
    monkeypatch.setattr(srv.daemon.trimmer, "_trim", lambda: trims.append(1) or True)
    srv.daemon._give_memory_back()
    before = len(trims)
    created = upload(srv)
    assert created.status_code == 201
    assert srv.http.post(srv.url(f"{API}/images/{created.json()['id']}/filters/unmap")).status_code == 200
    srv.daemon._give_memory_back()              # (the scheduler's "memory" job)
    assert len(trims) == before + 1
    srv.daemon._give_memory_back()
    assert len(trims) == before + 1             # nothing freed since
