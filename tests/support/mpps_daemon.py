"""A running daemon set up for MPPS tests: the worklist binding stood in for
(a session naming accession ACC-7 is bound to ITEM, exactly as a bound
context looks), short backoff, and reading the MPPS part of the outbox."""
from __future__ import annotations

from tests.support.modality import ADMIN, expose, subscribe_status

ITEM = {"patientId": "P-1", "patientName": "Doe^Jane", "birthDate": "1980-02-03", "sex": "F",
        "studyInstanceUid": "1.2.826.0.1.3680043.8.498.4242", "accessionNumber": "ACC-7",
        "requestedProcedureId": "RP-7", "requestedProcedureDescription": "Bitewings",
        "scheduledProcedureStepId": "SPS-7", "scheduledProcedureStepDescription": "Bitewing pair",
        "referringPhysician": "Who^Doctor"}
SIM = "sim://?models=select0&time_scale=0.01&seed=5"


def bind(session_id: str, context: dict) -> dict:
    """The worklist binding's hook, stood in for: ACC-7 is the one scheduled item."""
    context = {k: v for k, v in context.items() if k != "worklistBound"}
    if context.get("accessionNumber") == ITEM["accessionNumber"]:
        return {**context, **ITEM, "worklistBound": True}
    return context


def prepare(daemon) -> None:
    """``running(prepare=...)``: bind as above, retry quickly."""
    daemon.forwarding.context_hook = bind
    daemon.mpps.sender.backoff_base, daemon.mpps.sender.backoff_max = 0.2, 0.5


def mpps_of(srv) -> dict:
    """The ``mpps`` part of GET /outbox: configured, counts, messages (latest first)."""
    return srv.http.get(srv.url(ADMIN + "/outbox")).json()["mpps"]


def acquire(srv, sid: str, device: str, count: int) -> list[dict]:
    """``count`` exposures in session ``sid``; their ImageInfos."""
    stream = subscribe_status(srv, sid)
    try:
        return [expose(srv, sid, device, stream)[1] for _ in range(count)]
    finally:
        stream.close()
