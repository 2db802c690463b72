"""Helpers for driving the serial driver against the sensor emulator."""
from __future__ import annotations

import queue
import time

from sensord.drivers.base import DeviceEvent, FrameEvent, StateEvent

# Short timers keep the suite fast; silence_timeout leaves room for a busy 2-core box.
FAST = dict(read_timeout=0.02, ack_timeout=0.5, identify_timeout=0.5, silence_timeout=0.5,
            poll_interval=0.1, retry_interval=0.05, removal_grace=0.4, stall_timeout=0.1)


class Recorder:
    """The driver's emit callback; tests wait on it with bounded timeouts."""

    def __init__(self):
        self.q, self.seen = queue.Queue(), []

    def __call__(self, event):
        self.q.put(event)

    def next(self, match, timeout=3.0, what="event"):
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {what} within {timeout} s; saw {self.seen}") from None
            self.seen.append(event)
            if match(event):
                return event

    def state(self, state, detail="", timeout=3.0):
        return self.next(lambda e: isinstance(e, StateEvent) and e.state == state and detail in e.detail,
                         timeout, f"state {state} {detail!r}")

    def device(self, action, timeout=3.0):
        return self.next(lambda e: isinstance(e, DeviceEvent) and e.action == action, timeout, action)

    def frame(self, timeout=5.0):
        return self.next(lambda e: isinstance(e, FrameEvent), timeout, "frame")

    def frames_since(self, mark):
        return [e for e in self.seen[mark:] if isinstance(e, FrameEvent)]

    def settle(self, quiet=0.3):
        """Take in every event until none came for ``quiet`` seconds."""
        while True:
            try:
                self.seen.append(self.q.get(timeout=quiet))
            except queue.Empty:
                return

    def states_since(self, mark):
        """(state, detail) of every StateEvent seen since ``mark``, in order."""
        return [(e.state, e.detail) for e in self.seen[mark:] if isinstance(e, StateEvent)]
