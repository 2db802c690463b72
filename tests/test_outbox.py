"""The outbox and its delivery loop: durability, leases, backoff, dead letters, concurrency."""
from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid

import numpy as np
import pytest

from sensord import filters
from sensord.daemon.forward.delivery import (
    Forwarder,
    Target,
    backoff,
)
from sensord.daemon.forward.outbox import Outbox
from sensord.daemon.forward.platforms.base import (
    Adapter,
    PermanentError,
    RetryableError,
)
from tests.support import images


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


class Scripted(Adapter):
    """An adapter whose outcomes a test dictates, recording what it was given."""
    kind = "scripted"

    def __init__(self, outcomes=(), gate: threading.Event | None = None):
        super().__init__(name="scripted", options={})
        self.outcomes = list(outcomes)
        self.calls = []
        self.pngs = []
        self.gate = gate
        self.active = self.peak = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def wait_active(self, count: int, timeout: float = 5.0) -> bool:
        """Block until ``count`` deliveries are inside ``deliver`` at once."""
        with self._changed:
            return self._changed.wait_for(lambda: self.active == count, timeout)

    def deliver(self, item):
        with self._lock:
            self.calls.append(item)
            self.pngs.append(item.png_path.read_bytes())
            self.active += 1
            self.peak = max(self.peak, self.active)
            self._changed.notify_all()
        try:
            if self.gate is not None:
                self.gate.wait(5)
            outcome = self.outcomes.pop(0) if self.outcomes else {"id": item.image_id}
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        finally:
            with self._lock:
                self.active -= 1


@pytest.fixture
def box(tmp_path):
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox", clock=clock)
    outbox.start()
    yield outbox, clock
    outbox.close()


def queue_one(outbox, tmp_path, image_id="img-1", pairs=(("t", "raw"),)):
    src = tmp_path / f"{image_id}-src.png"
    src.write_bytes(images.png16(images.raw_image(20, 30)))
    return outbox.add(list(pairs), image_id=image_id,
                      image_info={"lutInfo": None, "pixelHash": {"alg": "MD5", "hash": "0" * 32}},
                      context={"patientId": "P"}, png_path=src)


def run(forwarder, outbox, timeout=5.0):
    """Tick until nothing is in flight."""
    forwarder.tick()
    deadline = time.monotonic() + timeout
    while forwarder.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert forwarder.in_flight == 0


def make_forwarder(outbox, tmp_path, adapter, clock, **target):
    fw = Forwarder(outbox, {"t": Target(name="t", kind="scripted", adapter=adapter, **target)},
                   work_dir=tmp_path / "work", clock=clock)
    fw.start()
    return fw


def test_add_is_durable_and_once_per_pair(box, tmp_path):
    outbox, _ = box
    ids = queue_one(outbox, tmp_path, pairs=[("t", "raw"), ("u", "select:smooth")])
    assert len(ids) == 2
    assert queue_one(outbox, tmp_path, pairs=[("t", "raw")]) == []      # already queued
    assert (outbox.files / "img-1.png").read_bytes() == (tmp_path / "img-1-src.png").read_bytes()
    assert outbox.counts() == {"pending": 2}
    outbox.close()
    again = Outbox(tmp_path / "outbox")
    again.start()
    assert [e.image_id for e in again.list()] == ["img-1", "img-1"]
    again.close()


def test_leases_count_attempts_and_a_restart_voids_them(box, tmp_path):
    outbox, clock = box
    [entry_id] = queue_one(outbox, tmp_path)
    [leased] = outbox.lease_due(exclude=set(), limit=5, lease_seconds=600)
    assert leased.attempts == 1
    assert outbox.lease_due(exclude=set(), limit=5, lease_seconds=600) == []   # leased: not due
    outbox.close()                         # a crash mid-delivery
    outbox.start()
    [again] = outbox.lease_due(exclude=set(), limit=5, lease_seconds=600)
    assert again.id == entry_id and again.attempts == 2


