"""The outbox: images waiting to be forwarded, in SQLite (WAL) in the state folder.

One row per (target, image, filter). A row is committed, and its PNG
fsynced under ``outbox/files/``, before anything is acknowledged, so it
survives ``kill -9``. Delivery (``forward/delivery.py``) leases a row before
sending: a crash mid-delivery leaves it pending, and after a restart it is
sent again, which the adapters make harmless (idempotent deliveries).

States: pending -> delivered | dead (last error kept; an operator may
retry it) ; dropped rows are deleted, and delivered ones once old
(``prune``, from the scheduler: ``forward.keep_delivered_days``). pending -> committing when the
platform has the image and confirms it later (storage commitment): the row
waits, not leased, until ``next_attempt``; the confirmation settles it
(``settle``: delivered, or pending again to be resent), and past its
deadline it is leased again like a pending row (the adapter is told the
wait expired).

The table, its connection and ``Entry`` are in ``outbox_table.py``; the
committing state's transitions (``await_confirmation``, ``settle``) in
``outbox_commitment.py``, which ``Outbox`` inherits.
"""
from __future__ import annotations

import builtins
import dataclasses
import json
import logging
import sqlite3
from collections.abc import Collection
from pathlib import Path

from sensord.daemon.durable import link_atomic, write_atomic

from .outbox_commitment import CommitmentStates
from .outbox_table import WAITING, Entry

log = logging.getLogger("sensord.outbox")


