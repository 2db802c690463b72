"""Typed publish/subscribe between the daemon's services.

A ``Signal[T]`` carries one kind of event object from the service that emits
it to the services that react, so neither imports the other: service.py
connects them. Handlers run on the emitter's thread, in the order they were
connected.

``emit`` isolates the handlers: one that raises is logged and the rest still
run, because a side concern (the status page) must never keep a session from
seeing its device's events. ``emit_strict`` is for the emitter that must not
go on when a handler fails (an image is announced only once the outbox holds
it): the first failure stops the rest and propagates, and the emitter undoes
what it was about to announce.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("sensord.signals")


def _describe(handler: Callable) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


class Signal(Generic[T]):
    def __init__(self, name: str):
        self.name = name
        # Replaced, never changed in place: an emit walks the tuple it started
        # with while another thread connects, and needs no lock to do so.
        self._handlers: tuple[Callable[[T], None], ...] = ()
        self._lock = threading.Lock()

    def connect(self, handler: Callable[[T], None]) -> Callable[[T], None]:
        """Call ``handler(event)`` on every emit from now on; returns ``handler``."""
        with self._lock:
            self._handlers = (*self._handlers, handler)
        return handler

    def disconnect(self, handler: Callable[[T], None]) -> None:
        """Stop calling ``handler``; one not connected is ignored."""
        with self._lock:
            self._handlers = tuple(h for h in self._handlers if h != handler)

    @property
    def handlers(self) -> tuple[Callable[[T], None], ...]:
        return self._handlers

    def emit(self, event: T) -> None:
        """Call every handler with ``event``; a failure is logged, not raised."""
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                log.exception("%s: handler %s failed on %s", self.name, _describe(handler),
                              type(event).__name__)

    def emit_strict(self, event: T) -> None:
        """Call the handlers in order; the first exception stops the rest and
        reaches the caller."""
        for handler in self._handlers:
            handler(event)

    def __repr__(self) -> str:
        return f"<Signal {self.name} ({len(self._handlers)} handlers)>"