def test_delivery_marks_delivered_and_frees_the_file(box, tmp_path):
    outbox, clock = box
    adapter = Scripted([{"id": "remote-1"}])
    fw = make_forwarder(outbox, tmp_path, adapter, clock)
    [entry_id] = queue_one(outbox, tmp_path)
    run(fw, outbox)
    entry = outbox.get(entry_id)
    assert entry.state == "delivered" and entry.receipt == {"id": "remote-1"}
    assert adapter.calls[0].png_path.name == "img-1.png" and adapter.calls[0].context == {"patientId": "P"}
    assert not (outbox.files / "img-1.png").exists()
    fw.close()


def test_retry_after_is_honoured_and_backoff_grows(box, tmp_path):
    outbox, clock = box
    adapter = Scripted([RetryableError("busy", retry_after=7), RetryableError("down"),
                        RetryableError("down"), {"id": "ok"}])
    fw = make_forwarder(outbox, tmp_path, adapter, clock, backoff_base=2.0, backoff_max=600.0)
    [entry_id] = queue_one(outbox, tmp_path)
    run(fw, outbox)
    entry = outbox.get(entry_id)
    assert entry.state == "pending" and entry.next_attempt == clock.now + 7 and entry.last_error == "busy"
    waits = []
    for _ in range(2):
        clock.now = outbox.get(entry_id).next_attempt
        run(fw, outbox)
        waits.append(outbox.get(entry_id).next_attempt - clock.now)
    assert 2.0 <= waits[0] <= 4.0 and 4.0 <= waits[1] <= 8.0       # 4 s then 8 s, half of it random
    clock.now += 10
    run(fw, outbox)
    assert outbox.get(entry_id).state == "delivered"
    assert [c.attempt for c in adapter.calls] == [1, 2, 3, 4]
    fw.close()


def test_permanent_errors_and_too_many_attempts_dead_letter(box, tmp_path):
    outbox, clock = box
    adapter = Scripted([PermanentError("HTTP 403 forbidden")] + [RetryableError("down")] * 3)
    fw = make_forwarder(outbox, tmp_path, adapter, clock, max_attempts=3)
    [a] = queue_one(outbox, tmp_path, "img-a")
    run(fw, outbox)
    assert outbox.get(a).state == "dead" and "403" in outbox.get(a).last_error
    [b] = queue_one(outbox, tmp_path, "img-b")
    for _ in range(3):
        run(fw, outbox)
        clock.now += 10_000
    entry = outbox.get(b)
    assert entry.state == "dead" and "3 attempts" in entry.last_error
    # An operator retries it: pending again, due now, and this time it goes through.
    assert outbox.retry(b)
    run(fw, outbox)
    assert outbox.get(b).state == "delivered"
    assert outbox.drop(a) and outbox.get(a) is None and not outbox.drop(a)
    fw.close()


def test_old_entries_are_dead_lettered(box, tmp_path):
    outbox, clock = box
    fw = make_forwarder(outbox, tmp_path, Scripted(), clock, max_age=3600.0)
    [entry_id] = queue_one(outbox, tmp_path)
    clock.now += 3601
    run(fw, outbox)
    assert outbox.get(entry_id).state == "dead" and "older than 1 h" in outbox.get(entry_id).last_error
    fw.close()


def test_concurrency_limit_per_target(box, tmp_path):
    outbox, clock = box
    gate = threading.Event()
    adapter = Scripted(gate=gate)
    fw = make_forwarder(outbox, tmp_path, adapter, clock, concurrency=2)
    for i in range(5):
        queue_one(outbox, tmp_path, f"img-{i}")
    assert fw.tick() == 2 and fw.tick() == 0          # two in flight, the rest wait
    # Both workers inside the adapter before the gate opens: the peak is then 2
    # whatever the scheduler does, not only when the second thread wins a race.
    assert adapter.wait_active(2)
    gate.set()
    deadline = time.monotonic() + 5
    while outbox.counts().get("delivered", 0) < 5 and time.monotonic() < deadline:
        fw.tick()
        time.sleep(0.01)
    assert outbox.counts() == {"delivered": 5} and adapter.peak == 2
    fw.close()


