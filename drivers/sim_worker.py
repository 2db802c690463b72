"""The sim driver's one worker thread: it runs the timers and delivers the events.

Kept apart from the device state machine (:mod:`drivers.sim_device`)
because it knows nothing about devices: a queue of events and a heap of
timers, both guarded by the driver lock, drained by one thread.

One worker thread runs the timers and is the only caller of ``emit``;
events are queued under the driver lock in the order the state changed and
delivered without any lock held. Frames are rendered on that thread too
(~0.05-0.1 s for a size 2 sensor), so an event may wait as long.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from typing import Optional

from .base import Emit, Event

# The driver's logger (sensord.drivers.sim): its records keep their old name.
log = logging.getLogger(__name__.rpartition(".")[0] + ".sim")


class Worker:
    """Events and timers of one sim driver, guarded by its lock ``cv``.

    ``push`` and ``later`` are called with ``cv`` held; ``flush`` and
    ``close`` take it themselves.
    """

    def __init__(self, cv: threading.Condition, emit: Emit, time_scale: float) -> None:
        self.cv = cv
        self.emit = emit
        self.time_scale = time_scale
        self._timers: list = []            # heap of (due, seq, fn, args)
        self._events: deque[Event] = deque()
        self._pushed = self._delivered = 0     # for flush()
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self.closed = False

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the thread (``cv`` held, not started, not closed)."""
        self._thread = threading.Thread(target=self._run, name="sim-driver", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 5.0) -> None:
        with self.cv:
            target = self._pushed
            self.cv.wait_for(lambda: self._delivered >= target or self.closed, timeout)

    def close(self) -> None:
        with self.cv:
            if self.closed:
                return
            self.closed = True
            self._timers.clear()
            self.cv.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def push(self, event: Event) -> None:
        self._events.append(event)
        self._pushed += 1
        self.cv.notify_all()

    def later(self, delay_s: float, fn, *args) -> None:
        due = time.monotonic() + delay_s * self.time_scale
        heapq.heappush(self._timers, (due, next(self._seq), fn, args))
        self.cv.notify_all()

    def _run(self) -> None:
        """Deliver queued events in order and run due timers; wait otherwise."""
        while True:
            job = None
            with self.cv:
                while not self._events:
                    if self.closed:
                        return
                    now = time.monotonic()
                    if self._timers and self._timers[0][0] <= now:
                        job = heapq.heappop(self._timers)
                        break
                    self.cv.wait(self._timers[0][0] - now if self._timers else None)
                events = list(self._events)
                self._events.clear()
            for event in events:
                try:
                    self.emit(event)
                except Exception:        # a faulty listener must not stop the device
                    log.exception("sim driver: emit failed for %r", event)
            if events:
                with self.cv:
                    self._delivered += len(events)
                    self.cv.notify_all()
            if job is not None:
                try:
                    job[2](*job[3])
                except Exception:
                    log.exception("sim driver: timer job %s failed", job[2].__name__)
