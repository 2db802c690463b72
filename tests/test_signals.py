"""Signals: typed publish/subscribe between the daemon's services.

Unit tests of ``Signal`` itself, then the daemon's own signals: a handler
that fails is logged and harms neither the other handlers nor the request
that caused the event; only the image handler may (and must) fail the
exposure, so that no image is announced before the outbox holds it.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import pytest

from sensord.daemon.acquisition.events import ImageAcquired, SessionChanged
from sensord.daemon.signals import Signal
from tests.support.modality import (
    API,
    arm_and_wait,
    control,
    create_session,
    device_of,
    expose,
    state_is,
    subscribe_status,
)


@dataclass(frozen=True)
class Ping:
    n: int


def boom(event):
    raise RuntimeError(f"handler bug on {type(event).__name__}")


def connect_first(signal: Signal, handler) -> None:
    """Put ``handler`` ahead of those already connected."""
    others = signal.handlers
    for other in others:
        signal.disconnect(other)
    signal.connect(handler)
    for other in others:
        signal.connect(other)


def test_handlers_get_each_event_in_the_order_they_connected():
    signal: Signal[Ping] = Signal("test")
    calls = []
    assert signal.connect(lambda e: calls.append(("a", e.n))) is not None
    signal.connect(lambda e: calls.append(("b", e.n)))
    signal.emit(Ping(1))
    signal.emit(Ping(2))
    assert calls == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]


def test_a_failing_handler_is_logged_and_the_others_still_run(caplog):
    signal: Signal[Ping] = Signal("test")
    got = []
    signal.connect(got.append)
    signal.connect(boom)
    signal.connect(got.append)
    with caplog.at_level(logging.ERROR, logger="sensord.signals"):
        signal.emit(Ping(7))          # does not raise
    assert got == [Ping(7), Ping(7)]
    [record] = caplog.records
    assert "boom" in record.getMessage() and "Ping" in record.getMessage()
    assert record.exc_info[0] is RuntimeError


def test_emit_strict_stops_at_the_first_failure_and_raises():
    signal: Signal[Ping] = Signal("test")
    got = []
    signal.connect(got.append)
    signal.connect(boom)
    signal.connect(got.append)
    with pytest.raises(RuntimeError, match="handler bug"):
        signal.emit_strict(Ping(1))
    assert got == [Ping(1)]


def test_disconnect_stops_the_calls_and_ignores_strangers():
    signal: Signal[Ping] = Signal("test")
    got = []
    signal.connect(got.append)
    signal.disconnect(got.append)        # an equal bound method, as service.py would pass
    signal.disconnect(boom)              # never connected: ignored
    signal.emit(Ping(1))
    assert got == [] and signal.handlers == ()


def test_a_handler_connected_during_an_emit_starts_with_the_next_one():
    signal: Signal[Ping] = Signal("test")
    late = []

    def connect_another(event):
        signal.connect(late.append)

    signal.connect(connect_another)
    signal.emit(Ping(1))
    assert late == []
    signal.emit(Ping(2))
    assert late == [Ping(2)]


def test_concurrent_connects_are_all_kept():
    signal: Signal[Ping] = Signal("test")
    counts = [0] * 8

    def connector(i):
        signal.connect(lambda e, i=i: counts.__setitem__(i, counts[i] + 1))

    threads = [threading.Thread(target=connector, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    signal.emit(Ping(0))
    assert counts == [1] * 8


# -- the daemon's signals ----------------------------------------------------

def test_a_failing_driver_event_handler_does_not_cut_sessions_off(serve, caplog):
    srv = serve(prepare=lambda daemon: connect_first(daemon.devices.driver_events, boom))
    dev = device_of(srv, "Simradix Select")["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    with caplog.at_level(logging.ERROR, logger="sensord.signals"):
        states, info = expose(srv, sid, dev, subscribe_status(srv, sid))
    assert states[-1] == "NewImage" and info["id"]
    assert any("handler boom failed on StateEvent" in r.getMessage() for r in caplog.records)


def test_a_failing_session_handler_does_not_fail_the_request(serve):
    seen: list[SessionChanged] = []

    def prepare(daemon):
        connect_first(daemon.sessions.session_changed, boom)
        daemon.sessions.session_changed.connect(seen.append)

    srv = serve(prepare=prepare)
    dev = device_of(srv, "Simradix Select")["deviceId"]
    sid = create_session(srv, dev)["sessionId"]            # 201, not a 500 from the handler
    assert srv.http.delete(srv.url(f"{API}/acquisition/{sid}")).status_code == 200
    assert [e.session.id for e in seen] == [sid, sid] and seen[-1].session.deleted


def test_a_failing_image_handler_fails_the_exposure_and_keeps_no_image(serve):
    acquired: list[ImageAcquired] = []

    def prepare(daemon):
        daemon.sessions.image_acquired.connect(acquired.append)
        daemon.sessions.image_acquired.connect(boom)      # the outbox refusing, say

    srv = serve(prepare=prepare)
    dev = device_of(srv, "Simradix Select")["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    stream = subscribe_status(srv, sid)
    arm_and_wait(srv, sid, stream)
    assert control(srv, dev, "expose").status_code == 200
    states = [d["state"] for _, d in stream.until(state_is("Error"), timeout=15)]
    assert "NewImage" not in states
    [event] = acquired
    assert event.session.id == sid and not event.image.png_path.exists()
    assert srv.http.get(srv.url(f"{API}/acquisition/{sid}/images")).json() == []
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert status["totalImages"] == 0 and "lastImageId" not in status