def test_filtered_entries_are_their_own_image(box, tmp_path):
    outbox, clock = box
    adapter = Scripted()
    fw = make_forwarder(outbox, tmp_path, adapter, clock)
    queue_one(outbox, tmp_path, "0b7c2ad6-3f5e-4a6f-9a55-2e7f3cf3a001", pairs=[("t", "select:edgePro")])
    run(fw, outbox)
    [item] = adapter.calls
    assert item.image_id != "0b7c2ad6-3f5e-4a6f-9a55-2e7f3cf3a001" and not item.png_path.exists()
    # Its ImageInfo describes the filtered pixels, not the raw ones.
    assert item.image_info["filter"] == "select:edgePro"
    sent = images.decode(adapter.pngs[0])
    assert item.image_info["pixelHash"] == {"alg": "MD5", "hash": hashlib.md5(sent.astype("<u2").tobytes()).hexdigest()}
    fw.close()



def queue_with_lut_info(outbox, tmp_path, spec, lut_info):
    raw = images.raw_image(20, 30)
    src = tmp_path / "zero-lut-src.png"
    src.write_bytes(images.png16(raw))
    [entry_id] = outbox.add([("t", spec)], image_id=str(uuid.uuid4()), png_path=src, context={},
                            image_info={"lutInfo": lut_info, "pixelHash": {"alg": "SHA256", "hash": "0" * 64}})
    return entry_id, raw


@pytest.mark.parametrize("spec, name, kwargs", [
    ("unmap", None, {}),
    ("select:edgePro", "select", {"mode": "edgePro"}),
    ("supreme:general:70", "supreme", {"task": "general", "sharpness": 70.0}),
    ("ae:endodontic:50", "ae", {"task": "endodontic", "sharpness": 50.0}),
])
def test_an_all_zero_lut_info_is_no_lut_and_delivers_at_once(box, tmp_path, spec, name, kwargs):
    outbox, clock = box
    adapter = Scripted()
    fw = make_forwarder(outbox, tmp_path, adapter, clock)
    entry_id, raw = queue_with_lut_info(outbox, tmp_path, spec, dict(images.ZERO_LUT_INFO))
    run(fw, outbox)
    entry = outbox.get(entry_id)
    assert entry.state == "delivered", entry.last_error
    assert [call.attempt for call in adapter.calls] == [1]           # not retried
    # Filtered exactly as without a LUT (unmap: nothing to undo, the image itself).
    expected = raw if name is None else getattr(filters, name)(raw, lut=None, **kwargs)
    np.testing.assert_array_equal(images.decode(adapter.pngs[0]), expected)
    [item] = adapter.calls
    assert item.image_info["pixelHash"] == {"alg": "SHA256",
                                            "hash": hashlib.sha256(expected.astype("<u2").tobytes()).hexdigest()}
    fw.close()


def test_an_unusable_lut_info_is_dead_lettered_at_once(box, tmp_path):
    outbox, clock = box
    adapter = Scripted()
    fw = make_forwarder(outbox, tmp_path, adapter, clock)
    broken = {**images.LUT_INFO, "minimumGray": 418, "maximumGray": 418}    # maps nothing
    entry_id, _ = queue_with_lut_info(outbox, tmp_path, "select:smooth", broken)
    run(fw, outbox)
    entry = outbox.get(entry_id)
    assert entry.state == "dead" and entry.attempts == 1 and adapter.calls == []
    assert "select:smooth" in entry.last_error and "minimumGray" in entry.last_error
    fw.close()


def test_a_stored_spec_that_no_longer_parses_is_dead_lettered(box, tmp_path):
    outbox, clock = box
    fw = make_forwarder(outbox, tmp_path, Scripted(), clock)
    [entry_id] = queue_one(outbox, tmp_path, str(uuid.uuid4()), pairs=[("t", "blur:9")])
    run(fw, outbox)
    entry = outbox.get(entry_id)
    assert entry.state == "dead" and entry.attempts == 1 and "blur:9" in entry.last_error
    fw.close()


def test_backoff_bounds():
    rng = random.Random(1)
    for attempts, full in [(1, 2), (2, 4), (5, 32), (20, 600)]:
        for _ in range(50):
            assert full / 2 <= backoff(attempts, base=2, cap=600, rng=rng) <= full