class Outbox(CommitmentStates):
    """``Outbox(root, clock=time.time)``: the rows under ``root`` (see OutboxTable), used
    between start() and close()."""

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        self.files.mkdir(parents=True, exist_ok=True)
        db = self._open()
        with self._lock:
            # Leases from a previous run are void: those deliveries were cut short.
            released = db.execute("UPDATE entries SET leased = 0, next_attempt = ? WHERE leased = 1",
                                  (self.clock(),)).rowcount
            # Confirmations awaited by the previous run are asked for again now: one may
            # have come while no listener was up. (Pending again, so not "expired".)
            asked = db.execute("UPDATE entries SET state = 'pending', next_attempt = ? WHERE state = 'committing'",
                               (self.clock(),)).rowcount
        self._remove_orphan_files()
        counts = self.counts()
        log.info("outbox: %d pending, %d dead%s%s", counts.get("pending", 0), counts.get("dead", 0),
                 f", {released} cut short by the last stop" if released else "",
                 f", {asked} awaiting a confirmation asked for again" if asked else "")

    def _remove_orphan_files(self) -> None:
        with self._lock:
            wanted = {row["file"] for row in self._conn.execute(
                f"SELECT DISTINCT file FROM entries WHERE {WAITING}")}
            for path in self.files.iterdir():
                if path.name not in wanted:
                    path.unlink(missing_ok=True)

    # -- adding ----------------------------------------------------------
    def _store_file(self, source: Path | None, data: bytes | None, name: str) -> None:
        dest = self.files / name
        if dest.exists():
            return
        if source is not None:
            try:
                link_atomic(source, dest)     # same disk: no copy, the bytes are already durable
                return
            except OSError:
                data = Path(source).read_bytes()
        if data is None:
            raise TypeError("an outbox file needs png_path or png")
        write_atomic(dest, data)

    def add(self, targets: list[tuple[str, str]], *, image_id: str, image_info: dict, context: dict,
            png_path: Path | None = None, png: bytes | None = None) -> list[int]:
        """Queue one image for (target, filter) pairs; returns the new entry ids.

        Durable on return. An image already queued for a pair is not queued twice.
        """
        name = f"{image_id}.png"
        self._store_file(png_path, png, name)
        now = self.clock()
        ids: list[int] = []
        with self._durable_transaction():
            for target, filter_spec in targets:
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO entries (target, image_id, filter, file, image_info, context,"
                    " next_attempt, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (target, image_id, filter_spec, name, json.dumps(image_info), json.dumps(context),
                     now, now, now))
                if cur.rowcount:
                    assert cur.lastrowid is not None    # set by an INSERT that added a row
                    ids.append(cur.lastrowid)
            # The file was stored before the lock: a delivery or drop of this image's
            # last waiting entry may have removed it since. Under the lock, with the new
            # rows in place, it stays once it is here.
            if ids and not (self.files / name).exists():
                self._store_file(png_path, png, name)
        return ids

    # -- reading ---------------------------------------------------------
    def get(self, entry_id: int) -> Entry | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {self._COLUMNS} FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return self._entry(row) if row else None

    def list(self, state: str | None = None, limit: int = 200) -> list[Entry]:
        query = f"SELECT {self._COLUMNS} FROM entries"
        args: tuple = ()
        if state:
            query += " WHERE state = ?"
            args = (state,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY id DESC LIMIT ?", args + (limit,)).fetchall()
        return [self._entry(r) for r in rows]

    def counts(self) -> dict:
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) AS n FROM entries GROUP BY state").fetchall()
        return {row["state"]: row["n"] for row in rows}

    def _per_target_state(self, *, waiting_only: bool) -> builtins.list[sqlite3.Row]:
        """Rows of (target, state, n, oldest ``created``); ``waiting_only`` leaves the
        delivered rows out, which stay for days (``prune``) and outnumber the others: the
        (state, next_attempt) index then keeps it a walk of the waiting ones."""
        where = f" WHERE {WAITING}" if waiting_only else ""
        with self._lock:
            return self._conn.execute("SELECT target, state, COUNT(*) AS n, MIN(created) AS oldest FROM entries"
                                      + where + " GROUP BY target, state").fetchall()

    def depth(self) -> builtins.list[tuple[str, str, int, float]]:
        """(target, state, entries, oldest ``created``) of the entries not delivered: the metrics, every scrape."""
        return [(row["target"], row["state"], row["n"], row["oldest"])
                for row in self._per_target_state(waiting_only=True)]

    def overdue(self, due_before: float) -> set[str]:
        """Targets with an entry due since before ``due_before`` that no delivery holds
        (not leased): what the readiness check calls stuck, unless the target is busy."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT target FROM entries WHERE state IN ('pending', 'committing')"
                " AND leased = 0 AND next_attempt <= ?", (due_before,)).fetchall()
        return {row["target"] for row in rows}

    # (``builtins.list`` below: in the class body, ``list`` is now the method above.)
    def failures(self, limit: int = 10) -> builtins.list[Entry]:
        """Dead entries and pending ones waiting after a failed attempt, latest first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM entries WHERE state = 'dead'"
                " OR (state = 'pending' AND last_error IS NOT NULL) ORDER BY updated DESC, id DESC LIMIT ?",
                (limit,)).fetchall()
        return [self._entry(r) for r in rows]

    def by_target(self) -> dict[str, dict]:
        """Per target: ``counts`` by state, ``oldestPending`` (the ``created`` time of
        the oldest entry not yet delivered, pending or committing; None when none
        waits) and ``lastError`` (the latest error any of its entries recorded, with
        its ``updated`` time and entry id; None when none did)."""
        out: dict[str, dict] = {}
        rows = self._per_target_state(waiting_only=False)
        with self._lock:
            # One row per target: the entry whose error is the latest (SQLite takes the
            # other columns from the row that gives MAX()).
            errors = self._conn.execute(
                "SELECT target, id, last_error, MAX(updated) AS at FROM entries"
                " WHERE last_error IS NOT NULL GROUP BY target").fetchall()
        for row in rows:
            stats = out.setdefault(row["target"], {"counts": {}, "oldestPending": None, "lastError": None})
            stats["counts"][row["state"]] = row["n"]
            if row["state"] in ("pending", "committing"):
                oldest = stats["oldestPending"]
                stats["oldestPending"] = row["oldest"] if oldest is None else min(oldest, row["oldest"])
        for row in errors:
            out[row["target"]]["lastError"] = {"message": row["last_error"], "at": row["at"], "entryId": row["id"]}
        return out

    # -- delivery bookkeeping -------------------------------------------
    def lease_due(self, *, exclude: set[int], limit: int, lease_seconds: float, target: str | None = None,
                  not_targets: Collection[str] = ()) -> builtins.list[Entry]:
        """Entries due now (pending, or committing past their deadline), leased to the
        caller (attempts counted now), of ``target`` only when given, of none of
        ``not_targets``. A committing entry becomes pending; the returned Entry still
        says ``committing``, so the caller knows its wait expired."""
        now = self.clock()
        query = (f"SELECT {self._COLUMNS} FROM entries WHERE state IN ('pending', 'committing')"
                 " AND next_attempt <= ?")
        args: builtins.list = [now]
        if target is not None:
            query += " AND target = ?"
            args.append(target)
        if not_targets:
            query += f" AND target NOT IN ({', '.join('?' * len(not_targets))})"
            args += builtins.list(not_targets)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY next_attempt LIMIT ?",
                                      (*args, limit + len(exclude))).fetchall()
            entries = [self._entry(r) for r in rows if r["id"] not in exclude][:limit]
            if entries:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(
                    "UPDATE entries SET state = 'pending', leased = 1, attempts = attempts + 1,"
                    " next_attempt = ?, updated = ? WHERE id = ?", [(now + lease_seconds, now, e.id) for e in entries])
                self._conn.execute("COMMIT")
        return [dataclasses.replace(e, attempts=e.attempts + 1) for e in entries]

    def record_step(self, entry_id: int, step: str, value) -> None:
        """Keep one delivery step's result (JSON; None forgets the step) in the entry's progress.

        Durable on return, against kill -9 and power loss alike (synchronous=FULL
        for this commit): the adapter takes its next network step only after it.
        """
        with self._durable_transaction():
            row = self._conn.execute("SELECT progress FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if row is None:
                raise KeyError(f"outbox entry {entry_id} is gone")
            progress = json.loads(row["progress"]) if row["progress"] else {}
            if value is None:
                progress.pop(step, None)
            else:
                progress[step] = value
            self._conn.execute("UPDATE entries SET progress = ?, updated = ? WHERE id = ?",
                               (json.dumps(progress) if progress else None, self.clock(), entry_id))

    def delivered(self, entry_id: int, receipt: dict) -> None:
        self._finish(entry_id, "delivered", None, json.dumps(receipt), self.clock())
        self._drop_file_if_unused(entry_id)

    def retry_later(self, entry_id: int, when: float, error: str) -> None:
        self._finish(entry_id, "pending", error, None, when)

    def dead(self, entry_id: int, error: str) -> None:
        self._finish(entry_id, "dead", error, None, self.clock())

    def _finish(self, entry_id, state, error, receipt, next_attempt) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE entries SET state = ?, leased = 0, last_error = COALESCE(?, last_error),"
                " receipt = COALESCE(?, receipt), next_attempt = ?, updated = ? WHERE id = ?",
                (state, error, receipt, next_attempt, self.clock(), entry_id))

    # -- operators -------------------------------------------------------
    def retry(self, entry_id: int) -> bool:
        """A dead (or waiting, or committing) entry goes back to pending, due now, with a fresh count.

        Its recorded steps stay: the next attempt resumes from them (a drop forgets them)."""
        with self._lock:
            changed = self._conn.execute(
                "UPDATE entries SET state = 'pending', attempts = 0, next_attempt = ?, updated = ?"
                " WHERE id = ? AND state IN ('dead', 'pending', 'committing') AND leased = 0",
                (self.clock(), self.clock(), entry_id)).rowcount
        return bool(changed)

    def drop(self, entry_id: int) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT file, leased FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if row is None or row["leased"]:
                return False
            self._conn.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
            self._unlink_unless_waiting([row["file"]])
        return True

    # -- retention -------------------------------------------------------
    def prune(self, before: float, *, batch: int = 200) -> int:
        """Forget the delivered entries last changed (``updated``) before ``before``,
        with their file unless an entry not delivered still names it; pending,
        committing and dead entries stay, whatever their age. ``batch`` entries per
        transaction, so deliveries and new images wait for one batch at most.
        Returns how many went."""
        total = 0
        while True:
            with self._lock:
                conn = self._conn
                conn.execute("BEGIN IMMEDIATE")     # (NORMAL: a prune undone by a power cut is redone)
                try:
                    rows = conn.execute("SELECT id, file FROM entries WHERE state = 'delivered' AND updated < ?"
                                        " LIMIT ?", (before, batch)).fetchall()
                    conn.executemany("DELETE FROM entries WHERE id = ?", [(row["id"],) for row in rows])
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                # Most are gone already (deleted on delivery); one may remain after a crash.
                self._unlink_unless_waiting({row["file"] for row in rows})
            total += len(rows)
            if len(rows) < batch:
                return total
