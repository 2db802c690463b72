"""The worklist as sensord knows it: the items of the last answer, when it
came, and the last error.

``refresh`` asks again (the daemon's scheduler calls it every
``[worklist] refresh_seconds``; ``start`` runs the first one on a thread of
its own, so the daemon's start never waits for a worklist). A worklist that
does not answer keeps the items it had, stale but better than none: an
X-ray is never blocked by the worklist, and the error is shown beside them.
One log line per change an operator can act on (the count of items, the
worklist stopping or starting to answer), not one per refresh.

Not configured (``[worklist] host`` empty): ``configured`` is false, there
is nothing to refresh, and the list stays empty.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING

from sensord.daemon.dimse.network import DimseError, Peer
from sensord.daemon.dsio.timefmt import iso
from sensord.daemon.settings import DicomSettings, WorklistSettings
from sensord.daemon.signals import Signal

if TYPE_CHECKING:
    from . import query as worklist_query

log = logging.getLogger("sensord.worklist")


class Worklist:
    def __init__(self, settings: WorklistSettings, dicom: DicomSettings, *,
                 query: Callable[..., worklist_query.Answer] | None = None,
                 today: Callable[[], date] = date.today):
        self.configured = bool(settings.host)
        if query is None and self.configured:
            # The query (pydicom, pynetdicom) only for a configured worklist.
            from .query import query
        self.peer = Peer(settings.host, settings.port, settings.called_ae) if self.configured else None
        self.modality = settings.modality
        self.refresh_seconds = settings.refresh_seconds
        self.ae_title = dicom.ae_title
        self.timeout = dicom.timeout_seconds
        self._query = query
        self._today = today
        # Emitted (with this Worklist) when the items or the error changed.
        self.changed: Signal[Worklist] = Signal("worklist changed")
        self.version = 0                     # counts the changes: bindings re-match when it moves
        self._items: tuple[dict, ...] = ()   # replaced whole, never changed in place
        self._refreshed_at: float | None = None
        self._error: str | None = None
        self._logged: tuple | None = None    # the state last logged
        self._notes: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._first: threading.Thread | None = None

    # -- service ---------------------------------------------------------
    def start(self) -> None:
        if self.configured:
            self._first = threading.Thread(target=self.refresh, name="worklist-first", daemon=True)
            self._first.start()

    def close(self) -> None:
        # The first refresh may be waiting on the network (at most its timeouts); a daemon
        # thread, it is not waited for long.
        if self._first is not None and self._first.is_alive():
            self._first.join(timeout=1)

    # -- refresh ---------------------------------------------------------
    def refresh(self) -> bool:
        """Ask the worklist now; False when it did not answer (or another refresh was running)."""
        if not self.configured or not self._refreshing.acquire(blocking=False):
            return False
        try:
            assert self.peer is not None and self._query is not None
            try:
                answer = self._query(self.peer, ae_title=self.ae_title, modality=self.modality,
                                     timeout=self.timeout, day=self._today())
            except DimseError as err:
                self._failed(str(err))
                return False
            except Exception as err:        # pynetdicom or a bad answer: reported like any failure
                log.debug("worklist query failed", exc_info=True)
                self._failed(f"{type(err).__name__}: {err}")
                return False
            self._answered(answer)
            return True
        finally:
            self._refreshing.release()

    def _answered(self, answer: worklist_query.Answer) -> None:
        items = tuple(sorted(answer.items, key=lambda i: (i["scheduledStart"], i["accessionNumber"],
                                                          i["scheduledProcedureStepId"])))
        with self._lock:
            changed = items != self._items or self._error is not None
            self._items, self._error, self._refreshed_at = items, None, time.time()
            if changed:
                self.version += 1
            new_notes = [n for n in answer.notes if n not in self._notes]
            self._notes = frozenset(answer.notes)
        for note in new_notes:
            log.warning("worklist at %s: %s", self.peer, note)
        self._log_state(("ok", len(items)), logging.INFO, f"worklist at {self.peer}: {len(items)} items")
        if changed:
            self.changed.emit(self)

    def _failed(self, message: str) -> None:
        with self._lock:
            changed = message != self._error
            self._error = message
            if changed:
                self.version += 1
            kept = len(self._items)
        self._log_state(("error", message), logging.WARNING,
                        f"worklist at {self.peer} does not answer: {message}"
                        + (f" (keeping the {kept} items of {iso(self._refreshed_at)})"
                           if self._refreshed_at is not None else ""))
        if changed:
            self.changed.emit(self)

    def _log_state(self, state: tuple, level: int, line: str) -> None:
        with self._lock:
            if state == self._logged:
                return
            self._logged = state
        log.log(level, "%s", line)

    # -- reading ---------------------------------------------------------
    @property
    def items(self) -> tuple[dict, ...]:
        return self._items

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def refreshed_at(self) -> float | None:
        return self._refreshed_at

    def to_json(self) -> dict:
        with self._lock:
            return {"configured": self.configured, "peer": str(self.peer) if self.peer else None,
                    "refreshedAt": iso(self._refreshed_at) if self._refreshed_at is not None else None,
                    "error": self._error, "items": [dict(i) for i in self._items]}
