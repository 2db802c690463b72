"""The MPPS queue: the steps' messages and what each step has sent, in their
own SQLite file (WAL) beside the outbox, ``<state>/outbox/mpps.db``.

Three tables:

- ``steps``: one row per session that started a step (its MPPS UID, the
  Protocol Name its N-SET will carry, when it started and last imaged, and
  whether its N-SET is queued: ``closed``).
- ``instances``: the SOP instances sent during the step (series, class,
  instance), in the order recorded, so a restart still knows them.
- ``messages``: one row per message (session, kind ``create`` / ``set``,
  the MPPS UID, the dataset in pydicom's JSON form), with state pending ->
  delivered | dead, attempts, next attempt, the last error and the last
  DIMSE status. At most one create and one set per session.

What changes what is sent commits with synchronous=FULL before it returns
(a step opened with its N-CREATE, an instance recorded, an N-SET queued),
so it survives kill -9 and power loss; the sender's bookkeeping commits
with NORMAL, since losing the last outcome only repeats a send, which the
sender makes harmless (a duplicate create counts as created).

A finished session (step closed, nothing pending or dead) is kept for the
operators to look at, then forgotten whole by ``prune`` (mpps.py runs it).
"""
from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .mpps_messages import Instance

SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
    session     TEXT PRIMARY KEY,
    mpps_uid    TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    started     REAL NOT NULL,
    last_image  REAL NOT NULL,
    closed      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS instances (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    session      TEXT NOT NULL,
    series_uid   TEXT NOT NULL,
    sop_class    TEXT NOT NULL,
    sop_instance TEXT NOT NULL,
    UNIQUE (session, sop_instance)
);
CREATE TABLE IF NOT EXISTS messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    session      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    mpps_uid     TEXT NOT NULL,
    dataset      TEXT NOT NULL,
    pps_status   TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    created      REAL NOT NULL,
    updated      REAL NOT NULL,
    last_error   TEXT,
    dimse_status INTEGER,
    UNIQUE (session, kind)
);
"""


@dataclass(frozen=True)
class Message:
    id: int
    session: str
    kind: str                   # "create" | "set"
    mpps_uid: str
    dataset: str                # DICOM JSON
    pps_status: str             # IN PROGRESS / COMPLETED / DISCONTINUED: what the message says
    state: str                  # pending | delivered | dead
    attempts: int
    next_attempt: float
    created: float
    updated: float
    last_error: str | None
    dimse_status: int | None
    held: bool = False          # a set whose create is dead: it waits for an operator

    def to_json(self) -> dict:
        return {"id": self.id, "sessionId": self.session, "kind": self.kind, "mppsUid": self.mpps_uid,
                "ppsStatus": self.pps_status, "state": self.state, "held": self.held,
                "attempts": self.attempts, "nextAttempt": self.next_attempt, "created": self.created,
                "updated": self.updated, "lastError": self.last_error,
                "dimseStatus": None if self.dimse_status is None else f"0x{self.dimse_status:04X}"}


@dataclass(frozen=True)
class Step:
    session: str
    mpps_uid: str
    protocol: str
    started: float
    last_image: float
    closed: bool


_MESSAGE_COLUMNS = ", ".join(f.name for f in dataclasses.fields(Message) if f.name != "held")
# A set is held while the create of its session is dead.
_HELD = ("(kind = 'set' AND EXISTS (SELECT 1 FROM messages c WHERE c.session = messages.session"
         " AND c.kind = 'create' AND c.state = 'dead'))")


class MppsQueue:
    def __init__(self, path: Path, *, clock=time.time):
        self.path = Path(path)
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()     # one connection, used from several threads

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        self._db = db
        with self._lock:
            # A restart is a good moment to try again: what waited is due now.
            db.execute("UPDATE messages SET next_attempt = ? WHERE state = 'pending'", (self.clock(),))

    def close(self) -> None:
        if self._db is not None:
            with self._lock:
                self._db.close()
            self._db = None

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the MPPS queue is not open (start() not called, or closed)")
        return self._db

    @contextlib.contextmanager
    def _durable(self) -> Iterator[sqlite3.Connection]:
        """One transaction, on disk before it returns (as the outbox's add)."""
        with self._lock:
            conn = self._conn
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                conn.execute("PRAGMA synchronous=NORMAL")

    # -- steps ------------------------------------------------------------
    def step(self, session: str) -> Step | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM steps WHERE session = ?", (session,)).fetchone()
        return _step(row) if row else None

    def open_steps(self) -> list[Step]:
        """Steps whose N-SET is not queued yet."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM steps WHERE closed = 0 ORDER BY started").fetchall()
        return [_step(r) for r in rows]

    def record_image(self, session: str, instances: Iterable[Instance], *, create=None) -> str:
        """Record the instances an image of ``session`` sent; durable on return.

        ``create`` () -> (mpps_uid, protocol, dataset JSON, started, error):
        called, inside the transaction, when the session has no step yet: the
        step opens and its N-CREATE is queued with these instances (dead at
        once with ``error`` when the dataset could not be built). Returns
        "opened", "recorded", "closed" (the step's N-SET is queued already:
        nothing recorded) or "unbound" (no step and no ``create``).
        """
        now = self.clock()
        with self._durable() as conn:
            row = conn.execute("SELECT closed FROM steps WHERE session = ?", (session,)).fetchone()
            if row is not None and row["closed"]:
                return "closed"
            outcome = "recorded"
            if row is None:
                if create is None:
                    return "unbound"
                uid, protocol, dataset, started, error = create()
                conn.execute("INSERT INTO steps (session, mpps_uid, protocol, started, last_image)"
                             " VALUES (?, ?, ?, ?, ?)", (session, uid, protocol, started, now))
                conn.execute("INSERT INTO messages (session, kind, mpps_uid, dataset, pps_status, state,"
                             " next_attempt, created, updated, last_error)"
                             " VALUES (?, 'create', ?, ?, 'IN PROGRESS', ?, ?, ?, ?, ?)",
                             (session, uid, dataset, "dead" if error else "pending", now, now, now, error))
                outcome = "opened"
            conn.executemany("INSERT OR IGNORE INTO instances (session, series_uid, sop_class, sop_instance)"
                             " VALUES (?, ?, ?, ?)", [(session, *i) for i in instances])
            conn.execute("UPDATE steps SET last_image = ? WHERE session = ?", (now, session))
        return outcome

    def instances(self, session: str) -> list[Instance]:
        with self._lock:
            rows = self._conn.execute("SELECT series_uid, sop_class, sop_instance FROM instances"
                                      " WHERE session = ? ORDER BY seq", (session,)).fetchall()
        return [Instance(*r) for r in rows]

    def close_step(self, session: str, build) -> str | None:
        """Queue the step's N-SET; durable on return. ``build(step, instances)``
        -> (pps status, dataset JSON) runs inside the transaction, so no
        instance is recorded between the list and the set. Returns the status
        queued, or None when the session has no open step."""
        now = self.clock()
        with self._durable() as conn:
            row = conn.execute("SELECT * FROM steps WHERE session = ? AND closed = 0", (session,)).fetchone()
            if row is None:
                return None
            found = conn.execute("SELECT series_uid, sop_class, sop_instance FROM instances WHERE session = ?"
                                 " ORDER BY seq", (session,)).fetchall()
            status, dataset = build(_step(row), [Instance(*r) for r in found])
            conn.execute("INSERT INTO messages (session, kind, mpps_uid, dataset, pps_status, next_attempt,"
                         " created, updated) VALUES (?, 'set', ?, ?, ?, ?, ?, ?)",
                         (session, row["mpps_uid"], dataset, status, now, now, now))
            conn.execute("UPDATE steps SET closed = 1 WHERE session = ?", (session,))
        return status

    # -- messages ---------------------------------------------------------
    def _message(self, row: sqlite3.Row) -> Message:
        fields = {name: row[name] for name in row.keys()}
        return Message(**{**fields, "held": bool(fields.get("held", False))})

    def next_due(self) -> list[Message]:
        """Per session, its first message not delivered, when it is pending and
        due: a set never goes before its create."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE state != 'delivered' AND NOT EXISTS"
                " (SELECT 1 FROM messages e WHERE e.session = m.session AND e.id < m.id AND e.state != 'delivered')"
                " ORDER BY id").fetchall()
        now = self.clock()
        return [self._message(r) for r in rows if r["state"] == "pending" and r["next_attempt"] <= now]

    def get(self, message_id: int) -> Message | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_MESSAGE_COLUMNS}, {_HELD} AS held FROM messages WHERE id = ?",
                                     (message_id,)).fetchone()
        return self._message(row) if row else None

    def messages(self, *, states: tuple[str, ...] = (), limit: int = 200) -> list[Message]:
        query = f"SELECT {_MESSAGE_COLUMNS}, {_HELD} AS held FROM messages"
        args: tuple = ()
        if states:
            query += f" WHERE state IN ({', '.join('?' * len(states))})"
            args = tuple(states)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY id DESC LIMIT ?", args + (limit,)).fetchall()
        return [self._message(r) for r in rows]

    def counts(self) -> dict:
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) AS n FROM messages GROUP BY state").fetchall()
            held = self._conn.execute(f"SELECT COUNT(*) FROM messages WHERE state = 'pending' AND {_HELD}"
                                      ).fetchone()[0]
        counts = {row["state"]: row["n"] for row in rows}
        if held:
            counts["held"] = held
        return counts

    def attempted(self, message_id: int) -> None:
        self._update(message_id, "attempts = attempts + 1")

    def delivered(self, message_id: int, status: int | None, note: str | None = None) -> None:
        self._update(message_id, "state = 'delivered', last_error = ?, dimse_status = ?", (note, status))

    def retry_later(self, message_id: int, when: float, error: str, status: int | None = None) -> None:
        self._update(message_id, "next_attempt = ?, last_error = ?, dimse_status = ?", (when, error, status))

    def dead(self, message_id: int, error: str, status: int | None = None) -> None:
        self._update(message_id, "state = 'dead', last_error = ?, dimse_status = ?", (error, status))

    # -- operators --------------------------------------------------------
    def retry(self, message_id: int) -> str:
        """A dead or waiting message goes back to pending, due now, with a fresh
        count. Returns "retried", or why not: "unknown", "delivered", "held"
        (a set behind its dead create: the create is what to retry)."""
        now = self.clock()
        with self._lock:
            row = self._conn.execute(f"SELECT state, {_HELD} AS held FROM messages WHERE id = ?",
                                     (message_id,)).fetchone()
            if row is None or row["state"] == "delivered" or row["held"]:
                return "unknown" if row is None else "delivered" if row["state"] == "delivered" else "held"
            self._conn.execute("UPDATE messages SET state = 'pending', attempts = 0, next_attempt = ?, updated = ?"
                               " WHERE id = ?", (now, now, message_id))
        return "retried"

    def drop(self, message_id: int) -> tuple[str, list[Message]]:
        """Forget a dead message; durable on return. A dead create takes its
        session's undelivered set with it and closes the step (a set for a step
        never created means nothing, so none is queued later either). Returns
        ("dropped", the messages dropped) or ("unknown" | "not dead", [])."""
        with self._durable() as conn:
            row = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None or row["state"] != "dead":
                return ("unknown" if row is None else "not dead"), []
            dropped = [self._message(row)]
            if row["kind"] == "create":
                dropped += [self._message(r) for r in conn.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session = ? AND kind = 'set'"
                    " AND state != 'delivered'", (row["session"],)).fetchall()]
                conn.execute("UPDATE steps SET closed = 1 WHERE session = ?", (row["session"],))
            conn.executemany("DELETE FROM messages WHERE id = ?", [(m.id,) for m in dropped])
        return "dropped", dropped

    # -- retention --------------------------------------------------------
    def prune(self, before: float, *, batch: int = 200) -> tuple[int, int, int]:
        """Forget the finished sessions last active before ``before``: their step,
        their delivered messages and their recorded instances. Finished: the step
        is closed and no message of it is pending or dead (its N-SET delivered, or
        dropped by an operator). Active: its last image, or its latest message
        change. An open step (a session in progress, or one a restart will close)
        is never touched. Deletes ``batch`` sessions per transaction, so senders
        and new images wait for one batch at most. Returns (sessions, messages,
        instances) deleted."""
        totals = [0, 0, 0]
        while True:
            with self._lock:
                conn = self._conn
                conn.execute("BEGIN IMMEDIATE")     # (NORMAL: a prune undone by a power cut is redone)
                try:
                    sessions = [(row[0],) for row in conn.execute(
                        "SELECT session FROM steps s WHERE closed = 1 AND NOT EXISTS (SELECT 1 FROM messages m"
                        " WHERE m.session = s.session AND m.state != 'delivered') AND MAX(last_image, COALESCE(("
                        "SELECT MAX(updated) FROM messages m WHERE m.session = s.session), 0)) < ? LIMIT ?",
                        (before, batch))]
                    totals[1] += conn.executemany("DELETE FROM messages WHERE session = ?", sessions).rowcount
                    totals[2] += conn.executemany("DELETE FROM instances WHERE session = ?", sessions).rowcount
                    conn.executemany("DELETE FROM steps WHERE session = ?", sessions)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            totals[0] += len(sessions)
            if len(sessions) < batch:
                return totals[0], totals[1], totals[2]

    def _update(self, message_id: int, assignments: str, args: tuple = ()) -> None:
        with self._lock:
            self._conn.execute(f"UPDATE messages SET {assignments}, updated = ? WHERE id = ?",
                               args + (self.clock(), message_id))


def _step(row: sqlite3.Row) -> Step:
    return Step(session=row["session"], mpps_uid=row["mpps_uid"], protocol=row["protocol"],
                started=row["started"], last_image=row["last_image"], closed=bool(row["closed"]))
