"""Daemon lives for the resume tests: an outbox and a forwarder opened on a
state folder, run for a few rounds, then closed; optionally cut short right
after a step is recorded, which stands for kill -9 (nothing after it runs)."""
from __future__ import annotations

from sensord.daemon.forward.delivery import Forwarder, Target
from sensord.daemon.forward.outbox import Outbox
from sensord.daemon.forward.platforms import open_adapter
from tests.support.delivery import make_delivery
from tests.support.loopback import wait_until


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs in this 'process'."""


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def run(folder, kind, options, clock, *, target: str = "central", kill_after: str | None = None,
        rounds: int = 1):
    """One daemon life: open the outbox, deliver what is due ``rounds`` times, close."""
    outbox = Outbox(folder / "outbox", clock=clock)
    outbox.start()
    if kill_after is not None:
        record = outbox.record_step

        def record_then_die(entry_id, step, value):
            record(entry_id, step, value)
            if step == kill_after and value is not None:
                raise Killed(step)
        outbox.record_step = record_then_die        # type: ignore[method-assign]
    adapter = open_adapter(kind, name=target, options=options)
    forwarder = Forwarder(outbox, {target: Target(name=target, kind=kind, adapter=adapter, backoff_base=1.0,
                                                  backoff_max=1.0)},
                          work_dir=folder / "work", clock=clock)
    forwarder.start()
    try:
        for _ in range(rounds):
            forwarder.tick()
            assert wait_until(lambda: forwarder.in_flight == 0, 10)
            clock.now += 5
        return outbox.list()
    finally:
        forwarder.close()
        outbox.close()


def queue(folder, tmp_path, clock, *, target: str = "central"):
    """One image queued raw for ``target`` in the outbox under ``folder``."""
    item = make_delivery(tmp_path)
    outbox = Outbox(folder / "outbox", clock=clock)
    outbox.start()
    outbox.add([(target, "raw")], image_id=item.image_id, image_info=item.image_info, context=item.context,
               png_path=item.png_path)
    outbox.close()
    return item
