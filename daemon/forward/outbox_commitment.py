"""The outbox's committing state: an entry the platform has, whose confirmation
(a DICOM storage commitment report) is awaited.

    pending (leased) --await_confirmation--> committing
    committing (or pending, the report came first) --settle: committed--> delivered
    committing (or pending) --settle: failed--> pending, due now (resent, its steps forgotten)
    committing --past next_attempt--> leased again like a pending row (outbox.py lease_due)
    committing --restart--> pending, due now (outbox.py start: ask again)

Separate from ``outbox.py`` because only platforms that confirm later
(``commitment.py`` settles their reports) use it; the last two transitions
stay in ``outbox.py`` as clauses of statements that treat every due or
leased row alike.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from .outbox_table import Entry, OutboxTable


@dataclass(frozen=True)
class Settlement:
    """What a confirmation does to one entry (see ``CommitmentStates.settle``)."""
    receipt: dict | None = None         # delivered, with this receipt
    error: str | None = None            # else: pending, due now, with this as its last error
    forget: tuple[str, ...] = ()        # ... and these recorded steps dropped (resent from scratch)


class CommitmentStates(OutboxTable):
    """Entering and leaving the committing state; ``Outbox`` inherits them."""

    def await_confirmation(self, entry_id: int, until: float) -> bool:
        """A leased entry the platform has, whose confirmation is awaited until ``until``:
        committing. False when it was settled meanwhile (the confirmation came first)."""
        with self._lock:
            return bool(self._conn.execute(
                "UPDATE entries SET state = 'committing', leased = 0, next_attempt = ?, updated = ?"
                " WHERE id = ? AND state = 'pending' AND leased = 1",
                (until, self.clock(), entry_id)).rowcount)

    def settle(self, step: str, key: str, value: str,
               decide: Callable[[Entry], Settlement | None]) -> list[tuple[Entry, Settlement]]:
        """Apply a confirmation to the entries whose recorded ``progress[step][key]`` is
        ``value`` (pending, leased or not, or committing): ``decide`` says, per entry,
        delivered (a receipt) or resend (pending, due now, the error kept, steps
        forgotten), or None to leave it. Durable on return (synchronous=FULL), so the
        confirmation may be acknowledged to its sender after it."""
        if not (step.isidentifier() and key.isidentifier()):
            raise ValueError(f"bad step path {step}.{key}")
        now = self.clock()
        done: list[tuple[Entry, Settlement]] = []
        with self._durable_transaction():
            rows = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM entries WHERE state IN ('pending', 'committing')"
                f" AND json_extract(progress, '$.{step}.{key}') = ?", (value,)).fetchall()
            for row in rows:
                entry = self._entry(row)
                settlement = decide(entry)
                if settlement is None:
                    continue
                if settlement.receipt is not None:
                    self._conn.execute(
                        "UPDATE entries SET state = 'delivered', leased = 0, receipt = ?, next_attempt = ?,"
                        " updated = ? WHERE id = ?", (json.dumps(settlement.receipt), now, now, entry.id))
                else:
                    progress = {k: v for k, v in entry.progress.items() if k not in settlement.forget}
                    self._conn.execute(
                        "UPDATE entries SET state = 'pending', leased = 0, last_error = ?, progress = ?,"
                        " next_attempt = ?, updated = ? WHERE id = ?",
                        (settlement.error, json.dumps(progress) if progress else None, now, now, entry.id))
                done.append((entry, settlement))
        for entry, settlement in done:
            if settlement.receipt is not None:
                self._drop_file_if_unused(entry.id)
        return done
