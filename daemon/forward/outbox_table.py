"""The outbox's SQLite table: its schema and the upgrade of older databases,
the ``Entry`` each row reads as, and the one connection the outbox's parts
share (its lock, durable transactions, the PNG files the rows name).

Separate from ``outbox.py`` (what the outbox does: add, lease, finish,
operators) and ``outbox_commitment.py`` (the committing state) so that both
stand on one definition of the table and one way of writing to it durably;
``OutboxTable`` is their base class.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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

# Every state but delivered: the entries that still need their file. Spelled as a
# list, not "!= 'delivered'", so the (state, next_attempt) index finds the few
# waiting rows rather than scanning every delivered one kept for retention.
WAITING = "state IN ('pending', 'committing', 'dead')"


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


class OutboxTable:
    """The table, its connection and its files; ``Outbox`` is what uses them."""

    def __init__(self, root: Path, *, clock=time.time):
        self.root = Path(root)
        self.files = self.root / "files"
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()     # one connection, used from several threads

    def _open(self) -> sqlite3.Connection:
        """Connect, and create the table or bring an older one up to date."""
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
        return db

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

    def _drop_file_if_unused(self, entry_id: int) -> None:
        with self._lock:
            row = self._conn.execute("SELECT file FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if row is not None:
                self._unlink_unless_waiting([row["file"]])

    def _unlink_unless_waiting(self, names) -> None:
        """Remove the named files that no entry still waiting (not delivered) names.

        Called with the lock held, and the unlink done under it: add() re-checks its
        file under the same lock, so a file it has just queued again is never lost."""
        for name in names:
            busy = self._conn.execute(f"SELECT 1 FROM entries WHERE {WAITING} AND file = ? LIMIT 1",
                                      (name,)).fetchone()
            if not busy:
                (self.files / name).unlink(missing_ok=True)
