"""What the forwarding room tells the rest of the daemon, as typed events
(carried on ``Signal``s from sensord.daemon.signals; service.py connects them)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageQueued:
    """An acquired image went through the forward rules and is in the outbox.

    Emitted for every acquired image, also when no rule applies (``pairs``
    empty). ``context`` is the context as queued (after any context hook);
    ``pairs`` the (target, filter) pairs it was queued for.
    """
    session_id: str
    image_id: str
    image_info: dict
    context: dict
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DeliveryEnded:
    """One outbox entry's delivery attempt ended, or a storage commitment report settled it.

    ``result``: "delivered"; "committing" (the platform has it and confirms
    later); "retry" (failed, tried again later); "dead" (dead-lettered);
    "resend" (the archive reported it not committed: stored again).
    ``seconds``: how long the platform took over the attempt (None for a
    settlement, or an entry that never reached the platform).
    """
    target: str
    result: str
    seconds: float | None = None
