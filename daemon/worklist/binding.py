"""Which acquisition session is bound to which worklist item.

A session whose context names an ``accessionNumber`` or a
``scheduledProcedureStepId`` (keys in any case, as clients send them) is
bound to the one item of the worklist that has every value it names. The
rules (``match``):

- neither key: unbound, nothing to warn about (the imaging software does
  not use the worklist);
- no item, or several (one accession with several steps for this station):
  unbound, with the reason; several are not guessed between, the context
  must name the step too;
- the match is tried when the session is created, whenever the session or
  the worklist changes, when its state is reported, and at image time,
  while the session is unbound (the worklist may have come up since);
- once an image of the session was taken bound, the binding is fixed: a
  later context or worklist change does not move that session's images to
  another patient.

An unbound session with a key is logged once per reason (a warning) and
its reason is kept for the API and the status page; acquisition goes on
unbound, an X-ray is never blocked by the worklist.

``context_for`` gives an image's context with the item's patient and study
over it (``CARRIED``) and ``worklistBound: true``; a ``worklistBound`` the
client sent is dropped, so only a real binding says so.
"""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from .items import Worklist

log = logging.getLogger("sensord.worklist")

CARRIED = ("patientId", "patientName", "birthDate", "sex", "studyInstanceUid", "accessionNumber",
           "requestedProcedureId", "requestedProcedureDescription", "scheduledProcedureStepId",
           "scheduledProcedureStepDescription", "referringPhysician")
BOUND = "worklistBound"
NO_KEYS = "the session's context names no accessionNumber or scheduledProcedureStepId"
NOT_CONFIGURED = "no worklist is configured"


def _norm(key: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(key).lower())


_CARRIED_NORM = {_norm(k) for k in CARRIED}


class SessionLike(Protocol):
    id: str
    context: dict


def wanted(context: dict) -> tuple[str, str]:
    """(accession number, scheduled step id) a context names, "" for each it does not."""
    found = {"accessionnumber": "", "scheduledprocedurestepid": ""}
    for key, value in (context or {}).items():
        norm = _norm(key)
        if norm in found and value is not None and not isinstance(value, (dict, list, bool)):
            found[norm] = str(value).strip()
    return found["accessionnumber"], found["scheduledprocedurestepid"]


def _describe(accession: str, step: str) -> str:
    return " and ".join(f"{k} {v!r}" for k, v in (("accessionNumber", accession),
                                                  ("scheduledProcedureStepId", step)) if v)


def match(items, accession: str, step: str) -> tuple[dict | None, str | None]:
    """(the item, None), or (None, why not): the binding rules, pure."""
    if not accession and not step:
        return None, NO_KEYS
    found = [i for i in items if (not accession or i["accessionNumber"] == accession)
             and (not step or i["scheduledProcedureStepId"] == step)]
    if len(found) == 1:
        return found[0], None
    if not found:
        return None, f"no worklist item has {_describe(accession, step)}"
    return None, (f"{_describe(accession, step)} matches {len(found)} scheduled steps; "
                  f"the context must name the scheduledProcedureStepId too")


def without_claim(context: dict) -> dict:
    """The context without a client's own ``worklistBound`` (in any spelling)."""
    return {k: v for k, v in (context or {}).items() if _norm(k) != _norm(BOUND)}


def overlay(context: dict, item: dict) -> dict:
    """The context with the item's patient and study over it, and ``worklistBound: true``.

    An attribute the item leaves empty keeps the context's value; one it
    has replaces the context's in every key spelling."""
    given = {_norm(k) for k in CARRIED if item.get(k)}
    out = {k: v for k, v in without_claim(context).items() if _norm(k) not in given}
    out.update({k: item[k] for k in CARRIED if item.get(k)})
    out[BOUND] = True
    return out


@dataclass
class Binding:
    session_id: str
    accession: str = ""
    step: str = ""
    item: dict | None = None
    reason: str | None = None
    fixed: bool = False
    seen: tuple | None = None          # (accession, step, worklist version) last matched
    warned: str | None = None          # the reason last logged


def _step_of(item: dict) -> tuple[str, str]:
    return item["accessionNumber"], item["scheduledProcedureStepId"]


