"""Sending the MPPS queue's due messages to the MPPS SCP, run by a scheduler job.

One association per round (``[dicom] ae_title`` calling ``[mpps]
called_ae``), proposing only the Modality Performed Procedure Step SOP
Class; every wait (connect, association, each answer) is bounded by
``[dicom] timeout_seconds``. Strictly in order per session: a session's
N-SET goes only once its N-CREATE is delivered, so a dead create holds its
set (shown as held) until an operator acts.

What an answer means:

| answer | N-CREATE | N-SET |
|---|---|---|
| 0x0000 success | delivered | delivered |
| warning: 0x0001, 0x0107, 0x0116, 0xBxxx | delivered, the warning noted | same |
| 0x0111 duplicate SOP instance | delivered: an earlier create got there, its answer was lost | dead |
| 0x0110, error ID A710 (no longer updatable) | dead | delivered: final already (a lost answer, or the SCP closed it) |
| 0x0110 otherwise, 0x0210, 0x0213, 0xA7xx out of resources | retry with backoff | same |
| no answer in time, an abort, a transient rejection, an association that ends early | retry with backoff | same |
| 0x0105, 0x0106, 0x0117, 0x0120, 0x0121 (attributes) | dead: the status and the offending tags | same |
| 0x0112 no such instance, 0x0118, 0x0122, 0x0124, any other failure | dead: the status | same |
| a permanent rejection, or MPPS not accepted | retry at the longest backoff (a setting to fix) | same |

The offending tags are whatever the SCP names: its Attribute Identifier
List, Offending Element or Error Comment. Backoff is the outbox's
(``delivery.backoff``): exponential, capped, with jitter.
"""
from __future__ import annotations

import logging
import threading
import time

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.status import code_to_category

from sensord.daemon.dimse.network import DimseError, Peer, association, check_established

from .delivery import backoff
from .mpps_messages import SOP_CLASS, from_json
from .mpps_queue import Message, MppsQueue

log = logging.getLogger("sensord.forward.mpps")

SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
DELIVERED, RETRY, DEAD = "delivered", "retry", "dead"
_RETRY = {0x0110: "processing failure", 0x0210: "duplicate invocation", 0x0213: "resource limitation"}
_ATTRIBUTE = {0x0105: "no such attribute", 0x0106: "invalid attribute value", 0x0117: "invalid object instance",
              0x0120: "missing attribute", 0x0121: "missing attribute value"}
_OTHER = {0x0112: "no such SOP instance: the SCP does not know this step", 0x0118: "no such SOP class",
          0x0122: "SOP class not supported", 0x0124: "not authorised"}
_NO_LONGER_UPDATABLE = 0xA710       # the error ID of 0x0110 on an N-SET to a final step (PS3.4 F.7.2.2.4)


def judge(kind: str, status: Dataset) -> tuple[str, str | None, int | None]:
    """(verdict, note or error, status code) of one answer, by the table above."""
    code = status.get("Status")
    if code is None:
        return RETRY, "no answer from the MPPS SCP within the timeout (or the association ended)", None
    code = int(code)
    what = f"N-{kind.upper()} answered 0x{code:04X}"
    category = code_to_category(code)
    if category == "Success":
        return DELIVERED, None, code
    if category == "Warning":
        return DELIVERED, f"{what} (warning{_details(status)})", code
    error_id = _error_id(status)
    if code == 0x0111:
        if kind == "create":
            return DELIVERED, f"{what}: created already (an earlier answer was lost)", code
        return DEAD, f"{what} (duplicate SOP instance){_details(status)}", code
    if code == 0x0110 and error_id == _NO_LONGER_UPDATABLE:
        if kind == "set":
            return DELIVERED, f"{what} A710: the step was final already", code
        return DEAD, f"{what} A710 (the step may no longer be updated){_details(status)}", code
    if code in _RETRY or 0xA700 <= code <= 0xA7FF:
        return RETRY, f"{what} ({_RETRY.get(code, 'out of resources')}){_details(status)}", code
    if code in _ATTRIBUTE:
        return DEAD, f"{what} ({_ATTRIBUTE[code]}){_details(status)}", code
    return DEAD, f"{what} ({_OTHER.get(code, 'failure')}){_details(status)}", code


