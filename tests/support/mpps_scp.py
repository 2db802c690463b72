"""A real MPPS SCP (pynetdicom) on loopback, for the MPPS tests; Orthanc has none.

It keeps each step as a real SCP would: an N-CREATE for a step it knows
already answers 0x0111 (duplicate SOP instance), one whose status is not
IN PROGRESS 0x0106, an N-SET for an unknown step 0x0112, and an N-SET on a
step already COMPLETED or DISCONTINUED 0x0110 with error ID A710. Every
request is recorded in arrival order (``requests``) with the status it got.

A test may queue answers of its choice (``answer_next``), hold the next
request of a kind until released (``hold_next``), stop the SCP (nothing
listens: the connection is refused) and start it again on the same port.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from tests.support.loopback import free_port, wait_until

AE_TITLE = "RIS"
FINAL = ("COMPLETED", "DISCONTINUED")


@dataclass
class Received:
    kind: str               # "create" | "set"
    uid: str                # the MPPS SOP Instance UID
    dataset: Dataset        # the attribute / modification list
    status: int             # what the SCP answered


class MppsScp:
    def __init__(self, *, port: int | None = None, ae_title: str = AE_TITLE):
        self.port = port or free_port()
        self.ae_title = ae_title
        self.steps: dict[str, Dataset] = {}       # the steps as the SCP keeps them
        self.requests: list[Received] = []
        self._answers: dict[str, list] = {"create": [], "set": []}
        self._holds: dict[str, tuple[threading.Event, threading.Event]] = {}
        self._lock = threading.Lock()
        self._server = None

    # -- life -------------------------------------------------------------
    def start(self) -> "MppsScp":
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(ModalityPerformedProcedureStep)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        self._server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[
            (evt.EVT_N_CREATE, self._on_create), (evt.EVT_N_SET, self._on_set)])
        return self

    def stop(self) -> None:
        """Down: nothing listens on the port any more (connections are refused)."""
        if self._server is not None:
            for event, _ in self._holds.values():
                event.set()
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> "MppsScp":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def config(self) -> dict:
        """The daemon's [mpps] table for this SCP."""
        return {"host": "127.0.0.1", "port": self.port, "called_ae": self.ae_title}

    # -- what a test asks ---------------------------------------------------
    def answer_next(self, kind: str, status: int, *, times: int = 1, **extra) -> None:
        """Answer the next ``times`` requests of ``kind`` with ``status`` (and
        the status elements in ``extra``: ErrorComment, ErrorID,
        AttributeIdentifierList...) without doing anything."""
        answer = Dataset()
        answer.Status = status
        for keyword, value in extra.items():
            setattr(answer, keyword, value)
        with self._lock:
            self._answers[kind] += [answer] * times

    def hold_next(self, kind: str) -> tuple[threading.Event, threading.Event]:
        """(arrived, release): the next request of ``kind`` waits, recorded, until released."""
        arrived, release = threading.Event(), threading.Event()
        self._holds[kind] = (arrived, release)
        return arrived, release

    def of(self, kind: str, uid: str | None = None) -> list[Received]:
        return [r for r in self.requests if r.kind == kind and (uid is None or r.uid == uid)]

    def wait_for(self, count: int, timeout: float = 20) -> bool:
        return wait_until(lambda: len(self.requests) >= count, timeout)

    # -- handlers -----------------------------------------------------------
    def _received(self, kind: str, uid: str, dataset: Dataset, status) -> tuple:
        code = int(status.Status) if isinstance(status, Dataset) else int(status)
        with self._lock:
            self.requests.append(Received(kind, uid, dataset, code))
        hold = self._holds.pop(kind, None)
        if hold is not None:
            hold[0].set()
            hold[1].wait(60)
        return status, (dataset if code == 0 else None)

    def _canned(self, kind: str):
        with self._lock:
            return self._answers[kind].pop(0) if self._answers[kind] else None

    def _on_create(self, event):
        uid = str(event.request.AffectedSOPInstanceUID)
        dataset = event.attribute_list
        canned = self._canned("create")
        if canned is not None:
            return self._received("create", uid, dataset, canned)
        with self._lock:
            if uid in self.steps:
                status = 0x0111
            elif dataset.get("PerformedProcedureStepStatus") != "IN PROGRESS":
                status = 0x0106
            else:
                self.steps[uid] = dataset
                status = 0x0000
        return self._received("create", uid, dataset, status)

    def _on_set(self, event):
        uid = str(event.request.RequestedSOPInstanceUID)
        dataset = event.modification_list
        canned = self._canned("set")
        if canned is not None:
            return self._received("set", uid, dataset, canned)
        with self._lock:
            step = self.steps.get(uid)
            if step is None:
                status: int | Dataset = 0x0112
            elif step.get("PerformedProcedureStepStatus") in FINAL:
                status = Dataset()
                status.Status, status.ErrorID = 0x0110, 0xA710
                status.ErrorComment = "Performed Procedure Step Object may no longer be updated"
            else:
                step.update(dataset)
                status = 0x0000
        return self._received("set", uid, dataset, status)
