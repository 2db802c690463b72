"""The storage commitment listener: the archive's reports that come on an
association of their own (N-EVENT-REPORT, Storage Commitment Push Model).

A pynetdicom server on ``[dicom] listen_host:listen_port`` with our AE title
(``[dicom] ae_title``), started by service.py when ``listen_port`` > 0. It
accepts only the called AE titles of the configured ``dimse`` targets as
callers, only the Storage Commitment Push Model (in whichever SCP/SCU roles
the archive proposes: it acts as the class's SCP while it opens the
association), a few associations at once, PDUs of bounded size, and every
wait bounded by ``[dicom] timeout_seconds``.

A report names a transaction; the outbox entries whose ``commitment`` step
recorded it (`platforms.dimse`) are settled in one durable transaction
before the report is answered: an instance in the Referenced SOP Sequence
is delivered (receipt: transaction UID, transfer syntax, committed at); one
in the Failed SOP Sequence is due again at once, its failure reason as its
last error and its ``stored`` and ``commitment`` steps forgotten, so it is
stored and asked for again. A report for a transaction no entry awaits (one
replaced by a later request, or not ours) is logged and answered success:
nothing is left for the archive to do about it.
"""
from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from sensord.daemon.dimse import storage_commitment as sc
from sensord.daemon.signals import Signal

from .events import DeliveryEnded
from .outbox import Outbox
from .outbox_commitment import Settlement
from .outbox_table import Entry
from .platforms.dimse_steps import STEPS, now_iso, receipt

log = logging.getLogger("sensord.forward.commitment")

MAX_ASSOCIATIONS = 4
MAX_PDU = 64 * 1024                 # bytes; reports are small
NO_SUCH_EVENT_TYPE = 0x0113
PROCESSING_FAILURE = 0x0110


def listener_peers(targets: Mapping) -> dict[str, set[str]]:
    """Calling AE title -> names of the dimse targets it may report for."""
    peers: dict[str, set[str]] = {}
    for target in targets.values():
        if target.kind == "dimse":
            peers.setdefault(target.adapter.called_ae.strip(), set()).add(target.name)
    return peers


def committing_targets(targets: Mapping) -> list[str]:
    """Names of the dimse targets that ask for storage commitment (whose reports need a listener)."""
    return sorted(t.name for t in targets.values()
                  if t.kind == "dimse" and getattr(t.adapter, "storage_commitment", False))


class CommitmentListener:
    def __init__(self, outbox: Outbox, *, host: str, port: int, ae_title: str,
                 peers: Mapping[str, Collection[str]], timeout: float):
        self.outbox = outbox
        self.address = (host, port)
        self.ae_title = ae_title
        self.peers = {ae: set(names) for ae, names in peers.items()}
        self.timeout = timeout
        self._server: ThreadedAssociationServer | None = None
        # Each entry a report settled, "delivered" or "resend" (the metrics count them).
        self.delivery_ended: Signal[DeliveryEnded] = Signal("delivery ended")

    def start(self) -> None:
        if not self.peers:
            log.warning("dicom.listen_port is set but no dimse target is configured: no listener")
            return
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(sc.SOP_CLASS, [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
                                 scu_role=True, scp_role=True)
        ae.require_calling_aet = sorted(self.peers)
        ae.require_called_aet = True
        ae.maximum_associations = MAX_ASSOCIATIONS
        ae.maximum_pdu_size = MAX_PDU
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        self._server = ae.start_server(self.address, block=False,
                                       evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)])
        log.info("storage commitment reports: listening on %s:%d as %s for %s", *self.address, self.ae_title,
                 ", ".join(sorted(self.peers)))

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @property
    def port(self) -> int:
        """The port listened on (the configured one, or the one given for 0 in tests)."""
        return self._server.server_address[1] if self._server is not None else 0

    def _on_report(self, event) -> tuple[int, Dataset | None]:
        caller = str(event.assoc.requestor.ae_title).strip()
        try:
            report = sc.parse_report(event.event_type, event.event_information)
        except Exception as err:        # also whatever pydicom throws on a malformed dataset
            log.warning("%s sent a storage commitment report that cannot be read: %s", caller, err)
            return NO_SUCH_EVENT_TYPE if "event type" in str(err) else PROCESSING_FAILURE, None
        try:
            settled = self.settle(report, caller)
        except Exception:
            log.exception("storage commitment report from %s (transaction %s) not recorded", caller,
                          report.transaction)
            return PROCESSING_FAILURE, None     # not taken: the archive may send it again
        if not settled:
            log.warning("storage commitment report from %s for transaction %s, which no outbox entry awaits",
                        caller, report.transaction)
        return 0x0000, None

    def settle(self, report: sc.Report, caller: str) -> list[tuple[Entry, Settlement]]:
        """Apply ``report`` to the outbox (durable on return); what it changed."""
        allowed = self.peers.get(caller, set())
        at = now_iso()

        def decide(entry: Entry) -> Settlement | None:
            stored = entry.progress.get("stored")
            if entry.target not in allowed or not isinstance(stored, dict):
                return None
            sop = stored.get("sop")
            if sop in report.committed:
                return Settlement(receipt=receipt(stored, entry.progress.get("commitment"), at))
            if sop in report.failed:
                return Settlement(error=f"the archive did not commit {sop}: {report.failure_text(sop)}",
                                  forget=STEPS)
            return None

        settled = self.outbox.settle("commitment", "transaction", report.transaction, decide)
        for entry, settlement in settled:
            self.delivery_ended.emit(DeliveryEnded(entry.target, "delivered" if settlement.receipt is not None
                                                   else "resend"))
            if settlement.receipt is not None:
                log.info("delivered %s to %s: committed (entry %d, transaction %s)", entry.image_id, entry.target,
                         entry.id, report.transaction)
            else:
                log.warning("forward to %s: %s; sent again (entry %d)", entry.target, settlement.error, entry.id)
        return settled