def _error_id(status: Dataset) -> int | None:
    value = status.get("ErrorID")
    return int(value) if value is not None else None


def _details(status: Dataset) -> str:
    """The offending tags and the SCP's comment, as the answer gives them."""
    tags = []
    for keyword in ("AttributeIdentifierList", "OffendingElement"):
        value = status.get(keyword)
        if value is None:
            continue
        for raw in value if isinstance(value, (list, tuple, MultiValue)) else [value]:
            tag = Tag(raw)
            tags.append(f"({tag.group:04X},{tag.element:04X}) {keyword_for_tag(tag) or 'unknown'}")
    parts = []
    if tags:
        parts.append("offending: " + ", ".join(dict.fromkeys(tags)))
    if status.get("ErrorComment"):
        parts.append(f"comment: {status.ErrorComment}")
    if status.get("ErrorID") is not None:
        parts.append(f"error ID {int(status.ErrorID):04X}")
    return "; " + "; ".join(parts) if parts else ""


class MppsSender:
    def __init__(self, queue: MppsQueue, peer: Peer, *, ae_title: str, timeout: float, clock=time.time,
                 backoff_base: float = 2.0, backoff_max: float = 600.0):
        self.queue = queue
        self.peer = peer
        self.ae_title = ae_title
        self.timeout = timeout
        self.clock = clock
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._busy = threading.Lock()

    def tick(self) -> int:
        """Send what is due, in order; returns how many messages were answered."""
        if not self._busy.acquire(blocking=False):
            return 0                  # a round is already running
        try:
            due = self.queue.next_due()
            return self._round(due) if due else 0
        finally:
            self._busy.release()

    def _round(self, due: list[Message]) -> int:
        done: set[int] = set()        # answered this round: nothing is sent twice a round
        tried: set[int] = set()       # attempts counted this round
        try:
            with association(self.peer, ae_title=self.ae_title, timeout=self.timeout,
                             contexts=[(SOP_CLASS, SYNTAXES)]) as assoc:
                if not any(c.abstract_syntax == SOP_CLASS for c in assoc.accepted_contexts):
                    raise DimseError(f"{self.peer} does not accept Modality Performed Procedure Step",
                                     retryable=False)
                while due:
                    for message in due:
                        check_established(assoc, self.peer)
                        tried.add(message.id)
                        self._send(assoc, message)
                        done.add(message.id)
                    # A set whose create was just delivered is due now.
                    due = [m for m in self.queue.next_due() if m.id not in done]
        except DimseError as err:
            for message in self.queue.next_due():
                if message.id in done:
                    continue
                if message.id not in tried:       # a failed association counts as an attempt
                    self.queue.attempted(message.id)
                attempts = message.attempts + (message.id not in tried)
                self._later(message, attempts, str(err), None, longest=not err.retryable)
        return len(done)

    def _send(self, assoc, message: Message) -> None:
        self.queue.attempted(message.id)
        attempts = message.attempts + 1
        dataset = from_json(message.dataset)
        send = assoc.send_n_create if message.kind == "create" else assoc.send_n_set
        try:
            status, _ = send(dataset, SOP_CLASS, message.mpps_uid)
        except RuntimeError as err:       # the association ended between the check and the send
            raise DimseError(f"the association with {self.peer} ended early: {err}", retryable=True) from None
        verdict, text, code = judge(message.kind, status)
        label = f"MPPS N-{message.kind.upper()} ({message.pps_status}) of session {message.session}"
        if verdict == DELIVERED:
            self.queue.delivered(message.id, code, text)
            log.info("%s delivered to %s%s", label, self.peer, f": {text}" if text else "")
        elif verdict == DEAD:
            self.queue.dead(message.id, text or "failed", code)
            log.error("%s failed for good: %s", label, text)
        else:
            self._later(message, attempts, text or "failed", code)

    def _later(self, message: Message, attempts: int, error: str, code: int | None, *,
               longest: bool = False) -> None:
        delay = self.backoff_max if longest else backoff(attempts, base=self.backoff_base, cap=self.backoff_max)
        self.queue.retry_later(message.id, self.clock() + delay, error, code)
        log.warning("MPPS N-%s of session %s failed (attempt %d), retry in %.1f s: %s", message.kind.upper(),
                    message.session, attempts, delay, error)
