"""The server's worker threads start as requests need them, up to the configured count."""
from __future__ import annotations

import threading
import time

from sensord.daemon.host.workers import START, WorkerPool
from tests.support.modality import API
from tests.support.sse_client import EventStream


class Blocking:
    """A waitress task that holds its thread until ``gate`` opens."""

    def __init__(self, gate: threading.Event):
        self.gate = gate
        self.started = threading.Event()
        self.cancelled = False

    def service(self):
        self.started.set()
        self.gate.wait(10)

    def cancel(self):
        self.cancelled = True


def _until(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _idle_pool(count: int) -> WorkerPool:
    pool = WorkerPool()
    pool.set_thread_count(count)
    assert _until(lambda: pool.active_count == 0)        # the first threads are waiting
    return pool


def test_a_few_threads_start_and_more_only_for_requests_that_would_wait():
    pool = _idle_pool(6)
    gate = threading.Event()
    try:
        assert len(pool.threads) == START
        tasks = [Blocking(gate) for _ in range(5)]
        for task in tasks:
            pool.add_task(task)
        assert _until(lambda: all(t.started.is_set() for t in tasks))     # none waits for a thread
        assert len(pool.threads) == 5
    finally:
        gate.set()
        assert pool.shutdown(timeout=5)
    assert not pool.threads


def test_never_more_threads_than_the_count_and_queued_requests_still_run():
    pool = _idle_pool(3)
    gate = threading.Event()
    try:
        tasks = [Blocking(gate) for _ in range(7)]
        for task in tasks:
            pool.add_task(task)
        assert _until(lambda: sum(t.started.is_set() for t in tasks) == 3)
        assert len(pool.threads) == 3 and len(pool.queue) == 4
        gate.set()
        assert _until(lambda: all(t.started.is_set() for t in tasks))
        assert len(pool.threads) == 3
    finally:
        gate.set()
        assert pool.shutdown(timeout=5)


def test_threads_started_stay_for_the_next_requests_and_a_lower_count_stops_some():
    pool = _idle_pool(8)
    gate = threading.Event()
    try:
        first = [Blocking(gate) for _ in range(4)]
        for task in first:
            pool.add_task(task)
        assert _until(lambda: all(t.started.is_set() for t in first))
        gate.set()
        assert _until(lambda: pool.active_count == 0)
        again = [Blocking(gate) for _ in range(4)]     # (the gate is open: they return at once)
        for task in again:
            pool.add_task(task)
        assert _until(lambda: all(t.started.is_set() for t in again))
        assert len(pool.threads) == 4                  # served by the threads already there
        pool.set_thread_count(1)
        assert _until(lambda: len(pool.threads) == 1)
    finally:
        gate.set()
        assert pool.shutdown(timeout=5)


def test_the_server_starts_few_threads_and_streams_still_get_theirs(serve):
    srv = serve(server={"threads": 4}, acquisition={"max_subscribers": 3})
    pool = srv.server._server.task_dispatcher
    assert isinstance(pool, WorkerPool) and pool.maximum == 4 + 3
    assert len(pool.threads) == START
    streams = [EventStream(srv.http, srv.url(API + "/devices/subscribe")) for _ in range(3)]
    try:
        assert all(s.status_code == 200 for s in streams)
        # Three threads held by the streams; the API still answers beside them.
        for _ in range(3):
            assert srv.http.get(srv.url(API + "/devices"), timeout=10).status_code == 200
        assert START < len(pool.threads) <= pool.maximum
    finally:
        for stream in streams:
            stream.close()
