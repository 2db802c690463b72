"""Associations with the clinic's DICOM peers (archive, worklist, MPPS).

One place decides our AE title, how long any wait may take, and what a
failed association means to the caller: ``DimseError.retryable`` is true
when trying later may work (nobody listening, a timeout, an abort, a
transient rejection) and false when the peer refused us for good (a
permanent rejection: our AE title or the called one is wrong, which an
operator must fix).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pynetdicom import AE
    from pynetdicom.association import Association

log = logging.getLogger("sensord.dimse")


class DimseError(Exception):
    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    called_ae: str

    def __str__(self) -> str:
        return f"{self.called_ae}@{self.host}:{self.port}"


def application_entity(ae_title: str, *, timeout: float) -> AE:
    """An AE with our title and every wait bounded by ``timeout`` seconds."""
    # pynetdicom at the first association, not at import: `Peer` and `DimseError`
    # are built at every start, associations only with DICOM configured.
    from pynetdicom import AE
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = timeout          # A-ASSOCIATE and A-RELEASE answers
    ae.dimse_timeout = timeout         # each DIMSE answer
    ae.network_timeout = timeout       # silence on an open association
    ae.connection_timeout = timeout    # the TCP connect
    return ae


# A-ASSOCIATE-RJ (PS3.8 9.3.4): result 1 is permanent, 2 transient.
_REJECTED_PERMANENT = 0x01


@contextlib.contextmanager
def association(peer: Peer, *, ae_title: str, timeout: float,
                contexts: Sequence[tuple[str, Sequence[str]]],
                evt_handlers: list | None = None,
                roles: Sequence[tuple[str, bool, bool]] = ()) -> Iterator[Association]:
    """An established association, released on exit (aborted on an error).

    ``contexts``: (abstract syntax UID, [transfer syntax UIDs]) per
    presentation context, proposed in this order. ``roles``: SCP/SCU role
    selection items (abstract syntax, scu_role, scp_role).
    """
    from pynetdicom import build_role
    ae = application_entity(ae_title, timeout=timeout)
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, list(syntaxes))
    ext: list = [build_role(uid, scu_role=scu, scp_role=scp) for uid, scu, scp in roles]
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.called_ae, ext_neg=ext or None,
                         evt_handlers=evt_handlers or [])
    if not assoc.is_established:
        raise _failure(assoc, peer)
    try:
        yield assoc
    except BaseException:
        if assoc.is_established:
            assoc.abort()
        raise
    else:
        if assoc.is_established:
            assoc.release()
    finally:
        ae.shutdown()


def _failure(assoc: Association, peer: Peer) -> DimseError:
    if assoc.is_rejected:
        primitive = assoc.acceptor.primitive
        result = getattr(primitive, "result", None)
        reason = getattr(primitive, "reason_str", None) or getattr(primitive, "diagnostic", None)
        permanent = result == _REJECTED_PERMANENT
        return DimseError(f"{peer} rejected the association ({'permanent' if permanent else 'transient'}"
                          f"{': ' + str(reason) if reason else ''}); check the AE titles",
                          retryable=not permanent)
    # (pynetdicom reports a refused or timed-out connect as an abort too, so
    # the message does not claim the peer answered.)
    return DimseError(f"cannot reach {peer}: no association (refused, aborted or timed out)",
                      retryable=True)


def check_established(assoc: Association, peer: Peer) -> None:
    """Raise a retryable DimseError when the association dropped mid-way."""
    if not assoc.is_established:
        raise DimseError(f"the association with {peer} ended early "
                         f"({'aborted' if assoc.is_aborted else 'released'})", retryable=True)
