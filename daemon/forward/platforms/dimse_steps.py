"""The dimse adapter's steps as data: what a delivered instance's receipt
says, one prepared item of a batch, and the storage commitment report taken
on our own association (pynetdicom calls ``ReportBox.handle`` on its thread;
each outcome is recorded in the item's outbox entry before the report is
answered). The commitment listener (`forward.commitment`) builds the same
receipt from the recorded steps.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pydicom.dataset import Dataset
from pynetdicom.pdu import P_DATA_TF

from sensord.daemon.dimse import storage_commitment as sc

from .base import Delivery, RetryableError

log = logging.getLogger("sensord.platforms.dimse")

STEPS = ("stored", "commitment", "committed")       # what an item records, in order


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def receipt(stored: dict, commitment: dict | None = None, committed_at: str | None = None) -> dict:
    """What an operator sees of a delivered instance (also built by the commitment listener)."""
    out = {"sopInstanceUid": stored.get("sop"), "studyInstanceUid": stored.get("study"),
           "seriesInstanceUid": stored.get("series"), "transferSyntax": stored.get("transferSyntax"),
           "storeStatus": stored.get("status"), "pixelHash": stored.get("pixelHash")}
    if commitment is not None:
        out.update(transactionUid=commitment.get("transaction"), committedAt=committed_at)
    return out


@dataclass
class Work:
    """One item of a batch, prepared."""
    item: Delivery
    ds: Dataset
    alg: str
    digest: str
    stored: dict | None = None

    @property
    def sop(self) -> str:
        return str(self.ds.SOPInstanceUID)


@dataclass
class ReportBox:
    """Takes the archive's report on our own association (pynetdicom's thread).

    ``done`` is set once the report is taken and its answer is on the wire
    (``sent``, on pynetdicom's EVT_PDU_SENT): the adapter then releases the
    association. Released any earlier, the answer would follow our release
    request, which pynetdicom's state machine refuses (its reactor thread
    dies and the release waits out the whole timeout)."""
    transaction: str = ""
    works: dict[str, Work] = field(default_factory=dict)
    results: dict[str, dict | Exception] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    taken: bool = False         # a report was taken: the next P-DATA we send is its answer

    def handle(self, event) -> tuple[int, Dataset | None]:
        try:
            report = sc.parse_report(event.event_type, event.event_information)
        except Exception as err:        # whatever pydicom throws on a malformed dataset too
            log.warning("a storage commitment report that cannot be read: %s", err)
            return 0x0110, None
        if report.transaction != self.transaction:
            # Another batch's: not taken here (no outbox at hand), so the archive may send it again,
            # to the listener, which settles any transaction.
            log.warning("a storage commitment report for transaction %s on the association of %s: refused",
                        report.transaction, self.transaction)
            return 0x0110, None
        at = now_iso()
        with self.lock:
            self._settle(report, at)
            self.taken = True
        return 0x0000, None

    def sent(self, event) -> None:
        """EVT_PDU_SENT: the report's answer has gone out once a P-DATA follows the report."""
        if self.taken and isinstance(event.pdu, P_DATA_TF):
            self.done.set()

    def _settle(self, report: sc.Report, at: str) -> None:
        for sop, work in self.works.items():    # recorded (durable) before the report is answered
            if sop in report.committed and work.stored is not None:
                work.item.record("committed", {"transaction": report.transaction, "at": at})
                self.results[sop] = receipt(work.stored, {"transaction": report.transaction}, at)
            elif sop in report.failed:
                work.item.record("stored", None)
                work.item.record("commitment", None)
                self.results[sop] = RetryableError(f"the archive did not commit {sop}: "
                                                   f"{report.failure_text(sop)}", retry_after=0)

    def outcomes(self) -> dict[str, dict | Exception]:
        with self.lock:
            return dict(self.results)
