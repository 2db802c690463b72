"""Storage Commitment Push Model (PS3.4 Annex J): the request we send and the
report the archive sends back, as pydicom datasets. Pure: no network.

The request (N-ACTION, action type 1, on the class's well-known instance)
names a transaction and the instances we ask the archive to keep. The
report (N-EVENT-REPORT, event type 1 when all were committed, 2 when some
failed), on our association or a new one to our listener, carries the same
transaction: Referenced SOP Sequence for the committed instances, Failed
SOP Sequence for the others, each with a Failure Reason.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

SOP_CLASS = "1.2.840.10008.1.20.1"             # Storage Commitment Push Model
SOP_INSTANCE = "1.2.840.10008.1.20.1.1"        # its well-known instance
ACTION_REQUEST = 1                             # "Request Storage Commitment"
EVENT_ALL_COMMITTED = 1
EVENT_SOME_FAILED = 2

# Failure Reasons an archive gives in a report (PS3.4 J.3.3.1.1.2's list, in our words).
FAILURE_REASONS = {
    0x0110: "the archive failed to process it",
    0x0112: "the archive has no such instance",
    0x0119: "the instance is not of the class named",
    0x0122: "the archive does not take this SOP class",
    0x0131: "the transaction UID was used before",
    0x0213: "the archive is out of resources",
}


def new_transaction_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def request(transaction: str, instances: Iterable[tuple[str, str]]) -> Dataset:
    """The N-ACTION's Action Information: ``instances`` as (SOP class, SOP instance) UIDs."""
    ds = Dataset()
    ds.TransactionUID = transaction
    refs = []
    for sop_class, sop_instance in instances:
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = sop_instance
        refs.append(ref)
    ds.ReferencedSOPSequence = Sequence(refs)
    return ds


@dataclass(frozen=True)
class Report:
    transaction: str
    committed: frozenset[str] = frozenset()                 # SOP Instance UIDs
    failed: dict[str, int] = field(default_factory=dict)    # SOP Instance UID -> Failure Reason

    def failure_text(self, sop: str) -> str:
        code = self.failed.get(sop, 0x0110)
        return f"failure reason 0x{code:04X}: {FAILURE_REASONS.get(code, 'unknown to us')}"


def parse_report(event_type: int | None, info: Dataset | None) -> Report:
    """The report carried by an N-EVENT-REPORT; ValueError when it is not one."""
    if event_type not in (EVENT_ALL_COMMITTED, EVENT_SOME_FAILED):
        raise ValueError(f"event type {event_type} is not a storage commitment result")
    if info is None or not str(info.get("TransactionUID", "")).strip():
        raise ValueError("the report names no transaction")
    committed = frozenset(str(item.get("ReferencedSOPInstanceUID", ""))
                          for item in info.get("ReferencedSOPSequence", []) or [])
    failed = {}
    for item in info.get("FailedSOPSequence", []) or []:
        reason = item.get("FailureReason")
        failed[str(item.get("ReferencedSOPInstanceUID", ""))] = int(reason) if reason is not None else 0x0110
    return Report(str(info.TransactionUID), committed - {""}, {k: v for k, v in failed.items() if k})
