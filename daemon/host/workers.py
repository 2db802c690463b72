"""waitress's worker threads, started as the requests need them.

The server may run ``server.threads + acquisition.max_subscribers`` requests
at once (80 by default): every open event stream holds a thread. waitress
starts them all at once, and wakes the waiting threads in turn, so over a
day every one of them has run a request and keeps that stack resident.
`WorkerPool` starts `START` threads, then one more whenever a request is
queued with no thread free to take it, up to the same number: the capacity
is the one configured, the threads are those the load has needed.
"""
from __future__ import annotations

import logging

from waitress.task import ThreadedTaskDispatcher

log = logging.getLogger("sensord.server")

START = 2       # started with the server: a request and a probe need no thread started first


class WorkerPool(ThreadedTaskDispatcher):
    def __init__(self, initial: int = START) -> None:
        super().__init__()
        self.initial = initial
        self.maximum = 0

    @property
    def running(self) -> int:
        """Threads started and not told to stop."""
        return len(self.threads) - self.stop_count

    def set_thread_count(self, count: int) -> None:
        """At most ``count`` threads from now on; 0 (at shutdown) stops them all."""
        with self.lock:
            self.maximum = count
            running = self.running
            if running > count:
                self.stop_count += running - count
                self.queue_cv.notify_all()
            for _ in range(min(count, self.initial) - running):
                self._spawn()

    def add_task(self, task) -> None:
        with self.lock:
            self.queue.append(task)
            self.queue_cv.notify()
            # A thread woken but not yet running still counts as idle: it takes one of these.
            idle = self.running - self.active_count
            if len(self.queue) > idle:
                if self.running < self.maximum:
                    self._spawn()
                else:
                    self.queue_logger.warning("Task queue depth is %d", len(self.queue) - idle)

    def _spawn(self) -> None:
        """One more thread (with ``self.lock`` held); it counts as busy until it first waits."""
        number = 0
        while number in self.threads:
            number += 1
        self.threads.add(number)
        self.active_count += 1
        self.start_new_thread(self.handler_thread, number)