class Bindings:
    def __init__(self, worklist: Worklist):
        self.worklist = worklist
        self._bindings: dict[str, Binding] = {}
        self._lock = threading.Lock()

    # -- signal handlers (cheap: a lookup in the cached list, never the network) --
    def on_session_changed(self, event) -> None:
        """SessionManager.session_changed: ``event.session`` with id, context, deleted."""
        session = event.session
        if session.deleted:
            with self._lock:
                self._bindings.pop(session.id, None)
            return
        self.resolve(session.id, session.context)

    def on_acquired(self, event) -> None:
        """SessionManager.image_acquired, connected before forwarding's: match now if unbound,
        and fix a binding the image was taken with. Never raises (the signal is strict)."""
        try:
            if event.session.deleted:       # (and forgotten already: not remembered again)
                return
            context = {**event.session.context,
                       **((event.image.image_info.get("acquisitionInfo") or {}).get("context") or {})}
            binding = self.resolve(event.session.id, context)
            with self._lock:
                if binding.item is not None and not binding.fixed:
                    binding.fixed = True
                    log.info("session %s: its images are bound to worklist step %s (accession %s)",
                             binding.session_id, binding.item["scheduledProcedureStepId"] or "-",
                             binding.item["accessionNumber"] or "-")
        except Exception:
            log.exception("session %s: binding at image time failed; the image goes on unbound",
                          getattr(event.session, "id", "?"))

    def on_worklist_changed(self, _worklist=None) -> None:
        with self._lock:
            waiting = [(b.session_id, b.accession, b.step) for b in self._bindings.values()
                       if not b.fixed and b.item is None]
        for session_id, accession, step in waiting:
            self.resolve(session_id, {"accessionNumber": accession, "scheduledProcedureStepId": step})

    # -- the rules applied ---------------------------------------------------
    def resolve(self, session_id: str, context: dict) -> Binding:
        """The session's binding after matching ``context`` against the worklist (unless fixed)."""
        accession, step = wanted(context)
        with self._lock:
            binding = self._bindings.setdefault(session_id, Binding(session_id))
            key = (accession, step, self.worklist.version)
            if binding.fixed:
                if (accession or step) and (accession, step) != (binding.accession, binding.step) \
                        and binding.warned != f"fixed:{accession}:{step}":
                    binding.warned = f"fixed:{accession}:{step}"
                    held = binding.item["accessionNumber"] if binding.item else "-"
                    log.warning("session %s: its context now names %s, but its images are bound to "
                                "accession %s already; the binding stays", session_id,
                                _describe(accession, step), held)
                return binding
            if binding.seen == key:
                return binding
            binding.seen = key
            binding.accession, binding.step = accession, step
            if not self.worklist.configured:
                binding.item, binding.reason = None, NOT_CONFIGURED if (accession or step) else NO_KEYS
                return binding
            before = binding.item
            binding.item, binding.reason = match(self.worklist.items, accession, step)
            if binding.reason is not None and binding.reason != NO_KEYS and self.worklist.error:
                binding.reason = (f"the worklist does not answer: {self.worklist.error}"
                                  if self.worklist.refreshed_at is None
                                  else f"{binding.reason} (the worklist does not answer: {self.worklist.error})")
            report = binding.reason if binding.reason not in (None, NO_KEYS) and binding.reason != binding.warned \
                else None
            if report is not None:
                binding.warned = report
            bound = binding.item
            newly = bound is not None and (before is None or _step_of(before) != _step_of(bound))
            if newly:
                binding.warned = None
        if report is not None:
            log.warning("session %s is not bound to the worklist: %s; acquisition goes on unbound",
                        session_id, report)
        elif newly and bound is not None:
            log.info("session %s bound to worklist step %s (accession %s)", session_id,
                     bound["scheduledProcedureStepId"] or "-", bound["accessionNumber"] or "-")
        return binding

    def context_for(self, session_id: str, context: dict) -> dict:
        """The context of an image of ``session_id``: the bound item's attributes over it."""
        with self._lock:
            known = session_id in self._bindings
        if known:
            binding = self.resolve(session_id, context)
            item = binding.item
        elif self.worklist.configured:      # not (or no longer) tracked: matched, not remembered
            item, _reason = match(self.worklist.items, *wanted(context))
        else:
            item = None
        return overlay(context, item) if item is not None else without_claim(context)

    def item_of(self, session_id: str) -> dict | None:
        with self._lock:
            binding = self._bindings.get(session_id)
            return dict(binding.item) if binding is not None and binding.item is not None else None

    def report(self, sessions: Iterable[SessionLike]) -> list[dict]:
        """Each live session's binding, matched again first (a context change emits no signal)."""
        live = list(sessions)
        bindings = [self.resolve(session.id, session.context) for session in live]
        with self._lock:
            out = []
            for b in bindings:
                item = b.item or {}
                out.append({"sessionId": b.session_id, "bound": b.item is not None,
                            "accessionNumber": item.get("accessionNumber", b.accession) or None,
                            "scheduledProcedureStepId": item.get("scheduledProcedureStepId", b.step) or None,
                            "reason": b.reason})
            return out
