"""The clinic's archive over DICOM's network protocol: C-STORE, then Storage Commitment.

Options (``[[forward.targets]]`` with ``kind = "dimse"``):

==========================  ==============================================================
host, port                  the archive's DICOM address (port default 104)
called_ae                   its AE title (we call as ``[dicom] ae_title``)
storage_commitment          ask the archive to commit each stored instance, and count
                            an image delivered only once it has (default false:
                            delivered when the C-STORE succeeds)
commitment_timeout_seconds  how long to wait for the archive's report (default 300);
                            then the image is stored again and commitment asked again
transfer_syntaxes           proposed in this order, each in a presentation context of
                            its own; the first the archive accepts is used (default
                            ["jpeg-ls-lossless", "explicit-vr-little-endian"]; see
                            `daemon.dimse.syntaxes` for the names)
institution, station        Institution Name (<= 64 chars) and Station Name (<= 16)
deidentify                  a de-identified copy (default false), as for dicomweb
==========================  ==============================================================

A batch of up to ``batch_size`` images goes over one association. Each
instance is built as for DICOMweb (`platforms.dicom`: its UIDs derive from
the image id, so every attempt sends the same instance), encoded for the
chosen syntax keeping its SOP Instance UID, and checked before it is sent:
its pixels, decoded again, must hash to ImageInfo's ``pixelHash``.

Steps, each recorded in the outbox entry (``item.record``, durable) before
the next one is taken, so a retry or a restart resumes:

1. ``stored`` (SOP UIDs, transfer syntax, status) once the C-STORE answers
   success or a warning. A later attempt that finds it does not store again.
   Another status is retried or dead-lettered by its meaning
   (`daemon.dimse.statuses` has the table).
2. With ``storage_commitment``: ``commitment`` (transaction UID, when asked),
   written just before the N-ACTION goes out, since the archive may report
   on another association before its answer to the N-ACTION is read. One
   transaction covers the batch's stored instances.
3. The report (N-EVENT-REPORT). On this association, if it comes within
   a couple of seconds: ``committed`` is recorded before it is answered and
   the item is delivered; a failure forgets ``stored`` and ``commitment``
   and the item is due again at once. Otherwise the entry waits in the
   outbox's ``committing`` state for ``commitment_timeout_seconds``, and
   the report that reaches our listener (`forward.commitment`) settles it.
   No report in time: the entry comes back ``expired``, is stored again
   (the archive keeps one instance per SOP Instance UID) and asked again.
"""
from __future__ import annotations

import logging

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import evt

from sensord.daemon.dimse import network, statuses, syntaxes
from sensord.daemon.dimse import storage_commitment as sc
from sensord.filters.pixel_hash import pixel_hash

from . import dicom
from . import options as opts
from .base import Adapter, AwaitingConfirmation, Delivery, PermanentError, RetryableError
from .dicom_instance import checked_instance
from .dimse_steps import STEPS, ReportBox, Work, now_iso, receipt

log = logging.getLogger("sensord.platforms.dimse")

VERIFICATION = "1.2.840.10008.1.1"
SAME_ASSOCIATION_WAIT = 2.0     # seconds a report may take to come on our own association


def _text_up_to(limit: int):
    return opts.checker(lambda v: isinstance(v, str) and len(v) <= limit and "\\" not in v
                        and not any(ord(c) < 32 for c in v), f"a string of at most {limit} characters")


def _syntax_list(value):
    if not isinstance(value, list) or not value or len(set(map(str, value))) != len(value):
        raise ValueError(f"must be a non-empty list of distinct names, got {value!r}")
    for name in value:
        syntaxes.uid_of(name)
    return list(value)


OPTIONS = {
    "host": (opts.text, opts.REQUIRED),
    "port": (opts.checker(lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536,
                          "a port number"), 104),
    "called_ae": (opts.checker(lambda v: isinstance(v, str) and 0 < len(v.strip()) and len(v) <= 16
                               and "\\" not in v and v.isprintable(), "an AE title of 1-16 characters"),
                  opts.REQUIRED),
    "storage_commitment": (opts.boolean, False),
    "commitment_timeout_seconds": (opts.checker(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                                                and v > 0, "a positive number of seconds"), 300),
    "transfer_syntaxes": (_syntax_list, ["jpeg-ls-lossless", "explicit-vr-little-endian"]),
    "institution": (_text_up_to(64), ""),
    "station": (_text_up_to(16), ""),
}


