"""What gets forwarded: every new acquired image by the configured rules,
and resources or session images on request.

The context travels with the image: the session's context, overlaid by the
exposure's (AcquisitionInfo.context), overlaid by a request's own. Adapters
read patientId, studyDate, laterality, tooth... from it. A session image's
context then goes through ``context_hook(session_id, context)`` when one is
set (service.py sets the worklist binding's: a bound session's images carry
the scheduled step's patient and study), before the outbox records it.
With ``performed_steps`` (MPPS configured) a bound context then also gets
``performedProcedureStepUid``, the step mpps.py reports for the session, so
the images can name it; a client never sets that key itself.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from sensord.daemon.signals import Signal

from . import filter_spec
from .delivery import Forwarder
from .events import ImageQueued
from .outbox import Outbox

log = logging.getLogger("sensord.forward")
PERFORMED_STEP = "performedProcedureStepUid"


class Forwarding:
    def __init__(self, outbox: Outbox, forwarder: Forwarder, rules: list[dict], *,
                 context_hook: Callable[[str, dict], dict] | None = None, performed_steps: bool = False):
        self.outbox = outbox
        self.forwarder = forwarder
        self.context_hook = context_hook
        self.performed_steps = performed_steps
        # After on_acquired queued an image (also when no rule applies).
        self.image_queued: Signal[ImageQueued] = Signal("image queued")
        self.set_rules(rules)

    def set_rules(self, rules: list[dict]) -> None:
        # One assignment: a frame being handled sees the old rules or the new, never a mix.
        # Filters are stored canonical (checked already at start or reload).
        self.rules = [(r["target"], str(filter_spec.parse(r.get("filter", "raw")))) for r in rules
                      if r.get("source", "acquired") == "acquired"]

    def session_context(self, session_id: str, context: dict) -> dict:
        """The context recorded for an image of a session: ``context`` through the hook, if any.
        A failing hook leaves the context as it was: forwarding an image never waits on it."""
        context = {k: v for k, v in context.items() if k != PERFORMED_STEP}   # ours alone to set
        if self.context_hook is not None:
            try:
                context = self.context_hook(session_id, context)
            except Exception:
                log.exception("session %s: the context hook failed; the context goes unchanged", session_id)
        if self.performed_steps:
            from . import mpps_messages     # (pydicom: imported only with [mpps] configured)
            if mpps_messages.is_bound(context):
                context = {**context, PERFORMED_STEP: mpps_messages.mpps_uid(session_id)}
        return context

    def queue(self, pairs, *, image_id, image_info, context, png_path) -> list[int]:
        ids = self.outbox.add(pairs, image_id=image_id, image_info=image_info, context=context,
                              png_path=png_path)
        if ids:
            log.info("queued image %s for %s", image_id, ", ".join(f"{t} ({f})" for t, f in pairs))
            self.forwarder.tick()      # start at once rather than at the next poll
        return ids

    def on_acquired(self, event) -> None:
        """Handler of the sessions' ImageAcquired signal (its ``session`` and
        ``image``; not imported, acquisition being a peer room). It runs
        before NewImage is announced, and its failure fails the exposure, so
        a reported image is always already in the outbox. Then ``image_queued``
        tells who follows the session's images (MPPS), also when no rule
        applies; their failure is logged and fails nothing (an X-ray taken
        is never undone for bookkeeping)."""
        rules = self.rules      # read once: the pairs announced are the pairs queued
        session, image = event.session, event.image
        context = {**session.context, **(image.image_info.get("acquisitionInfo") or {}).get("context", {})}
        context = self.session_context(session.id, context)
        if rules:
            self.queue(rules, image_id=image.id, image_info=image.image_info, context=context,
                       png_path=image.png_path)
        self.image_queued.emit(ImageQueued(session_id=session.id, image_id=image.id, image_info=image.image_info,
                                           context=context, pairs=tuple(rules)))
