"""Delivery of outbox entries to their targets, run by a scheduler job.

Each tick leases the entries that are due, per target up to its
concurrency limit of batches in flight, each batch up to the adapter's
``batch_size`` entries, and hands the batches to worker threads. Outcomes,
per entry: delivered; committing (the platform has it and confirms later:
``AwaitingConfirmation``); retried later with exponential backoff and
jitter, or exactly when the platform's Retry-After says; dead-lettered with
the last error after a permanent failure, ``max_attempts`` tries or
``max_age_hours``.
"""
from __future__ import annotations

import functools
import logging
import random
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sensord import filters
from sensord.daemon.dsio.imageinfo import lut_from_info
from sensord.daemon.settings import DicomSettings
from sensord.daemon.signals import Signal
from sensord.daemon.store.pixel_budget import BeyondBudget, BudgetBusy, PixelBudget, decode_png
from sensord.filters import footprint
from sensord.filters import png as pngcodec
from sensord.filters.pixel_hash import ALGORITHMS as HASH_ALGS
from sensord.filters.pixel_hash import pixel_hash

from . import deidentify, filter_spec
from .events import DeliveryEnded
from .filter_spec import FilterSpec
from .outbox import Outbox
from .outbox_table import Entry
from .platforms import open_adapter
from .platforms.base import Adapter, AwaitingConfirmation, Delivery, PermanentError, RetryableError

log = logging.getLogger("sensord.forward")

LEASE_SECONDS = 600.0   # longer than any delivery; a crash voids leases at start anyway
# A filtered forward is background work: it waits longer than a request for
# the pixel budget, then tries again later (the outbox's retry) rather than fail.
BUDGET_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Target:
    name: str
    kind: str
    adapter: Adapter
    concurrency: int = 2
    max_attempts: int = 20
    max_age: float = 72 * 3600.0
    backoff_base: float = 2.0
    backoff_max: float = 600.0
    deid: deidentify.Deidentifier | None = None     # the target's `deidentify` option, when on


def backoff(attempts: int, *, base: float, cap: float, rng=random) -> float:
    """Seconds to wait after the ``attempts``-th failure: exponential, capped,
    with "equal jitter" (half fixed, half random) so retries of many entries
    do not arrive together."""
    delay = min(cap, base * 2 ** max(attempts - 1, 0))
    return delay / 2 + rng.uniform(0, delay / 2)


def filtered_image(path: Path, image_info: dict, spec: FilterSpec, *,
                   budget: PixelBudget | None = None) -> tuple[bytes, dict]:
    """The PNG to send for ``spec`` and the ImageInfo that describes it: a
    filtered copy has its own pixel hash, and an unmapped one no LUT.

    The LUT is read as the Filters API reads it (`dsio.imageinfo.lut_from_info`),
    so an image the API filters is one the forwarder filters. A lutInfo that
    describes no usable map is a PermanentError: no retry can change it.

    The decode and the filter reserve their working memory from ``budget``
    (waiting up to `BUDGET_WAIT_SECONDS`): a busy budget is a RetryableError,
    work larger than the whole budget a PermanentError.
    """
    data = path.read_bytes()
    if spec.is_raw:
        return data, image_info
    try:
        lut = lut_from_info(image_info)
    except ValueError as err:
        raise PermanentError(f"cannot apply the filter {spec}: {err}") from None
    try:
        pixels = decode_png(budget, data, max_width=65535, max_height=65535, wait=BUDGET_WAIT_SECONDS)
        if budget is None:
            return _filtered(pixels, image_info, spec, lut)
        height, width = pixels.shape
        with budget.reserve(footprint.filter_call_bytes(spec.name, width, height), wait=BUDGET_WAIT_SECONDS,
                            what=f"forwarding {spec} of a {width}x{height} image"):
            return _filtered(pixels, image_info, spec, lut)
    except BudgetBusy as err:
        raise RetryableError(err.message) from None     # the target's backoff spaces the retries
    except BeyondBudget as err:
        raise PermanentError(err.message) from None


def _filtered(pixels, image_info: dict, spec: FilterSpec, lut) -> tuple[bytes, dict]:
    """``spec`` applied to ``pixels``: the PNG and its ImageInfo, as `filtered_image` says."""
    info = dict(image_info)
    if spec.name == "unmap":
        out = filters.lut_unmap(pixels, lut=lut) if lut is not None else pixels
        if lut is not None:
            info["lutInfo"] = None
            info["bitsPerPixel"] = max(1, (lut.total_grays - 1).bit_length())   # 4096 grays: 12
    else:
        out = getattr(filters, spec.name)(pixels, lut=lut, **spec.kwargs())
    # The copy is hashed as the image was; MD5 when the image states no algorithm we know.
    stated = str((image_info.get("pixelHash") or {}).get("alg", "MD5")).upper()
    info["pixelHash"] = pixel_hash(out, alg=stated if stated in HASH_ALGS else "MD5")
    info["filter"] = str(spec)
    return pngcodec.encode_gray16(out), info


