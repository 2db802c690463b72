"""Modality Performed Procedure Step for sessions bound to a worklist item.

A session is one performed step. Its first image queued with a bound
context (``worklistBound``: the worklist binding filled in the item's keys)
queues the N-CREATE, IN PROGRESS, with the scheduled step, the patient,
this station's AE title, the image's time as the start, modality IO and no
series yet. Every image of the session records the SOP instances it was
queued as for a DICOM target (kind ``dicomweb`` or ``dimse``, without
de-identification: a de-identified copy is not this patient's instance):
the raw image and each filtered copy, with the UIDs platforms/dicom.py
gives them. Deleting the session queues the N-SET: COMPLETED listing every
instance recorded (one Performed Series item per series), or DISCONTINUED
when none was sent. A bound session that never imaged sends nothing.

Sessions end with the daemon: a step still open at start (N-CREATE queued,
no N-SET) belonged to a session that vanished with the last stop; its N-SET
is queued then (COMPLETED with what was recorded, else DISCONTINUED), ended
at its last image, and logged.

The messages and the instances live in the MPPS queue (mpps_queue.py,
durable before anything goes on); mpps_messages.py builds the datasets and
mpps_sender.py sends them, in order per session. Operators retry a dead
or waiting message, or drop a dead one (a dead N-CREATE with its held N-SET,
closing the step). A finished session (N-SET delivered, or dropped) is
forgotten ``forward.keep_delivered_days`` after its last activity, with its
recorded instances (``prune``, from the scheduler). Nothing of this runs
without ``[mpps] host``: service.py then builds no Mpps at all.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from sensord.daemon.dimse.network import Peer

from . import mpps_messages
from .events import ImageQueued
from .mpps_messages import Instance
from .mpps_queue import MppsQueue, Step
from .mpps_sender import MppsSender
from .platforms import dicom

log = logging.getLogger("sensord.forward.mpps")

DICOM_KINDS = frozenset({"dicomweb", "dimse"})


def sent_instances(event: ImageQueued, targets: Mapping) -> list[Instance]:
    """The SOP instances ``event``'s image was queued as for DICOM targets
    (``targets``: name -> delivery.Target, read for ``kind`` and ``deid``)."""
    study = study_uid(event.context, image_id=event.image_id, image_info=event.image_info)
    found: dict[str, Instance] = {}
    for target_name, spec in event.pairs:
        target = targets.get(target_name)
        if target is None or target.kind not in DICOM_KINDS or getattr(target, "deid", None) is not None:
            continue
        if spec == "raw":
            image_id, info = event.image_id, event.image_info
        else:   # the filtered copy's own id and series, as delivery.py and platforms/dicom.py make them
            image_id = str(uuid.uuid5(uuid.UUID(event.image_id), spec))
            info = {**event.image_info, "filter": spec}
        instance = dicom.instance_uid(image_id)
        found.setdefault(instance, Instance(dicom.series_uid(study, info), dicom.SOP_CLASS, instance))
    return list(found.values())


def study_uid(context: dict, *, image_id: str, image_info: dict) -> str:
    """The Study Instance UID the session's images carry (the bound item's, as a rule)."""
    return dicom.study_uid(context, image_id=image_id, study_date=_study_date(context, image_info))


def _study_date(context: dict, image_info: dict) -> str:
    given = re.fullmatch(r"(\d{4})-?(\d\d)-?(\d\d).*", str(context.get("studyDate") or "").strip())
    if given:
        return "".join(given.groups())
    return _local(image_info.get("createdOn"), time.time()).strftime("%Y%m%d")


def _local(raw, fallback: float) -> datetime:
    """An ImageInfo time (ISO 8601, UTC when it names no zone) in this machine's zone."""
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        return datetime.fromtimestamp(fallback).astimezone()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone()


