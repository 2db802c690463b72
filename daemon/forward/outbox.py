"""The outbox: images waiting to be forwarded, in SQLite (WAL) in the state folder.

One row per (target, image, filter). A row is committed, and its PNG
fsynced under ``outbox/files/``, before anything is acknowledged, so it
survives ``kill -9``. Delivery (``forward/delivery.py``) leases a row before
sending: a crash mid-delivery leaves it pending, and after a restart it is
sent again, which the adapters make harmless (idempotent deliveries).

States: pending -> delivered | dead (last error kept; an operator may
retry it) ; dropped rows are deleted. pending -> committing when the
platform has the image and confirms it later (storage commitment): the row
waits, not leased, until ``next_attempt``; the confirmation settles it
(``settle``: delivered, or pending again to be resent), and past its
deadline it is leased again like a pending row (the adapter is told the
wait expired).
"""
from __future__ import annotations

import builtins
import contextlib
import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from sensord.daemon.durable import link_atomic, write_atomic

log = logging.getLogger("sensord.outbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    target       TEXT NOT NULL,
    image_id     TEXT NOT NULL,
    filter       TEXT NOT NULL DEFAULT 'raw',
    file         TEXT NOT NULL,
    image_info   TEXT NOT NULL,
    context      TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    leased       INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    created      REAL NOT NULL,
    updated      REAL NOT NULL,
    last_error   TEXT,
    receipt      TEXT,
    progress     TEXT,
    UNIQUE (target, image_id, filter)
);
CREATE INDEX IF NOT EXISTS due ON entries (state, next_attempt);
"""


@dataclass(frozen=True)
class Entry:
    id: int
    target: str
    image_id: str
    filter: str
    file: Path
    image_info: dict
    context: dict
    state: str
    attempts: int
    next_attempt: float
    created: float
    updated: float
    last_error: str | None
    receipt: dict | None
    progress: dict = dataclasses.field(default_factory=dict)
                                      # each delivery step's recorded result (record_step)

    def to_json(self) -> dict:
        return {"id": self.id, "target": self.target, "imageId": self.image_id, "filter": self.filter,
                "state": self.state, "attempts": self.attempts, "nextAttempt": self.next_attempt,
                "created": self.created, "updated": self.updated, "lastError": self.last_error,
                "receipt": self.receipt}


@dataclass(frozen=True)
class Settlement:
    """What a confirmation does to one entry (see ``Outbox.settle``)."""
    receipt: dict | None = None         # delivered, with this receipt
    error: str | None = None            # else: pending, due now, with this as its last error
    forget: tuple[str, ...] = ()        # ... and these recorded steps dropped (resent from scratch)


class Outbox:
    def __init__(self, root: Path, *, clock=time.time):
        self.root = Path(root)
        self.files = self.root / "files"
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()     # one connection, used from several threads

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        self.files.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.root / "outbox.db", check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row      # rows are read by column name, never by position
        db.execute("PRAGMA journal_mode=WAL")
        # Bookkeeping (leases, outcomes) commits without fsync: a process crash
        # keeps it (WAL), a power cut may undo the last few, which only means a
        # delivery is repeated, and deliveries are idempotent. add() commits
        # with FULL: a queued image is acknowledged only once it is on disk.
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        # Databases made before step records: add the column (NULL: no step known).
        if "progress" not in {row["name"] for row in db.execute("PRAGMA table_info(entries)")}:
            db.execute("ALTER TABLE entries ADD COLUMN progress TEXT")
        self._db = db
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

    @property
    def _conn(self) -> sqlite3.Connection:
        """The open connection; the outbox is used only between start() and close()."""
        if self._db is None:
            raise RuntimeError("the outbox is not open (start() not called, or closed)")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            with self._lock:
                self._db.close()
            self._db = None

    def _remove_orphan_files(self) -> None:
        with self._lock:
            wanted = {row["file"] for row in self._conn.execute(
                "SELECT DISTINCT file FROM entries WHERE state != 'delivered'")}
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

    @contextlib.contextmanager
    def _durable_transaction(self) -> Iterator[None]:
        """One transaction, on disk before it returns (synchronous=FULL for this
        commit; the bookkeeping commits stay NORMAL, consistent at every commit)."""
        with self._lock:
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            finally:
                self._conn.execute("PRAGMA synchronous=NORMAL")

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
        return ids

    # -- reading ---------------------------------------------------------
    def _entry(self, row: sqlite3.Row) -> Entry:
        fields = {name: row[name] for name in row.keys()}
        return Entry(**{**fields,
                        "file": self.files / row["file"],
                        "image_info": json.loads(row["image_info"]),
                        "context": json.loads(row["context"]),
                        "receipt": json.loads(row["receipt"]) if row["receipt"] else None,
                        "progress": json.loads(row["progress"]) if row["progress"] else {}})

    # Entry's fields are named as the table's columns: the SELECT follows the dataclass.
    _COLUMNS = ", ".join(f.name for f in dataclasses.fields(Entry))

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
        delivered rows out, which stay and only grow: the (state, next_attempt) index
        then keeps it a walk of the waiting ones."""
        where = " WHERE state IN ('pending', 'committing', 'dead')" if waiting_only else ""
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

    def await_confirmation(self, entry_id: int, until: float) -> bool:
        """A leased entry the platform has, whose confirmation is awaited until ``until``:
        committing. False when it was settled meanwhile (the confirmation came first)."""
        with self._lock:
            return bool(self._conn.execute(
                "UPDATE entries SET state = 'committing', leased = 0, next_attempt = ?, updated = ?"
                " WHERE id = ? AND state = 'pending' AND leased = 1",
                (until, self.clock(), entry_id)).rowcount)

    def settle(self, step: str, key: str, value: str,
               decide: Callable[[Entry], Settlement | None]) -> builtins.list[tuple[Entry, Settlement]]:
        """Apply a confirmation to the entries whose recorded ``progress[step][key]`` is
        ``value`` (pending, leased or not, or committing): ``decide`` says, per entry,
        delivered (a receipt) or resend (pending, due now, the error kept, steps
        forgotten), or None to leave it. Durable on return (synchronous=FULL), so the
        confirmation may be acknowledged to its sender after it."""
        if not (step.isidentifier() and key.isidentifier()):
            raise ValueError(f"bad step path {step}.{key}")
        now = self.clock()
        done: builtins.list[tuple[Entry, Settlement]] = []
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

    def _drop_file_if_unused(self, entry_id: int) -> None:
        with self._lock:
            row = self._conn.execute("SELECT file FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if row is None:
                return
            busy = self._conn.execute("SELECT 1 FROM entries WHERE file = ? AND state != 'delivered' LIMIT 1",
                                    (row["file"],)).fetchone()
        if not busy:
            (self.files / row["file"]).unlink(missing_ok=True)

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
            busy = self._conn.execute("SELECT 1 FROM entries WHERE file = ? AND state != 'delivered' LIMIT 1",
                                    (row["file"],)).fetchone()
        if not busy:
            (self.files / row["file"]).unlink(missing_ok=True)
        return True
