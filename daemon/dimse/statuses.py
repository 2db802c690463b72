"""What a C-STORE or N-ACTION status means to a delivery: done, done with a
note, worth another attempt later, or never going to work.

C-STORE (the Storage service's own codes, PS3.4 Table B.2-1, and the
general DIMSE ones, PS3.7 Annex C) and N-ACTION (Storage Commitment Push
Model, PS3.4 J.3.2, whose failures are the general ones):

==============  =================================================  ==========
code            what the archive is saying                         outcome
==============  =================================================  ==========
0x0000          it has the object / it took the commitment request  success
0xB000          stored, but some elements were changed to fit it    warning
0xB006          stored, but some elements were dropped              warning
0xB007          stored, though the object does not match its class  warning
0x0001, 0x0107  general warnings (attribute list, value out of      warning
0x0116          range): the request was acted upon
0x0111          it already holds an instance with this UID          success
0xA700-0xA7FF   out of room (disk, memory) for now                  retry
0x0110          it failed while processing, for its own reasons     retry
0x0213          resource limit reached                              retry
0x0210          it sees the same request twice (message ids)        retry
0xFE00          it cancelled the operation                          retry
0xA900-0xA9FF   the data set does not fit the SOP class             permanent
0xC000-0xCFFF   it cannot make sense of the data set                permanent
0x0122          it does not support this SOP class                  permanent
0x0124          we are not allowed to store there                   permanent
0x0112-0x0119   no such instance / argument, invalid value,         permanent
                class and instance disagree (N-ACTION)
0x0123          no such action (N-ACTION)                           permanent
0x0211, 0x0212  it did not understand the request                   permanent
anything else   unknown to us: an operator should look              permanent
==============  =================================================  ==========

"retry" goes back to the outbox's backoff (and is dead-lettered after the
target's ``max_attempts``); "permanent" dead-letters the entry at once with
the code in its error. No status at all (the association dropped, no answer
within the timeout) is for the caller to treat as "retry".
"""
from __future__ import annotations

from enum import Enum


class Outcome(str, Enum):
    SUCCESS = "success"
    WARNING = "warning"
    RETRY = "retry"
    PERMANENT = "permanent"


_EXACT = {
    0x0000: Outcome.SUCCESS,
    0x0111: Outcome.SUCCESS,       # already there: what a retry after a lost answer meets
    0xB000: Outcome.WARNING, 0xB006: Outcome.WARNING, 0xB007: Outcome.WARNING,
    0x0001: Outcome.WARNING, 0x0107: Outcome.WARNING, 0x0116: Outcome.WARNING,
    0x0110: Outcome.RETRY, 0x0213: Outcome.RETRY, 0x0210: Outcome.RETRY, 0xFE00: Outcome.RETRY,
}
_RANGES = (
    (0xA700, 0xA7FF, Outcome.RETRY),
    (0xA900, 0xA9FF, Outcome.PERMANENT),
    (0xC000, 0xCFFF, Outcome.PERMANENT),
)


def outcome(status: int) -> Outcome:
    """What a C-STORE or N-ACTION status code means (see the table above)."""
    if status in _EXACT:
        return _EXACT[status]
    for low, high, meaning in _RANGES:
        if low <= status <= high:
            return meaning
    return Outcome.PERMANENT


def describe(status: int) -> str:
    """The code as an operator reads it in the outbox, e.g. ``0xA700 (retry)``."""
    return f"0x{status:04X} ({outcome(status).value})"