class DimseAdapter(Adapter):
    kind = "dimse"
    batch_size = 16

    def __init__(self, *, name: str, options: dict, http=None, ae_title: str = "SENSORD", timeout: float = 30.0):
        super().__init__(name=name, options=options, http=http)
        o = opts.parse(self.kind, name, options, OPTIONS)
        self.peer = network.Peer(o["host"], o["port"], o["called_ae"])
        self.called_ae = o["called_ae"]
        self.storage_commitment = o["storage_commitment"]
        self.commitment_timeout = float(o["commitment_timeout_seconds"])
        self.syntaxes = o["transfer_syntaxes"]
        self.institution, self.station = o["institution"], o["station"]
        self.ae_title, self.timeout = ae_title, timeout

    def deliver(self, item: Delivery) -> dict:
        [outcome] = self.deliver_batch([item])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def deliver_batch(self, items: list[Delivery]) -> list[dict | Exception]:
        outcomes: dict[int, dict | Exception] = {}
        work: dict[int, Work] = {}
        for i, item in enumerate(items):
            try:
                prepared = self._prepare(item)
            except Exception as err:
                outcomes[i] = err
                continue
            done = self._known_outcome(prepared)
            if done is not None:
                outcomes[i] = done
            else:
                work[i] = prepared
        if work:
            try:
                self._session(work, outcomes)
            except network.DimseError as err:
                failure = (RetryableError if err.retryable else PermanentError)(f"{self.name}: {err}")
                for i in work:
                    outcomes.setdefault(i, failure)
            except Exception as err:
                for i in work:
                    outcomes.setdefault(i, err)
        return [outcomes[i] for i in range(len(items))]

    # -- steps ---------------------------------------------------------------
    def _prepare(self, item: Delivery) -> Work:
        instance = checked_instance(item, target=self.name, institution=self.institution, station=self.station)
        work = Work(item, instance.dataset, instance.alg, instance.digest)
        stored = item.progress.get("stored")
        if isinstance(stored, dict) and stored.get("sop") == work.sop:
            work.stored = stored
        return work

    def _known_outcome(self, work: Work) -> dict | None:
        """A receipt when the recorded steps already say delivered; forgets them when expired."""
        progress = work.item.progress
        committed, commitment = progress.get("committed"), progress.get("commitment")
        if work.stored is not None and isinstance(committed, dict) and isinstance(commitment, dict) \
                and committed.get("transaction") == commitment.get("transaction"):
            return receipt(work.stored, commitment, committed.get("at"))
        if work.item.expired or progress.get("committed"):
            # No report in time (or a stale one): the archive may have lost it; send it all again.
            log.info("%s: no storage commitment for %s in time; storing and asking again", self.name, work.sop)
            for step in STEPS:
                if step in progress:
                    work.item.record(step, None)
            work.stored = None
        if work.stored is not None and not self.storage_commitment:
            return receipt(work.stored)
        return None

    def _session(self, work: dict[int, Work], outcomes: dict[int, dict | Exception]) -> None:
        """One association: C-STORE what is not stored yet, then N-ACTION for the batch."""
        box = ReportBox()
        contexts = [(dicom.SOP_CLASS, [syntaxes.uid_of(name)]) for name in self.syntaxes]
        # Verification too: an archive that takes none of the rest still opens the association,
        # so what it refuses is known (and permanent) rather than an abort (retried).
        contexts.append((VERIFICATION, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
        if self.storage_commitment:
            contexts.append((sc.SOP_CLASS, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
        with network.association(self.peer, ae_title=self.ae_title, timeout=self.timeout, contexts=contexts,
                                 evt_handlers=[(evt.EVT_N_EVENT_REPORT, box.handle),
                                               (evt.EVT_PDU_SENT, box.sent)]) as assoc:
            accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
            to_store = {i: w for i, w in work.items() if w.stored is None}
            if to_store:
                chosen = next((n for n in self.syntaxes if (dicom.SOP_CLASS, syntaxes.uid_of(n)) in accepted), None)
                if chosen is None:
                    raise PermanentError(f"{self.name}: {self.peer} accepts none of the transfer syntaxes "
                                         f"{', '.join(self.syntaxes)} for intra-oral images")
                if chosen != self.syntaxes[0]:
                    log.info("%s: %s does not take %s; sending %s", self.name, self.peer, self.syntaxes[0], chosen)
                for i, w in to_store.items():
                    network.check_established(assoc, self.peer)
                    try:
                        self._store(assoc, w, chosen)
                    except (RetryableError, PermanentError) as err:
                        outcomes[i] = err
            stored = {i: w for i, w in work.items() if i not in outcomes and w.stored is not None}
            if not self.storage_commitment:
                outcomes.update({i: receipt(w.stored) for i, w in stored.items() if w.stored is not None})
                return
            if stored:
                if (sc.SOP_CLASS, ExplicitVRLittleEndian) not in accepted and \
                        (sc.SOP_CLASS, ImplicitVRLittleEndian) not in accepted:
                    raise PermanentError(f"{self.name}: {self.peer} refuses Storage Commitment; allow it there "
                                         f"or set storage_commitment = false")
                outcomes.update(self._ask(assoc, box, stored))

    def _store(self, assoc, w: Work, name: str) -> None:
        what = f"{self.name}: C-STORE of {w.sop}"
        encoded = syntaxes.encode(w.ds, name)
        decoded = encoded.pixel_array
        if pixel_hash(decoded, alg=w.alg)["hash"] != w.digest:
            raise PermanentError(f"{what}: the {name} pixels do not decode to the image's pixelHash")
        try:
            answer = assoc.send_c_store(encoded)
        except (RuntimeError, ValueError) as err:   # pynetdicom: no association or no context
            raise RetryableError(f"{what}: {err}") from None
        code = answer.get("Status") if answer is not None else None
        if code is None:
            raise RetryableError(f"{what}: no answer (the association ended or timed out)")
        meaning = statuses.outcome(int(code))
        if meaning is statuses.Outcome.RETRY:
            raise RetryableError(f"{what}: status {statuses.describe(int(code))}")
        if meaning is statuses.Outcome.PERMANENT:
            raise PermanentError(f"{what}: refused, status {statuses.describe(int(code))}")
        if meaning is statuses.Outcome.WARNING:
            log.warning("%s: stored with status %s", what, statuses.describe(int(code)))
        w.stored = {"sop": w.sop, "sopClass": str(w.ds.SOPClassUID), "study": str(w.ds.StudyInstanceUID),
                    "series": str(w.ds.SeriesInstanceUID), "transferSyntax": name,
                    "status": f"0x{int(code):04X}", "pixelHash": {"alg": w.alg, "hash": w.digest}, "at": now_iso()}
        w.item.record("stored", w.stored)

    def _ask(self, assoc, box: ReportBox, stored: dict[int, Work]) -> dict[int, dict | Exception]:
        """N-ACTION for the stored instances; their outcomes (a report on this association, or waiting)."""
        box.transaction = sc.new_transaction_uid()
        box.works = {w.sop: w for w in stored.values()}
        for w in stored.values():       # before the request: the report may come on another association first
            w.item.record("commitment", {"transaction": box.transaction, "asked": now_iso()})
        network.check_established(assoc, self.peer)
        what = f"{self.name}: N-ACTION (storage commitment, transaction {box.transaction})"
        answer, _ = assoc.send_n_action(sc.request(box.transaction, [(str(w.ds.SOPClassUID), w.sop)
                                                                     for w in stored.values()]),
                                        sc.ACTION_REQUEST, sc.SOP_CLASS, sc.SOP_INSTANCE)
        code = answer.get("Status") if answer is not None else None
        if code is None:
            error: Exception = RetryableError(f"{what}: no answer (the association ended or timed out)")
            return {i: error for i in stored}
        meaning = statuses.outcome(int(code))
        if meaning in (statuses.Outcome.RETRY, statuses.Outcome.PERMANENT):
            for w in stored.values():
                w.item.record("commitment", None)
            kind = RetryableError if meaning is statuses.Outcome.RETRY else PermanentError
            error = kind(f"{what}: status {statuses.describe(int(code))}")
            return {i: error for i in stored}
        box.done.wait(min(SAME_ASSOCIATION_WAIT, self.commitment_timeout))
        waiting = AwaitingConfirmation(f"asked {self.peer} to commit (transaction {box.transaction})",
                                       seconds=self.commitment_timeout)
        results = box.outcomes()
        return {i: results.get(w.sop, waiting) for i, w in stored.items()}


ADAPTER_CLASS = DimseAdapter
