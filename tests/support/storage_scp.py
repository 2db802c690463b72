"""A small archive for the dimse tests: a real pynetdicom Storage SCP and
Storage Commitment SCP on loopback, scripted where Orthanc cannot be.

``StorageArchive(accepted=..., store_statuses=[...], commit=...)``:

- ``accepted``: the transfer syntaxes (UIDs) it takes for intra-oral images
  (default: all of ours); it refuses the others' presentation contexts.
- ``store_statuses``: the statuses its C-STOREs answer, in turn (then
  success); an instance is kept only when the status is success or a warning.
- ``commit``: what it does after answering an N-ACTION, per request in turn
  (the last one repeats): ``"commit"`` reports every instance it holds as
  committed, ``"fail"`` reports them all failed (reason 0x0110), ``"silent"``
  sends no report. Reports go on the same association, as dcm4che's and many
  archives' SCPs do when it is still open.

It records what it saw: ``stores`` (SOP Instance UID, transfer syntax UID),
``instances`` (UID -> dataset as received), ``actions`` (transaction, UIDs),
``reports`` (transaction, event type) and ``answers`` (the status each report
was answered with, None when no answer came), ``associations`` and the presentation
contexts proposed (``proposed``: (abstract syntax, [transfer syntaxes]) per
context, of the latest association).
"""
from __future__ import annotations

import threading
import time

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE, evt

from sensord.daemon.dimse import storage_commitment as sc
from sensord.daemon.dimse import syntaxes
from sensord.daemon.forward.platforms import dicom

AE_TITLE = "ARCHIVE"
REPORT_DELAY = 0.05      # after the N-ACTION answer, so the report follows it on the wire


class StorageArchive:
    def __init__(self, *, accepted=None, store_statuses=(), commit=("commit",)):
        self.accepted = list(accepted or syntaxes.NAMES.values())
        self.store_statuses = list(store_statuses)
        self.commit = list(commit)
        self.stores: list[tuple[str, str]] = []
        self.instances: dict[str, Dataset] = {}
        self.actions: list[tuple[str, list[str]]] = []
        self.reports: list[tuple[str, int]] = []
        self.answers: list[int | None] = []     # the status we answered each report with (None: no answer)
        self.associations = 0
        self.proposed: list[tuple[str, list[str]]] = []
        self._lock = threading.Lock()
        ae = AE(ae_title=AE_TITLE)
        ae.add_supported_context(dicom.SOP_CLASS, self.accepted)
        ae.add_supported_context(sc.SOP_CLASS)
        ae.add_supported_context("1.2.840.10008.1.1")         # Verification, as every archive takes
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
        self.ae = ae
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
            (evt.EVT_C_STORE, self._on_store), (evt.EVT_N_ACTION, self._on_action),
            (evt.EVT_REQUESTED, self._on_requested)])
        self.port = self.server.server_address[1]

    def options(self, **extra) -> dict:
        """A dimse target's options for this archive."""
        return {"host": "127.0.0.1", "port": self.port, "called_ae": AE_TITLE, **extra}

    def close(self) -> None:
        self.server.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- handlers (pynetdicom's threads) --------------------------------------
    def _on_requested(self, event) -> None:
        with self._lock:
            self.associations += 1
            self.proposed = [(str(cx.abstract_syntax), [str(ts) for ts in cx.transfer_syntax])
                             for cx in event.assoc.requestor.requested_contexts]

    def _on_store(self, event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self._lock:
            status = self.store_statuses.pop(0) if self.store_statuses else 0x0000
            self.stores.append((str(ds.SOPInstanceUID), str(event.context.transfer_syntax)))
            if status == 0 or 0xB000 <= status <= 0xBFFF:
                self.instances[str(ds.SOPInstanceUID)] = ds
        return status

    def _on_action(self, event):
        info = event.action_information
        transaction = str(info.TransactionUID)
        uids = [str(item.ReferencedSOPInstanceUID) for item in info.ReferencedSOPSequence]
        with self._lock:
            self.actions.append((transaction, uids))
            mode = self.commit.pop(0) if len(self.commit) > 1 else self.commit[0]
        if mode != "silent":
            threading.Thread(target=self._report, args=(event.assoc, transaction, uids, mode),
                             daemon=True).start()
        return 0x0000, None

    def _report(self, assoc, transaction: str, uids: list[str], mode: str) -> None:
        time.sleep(REPORT_DELAY)
        info = Dataset()
        info.TransactionUID = transaction
        items = []
        for uid in uids:
            item = Dataset()
            item.ReferencedSOPClassUID = dicom.SOP_CLASS
            item.ReferencedSOPInstanceUID = uid
            if mode == "fail" or uid not in self.instances:
                item.FailureReason = 0x0110
            items.append(item)
        committed = [i for i in items if "FailureReason" not in i]
        failed = [i for i in items if "FailureReason" in i]
        if committed:
            info.ReferencedSOPSequence = Sequence(committed)
        if failed:
            info.FailedSOPSequence = Sequence(failed)
        event_type = sc.EVENT_SOME_FAILED if failed else sc.EVENT_ALL_COMMITTED
        if assoc.is_established:
            status, _ = assoc.send_n_event_report(info, event_type, sc.SOP_CLASS, sc.SOP_INSTANCE)
            with self._lock:
                self.reports.append((transaction, event_type))
                self.answers.append(int(status.Status) if "Status" in status else None)