class Mpps:
    def __init__(self, root: Path, peer: Peer, *, ae_title: str, timeout: float, targets: Mapping,
                 keep_days: float = 30, clock=time.time):
        """``root``: the outbox folder (the queue is ``mpps.db`` there);
        ``targets``: the forwarder's targets, name -> Target; ``keep_days``:
        how long a finished session stays after its last activity (``prune``)."""
        self.queue = MppsQueue(Path(root) / "mpps.db", clock=clock)
        self.keep_days = keep_days
        self.sender = MppsSender(self.queue, peer, ae_title=ae_title, timeout=timeout, clock=clock)
        self.ae_title = ae_title
        self.targets = targets
        self.clock = clock

    def start(self) -> None:
        self.queue.start()
        for step in self.queue.open_steps():
            status = self._close(step.session, ended=step.last_image)
            log.warning("MPPS: session %s ended with the last stop; N-SET %s queued for its step %s",
                        step.session, status, step.mpps_uid)

    def close(self) -> None:
        self.queue.close()

    def tick(self) -> int:
        return self.sender.tick()

    def prune(self) -> int:
        """Forget the finished sessions older than ``keep_days`` (the scheduler's
        job); returns how many went."""
        sessions, messages, instances = self.queue.prune(self.clock() - self.keep_days * 86400)
        if sessions:
            log.info("MPPS: pruned %d finished session(s) idle for over %g day(s): %d delivered message(s), "
                     "%d recorded instance(s)", sessions, self.keep_days, messages, instances)
        return sessions

    # -- signal handlers ----------------------------------------------------
    def on_image_queued(self, event: ImageQueued) -> None:
        """Forwarding's ImageQueued: open the step on the first bound image, record what was sent."""
        if not mpps_messages.is_bound(event.context):
            return      # an unbound image is no part of a step (and costs no disk write)
        try:
            instances = sent_instances(event, self.targets)
        except ValueError as err:       # a context no DICOM object can be built from: none was sent
            log.error("MPPS: image %s of session %s: %s", event.image_id, event.session_id, err)
            instances = []

        def create():
            uid = mpps_messages.mpps_uid(event.session_id)
            started = _local(event.image_info.get("createdOn"), self.clock())
            protocol = mpps_messages.protocol_name(event.context)
            try:
                study = study_uid(event.context, image_id=event.image_id, image_info=event.image_info)
                ds = mpps_messages.build_create(event.context, step_uid=uid, study_uid=study,
                                           station_ae=self.ae_title, started=started)
            except ValueError as err:   # no retry can fix it: shown dead, its N-SET held behind it
                log.error("MPPS: cannot build the N-CREATE of session %s: %s", event.session_id, err)
                return uid, protocol, "{}", started.timestamp(), f"cannot build the N-CREATE: {err}"
            return uid, protocol, mpps_messages.to_json(ds), started.timestamp(), None

        outcome = self.queue.record_image(event.session_id, instances, create=create)
        if outcome == "opened":
            log.info("MPPS: session %s started its step (N-CREATE IN PROGRESS queued, %d instance(s))",
                     event.session_id, len(instances))
        elif outcome == "closed":
            log.warning("MPPS: image %s of session %s came after the step's N-SET; not referenced",
                        event.image_id, event.session_id)

    def on_session_changed(self, event) -> None:
        """The sessions' SessionChanged (its ``session``; acquisition is a peer
        room, not imported): a deleted session's step gets its N-SET."""
        session = event.session
        if not getattr(session, "deleted", False):
            return
        status = self._close(session.id, ended=self.clock())
        if status is not None:
            log.info("MPPS: session %s deleted; N-SET %s queued", session.id, status)

    def _close(self, session_id: str, *, ended: float) -> str | None:
        def build(step: Step, instances: list[Instance]):
            ds = mpps_messages.build_set(step_uid=step.mpps_uid, instances=instances,
                                    ended=datetime.fromtimestamp(ended).astimezone(), protocol=step.protocol)
            return mpps_messages.status_of(ds), mpps_messages.to_json(ds)
        return self.queue.close_step(session_id, build)

    # -- operators ----------------------------------------------------------
    def counts(self) -> dict:
        return self.queue.counts()

    def messages(self, *, states: tuple[str, ...] = (), limit: int = 200) -> list[dict]:
        return [m.to_json() for m in self.queue.messages(states=states, limit=limit)]

    def retry(self, message_id: int) -> tuple[str, dict | None]:
        """(outcome, the message) of an operator's retry (MppsQueue.retry's outcomes)."""
        outcome = self.queue.retry(message_id)
        message = self.queue.get(message_id)
        if outcome == "retried" and message is not None:
            log.info("MPPS: N-%s of session %s retried by an operator", message.kind.upper(), message.session)
        return outcome, None if message is None else message.to_json()

    def drop(self, message_id: int) -> tuple[str, list[dict]]:
        """(outcome, the messages dropped) of an operator's drop (MppsQueue.drop's outcomes)."""
        outcome, dropped = self.queue.drop(message_id)
        for m in dropped:
            why = "" if m.id == message_id else f", with its dead N-CREATE {message_id} (its step was never created)"
            log.warning("MPPS: N-%s %d (%s) of session %s dropped by an operator%s; never to be sent",
                        m.kind.upper(), m.id, m.pps_status, m.session, why)
        return outcome, [m.to_json() for m in dropped]