class Forwarder:
    def __init__(self, outbox: Outbox, targets: dict[str, Target], *, work_dir: Path, clock=time.time,
                 pixel_budget: PixelBudget | None = None):
        self.outbox = outbox
        self.pixel_budget = pixel_budget
        self.targets = targets
        self.work_dir = Path(work_dir)
        self.clock = clock
        self._in_flight: dict[int, str] = {}      # entry id -> target
        self._slots: dict[str, int] = {}          # target -> batches in flight
        self._last_start: dict[str, float] = {}   # target -> when its last batch started (monotonic)
        self._lock = threading.Lock()
        workers = max(1, sum(t.concurrency for t in targets.values()))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="forward")
        self._closed = False
        # Each entry's outcome as it is recorded (the metrics count them).
        self.delivery_ended: Signal[DeliveryEnded] = Signal("delivery ended")

    def start(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        for target in self.targets.values():
            target.adapter.close()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def active_targets(self, within: float) -> set[str]:
        """Targets with a delivery in flight now, or started in the last ``within`` seconds:
        those making progress, even with a backlog waiting (the readiness check)."""
        since = time.monotonic() - within
        with self._lock:
            return ({name for name, slots in self._slots.items() if slots > 0}
                    | {name for name, at in self._last_start.items() if at >= since})

    def tick(self) -> int:
        """Start the deliveries that are due; returns how many entries were started.

        Per target, up to ``concurrency`` batches in flight, each of up to the
        adapter's ``batch_size`` entries of that target (one entry each for most)."""
        if self._closed:
            return 0
        started = 0
        with self._lock:
            # Entries of a target no longer configured: no retry can help them.
            for entry in self.outbox.lease_due(exclude=set(self._in_flight), limit=100,
                                               lease_seconds=LEASE_SECONDS, not_targets=tuple(self.targets)):
                self.outbox.dead(entry.id, f"no target {entry.target!r} in the configuration")
            for target in self.targets.values():
                while self._slots.get(target.name, 0) < target.concurrency:
                    batch = self.outbox.lease_due(exclude=set(self._in_flight), lease_seconds=LEASE_SECONDS,
                                                  limit=max(1, target.adapter.batch_size), target=target.name)
                    if not batch:
                        break
                    self._slots[target.name] = self._slots.get(target.name, 0) + 1
                    self._last_start[target.name] = time.monotonic()
                    for entry in batch:
                        self._in_flight[entry.id] = target.name
                    self._pool.submit(self._deliver_batch, target, batch)
                    started += len(batch)
        return started

    def _deliver_batch(self, target: Target, entries: list[Entry]) -> None:
        works: list[Path] = []
        try:
            items, ready = [], []
            for entry in entries:
                try:
                    item = self._prepare(target, entry, works)
                except Exception as err:
                    self._apply(target, entry, err, 0.0)
                    continue
                if item is not None:
                    items.append(item)
                    ready.append(entry)
            if not items:
                return
            started = time.monotonic()
            outcomes: list
            try:
                outcomes = target.adapter.deliver_batch(items)
                if len(outcomes) != len(items):
                    raise RuntimeError(f"{len(outcomes)} outcomes for {len(items)} items")
            except Exception as err:          # the adapter's own failure: every item shares it
                outcomes = [err] * len(items)
            elapsed = time.monotonic() - started
            for entry, outcome in zip(ready, outcomes):
                self._apply(target, entry, outcome, elapsed)
        finally:
            for work in works:
                work.unlink(missing_ok=True)
            with self._lock:
                for entry in entries:
                    self._in_flight.pop(entry.id, None)
                self._slots[target.name] -= 1

    def _prepare(self, target: Target, entry: Entry, works: list[Path]) -> Delivery | None:
        """The Delivery for a leased entry (None: dead-lettered for its age); its
        filtered copy, if any, is written to the work folder and listed in ``works``."""
        if self.clock() - entry.created > target.max_age:
            self.outbox.dead(entry.id, f"older than {target.max_age / 3600:g} h; last error: "
                                       f"{entry.last_error}")
            self.delivery_ended.emit(DeliveryEnded(target.name, "dead"))
            return None
        image_id, path, info = entry.image_id, entry.file, entry.image_info
        try:
            spec = filter_spec.parse(entry.filter)
        except ValueError as err:       # stored by an older version: no retry can fix it
            raise PermanentError(str(err)) from None
        if not spec.is_raw:
            # A filtered copy is another image: its own id, hence its own UIDs and names.
            # The id derives from the stored text, so it never changes for an entry.
            image_id = str(uuid.uuid5(uuid.UUID(entry.image_id), entry.filter))
            data, info = filtered_image(entry.file, entry.image_info, spec, budget=self.pixel_budget)
            work = self.work_dir / f"{entry.id}-{image_id}.png"
            works.append(work)
            work.write_bytes(data)
            path = work
        item = Delivery(entry_id=entry.id, target=target.name, image_id=image_id, png_path=path,
                        image_info=info, context=entry.context, attempt=entry.attempts,
                        progress=entry.progress,
                        recorder=functools.partial(self.outbox.record_step, entry.id),
                        expired=entry.state == "committing")     # leased past its confirmation's deadline
        if target.deid is not None:     # a de-identified copy: see forward.deidentify
            item = target.deid.apply(item)
        return item

    def _apply(self, target: Target, entry: Entry, outcome: dict | BaseException, elapsed: float) -> None:
        """Record one entry's outcome in the outbox (see platforms.base for what each means)."""
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            if not isinstance(outcome, dict):
                raise TypeError(f"the adapter returned {type(outcome).__name__}, not a receipt")
            self.outbox.delivered(entry.id, outcome)
            self.delivery_ended.emit(DeliveryEnded(target.name, "delivered", elapsed))
            log.info("delivered %s to %s (entry %d, attempt %d, %.0f ms)", entry.image_id, target.name,
                     entry.id, entry.attempts, elapsed * 1e3)
        except AwaitingConfirmation as err:
            self.delivery_ended.emit(DeliveryEnded(target.name, "committing", elapsed))
            if self.outbox.await_confirmation(entry.id, self.clock() + err.seconds):
                log.info("stored %s on %s, awaiting its confirmation up to %.0f s (entry %d, %.0f ms): %s",
                         entry.image_id, target.name, err.seconds, entry.id, elapsed * 1e3, err)
            else:
                log.info("stored %s on %s, and confirmed already (entry %d)", entry.image_id, target.name,
                         entry.id)
        except PermanentError as err:
            self.outbox.dead(entry.id, str(err))
            self.delivery_ended.emit(DeliveryEnded(target.name, "dead", elapsed or None))
            log.error("forward to %s failed for good (entry %d): %s", target.name, entry.id, err)
        except Exception as err:
            retryable = isinstance(err, RetryableError)
            if not retryable:
                log.error("forward to %s: unexpected error (entry %d)", target.name, entry.id, exc_info=err)
            message = str(err) if retryable else f"{type(err).__name__}: {err}"
            if entry.attempts >= target.max_attempts:
                self.outbox.dead(entry.id, f"gave up after {entry.attempts} attempts: {message}")
                self.delivery_ended.emit(DeliveryEnded(target.name, "dead", elapsed or None))
                log.error("forward to %s dead-lettered (entry %d): %s", target.name, entry.id, message)
                return
            retry_after = getattr(err, "retry_after", None)
            delay = retry_after if retry_after is not None else backoff(
                entry.attempts, base=target.backoff_base, cap=target.backoff_max)
            self.outbox.retry_later(entry.id, self.clock() + delay, message)
            self.delivery_ended.emit(DeliveryEnded(target.name, "retry", elapsed or None))
            log.warning("forward to %s failed (entry %d, attempt %d), retry in %.1f s: %s",
                        target.name, entry.id, entry.attempts, delay, message)


def build_targets(configs: list[dict], *, state_dir: Path | None = None,
                  dicom: DicomSettings | None = None) -> dict[str, Target]:
    """Targets from the [[forward.targets]] tables; ValueError names what is wrong.

    ``state_dir`` holds the pseudonym key of targets with ``deidentify`` on;
    ``dicom`` is this station ([dicom]: AE title, timeout) for kind "dimse"."""
    targets = {}
    outbox_keys = {"concurrency": int, "max_attempts": int, "max_age_hours": float,
                   "backoff_base": float, "backoff_max": float}
    for i, raw in enumerate(configs):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw.get("kind"):
            raise ValueError(f"forward.targets[{i}] needs a name and a kind")
        name = raw["name"]
        if name in targets:
            raise ValueError(f"forward.targets: the name {name!r} is used twice")
        options = {k: v for k, v in raw.items() if k not in outbox_keys and k not in ("name", "kind")
                   and k not in deidentify.OPTION_KEYS}
        extra = {}
        for key, kind in outbox_keys.items():
            if key in raw:
                value = raw[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ValueError(f"forward target {name!r}: {key} must be a positive number")
                extra[key] = kind(value)
        station = {}
        if raw["kind"] == "dimse" and dicom is not None:
            station = {"ae_title": dicom.ae_title, "timeout": dicom.timeout_seconds}
        adapter = open_adapter(raw["kind"], name=name, options=options, **station)
        targets[name] = Target(
            name=name, kind=raw["kind"], adapter=adapter, concurrency=extra.get("concurrency", 2),
            max_attempts=extra.get("max_attempts", 20), max_age=extra.get("max_age_hours", 72.0) * 3600,
            backoff_base=extra.get("backoff_base", 2.0), backoff_max=extra.get("backoff_max", 600.0),
            deid=deidentify.policy(name, raw["kind"], raw, state_dir=state_dir))
    return targets
