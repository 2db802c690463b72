"""What gets forwarded: every new acquired image by the configured rules,
and resources or session images on request.

The context travels with the image: the session's context, overlaid by the
exposure's (AcquisitionInfo.context), overlaid by a request's own. Adapters
read patientId, studyDate, laterality, tooth... from it.
"""
from __future__ import annotations

import logging

from . import filter_spec
from .delivery import Forwarder
from .outbox import Outbox

log = logging.getLogger("sensord.forward")


class Forwarding:
    def __init__(self, outbox: Outbox, forwarder: Forwarder, rules: list[dict]):
        self.outbox = outbox
        self.forwarder = forwarder
        self.set_rules(rules)

    def set_rules(self, rules: list[dict]) -> None:
        # One assignment: a frame being handled sees the old rules or the new, never a mix.
        # Filters are stored canonical (checked already at start or reload).
        self.rules = [(r["target"], str(filter_spec.parse(r.get("filter", "raw")))) for r in rules
                      if r.get("source", "acquired") == "acquired"]

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
        a reported image is always already in the outbox."""
        if not self.rules:
            return
        session, image = event.session, event.image
        context = {**session.context, **(image.image_info.get("acquisitionInfo") or {}).get("context", {})}
        self.queue(self.rules, image_id=image.id, image_info=image.image_info, context=context,
                   png_path=image.png_path)
