"""The outbox's committing state: entered when the archive has the image and its storage
commitment is awaited, left by a report (delivered, or resent) or by the deadline (stored
again, asked again); with the dimse adapter and a real pynetdicom archive on loopback."""
from __future__ import annotations

import pytest

from sensord.daemon.forward.platforms import dimse as dimse_platform
from sensord.daemon.forward.delivery import Forwarder, Target
from sensord.daemon.forward.outbox import Outbox
from sensord.daemon.forward.outbox_commitment import Settlement
from sensord.daemon.forward.platforms import open_adapter
from tests.support.delivery import make_delivery
from tests.support.loopback import wait_until
from tests.support.resume import Clock
from tests.support.storage_scp import StorageArchive

TIMEOUT = 60.0       # commitment_timeout_seconds, on the fake clock


REPORT_WAIT = 20.0      # a report ends the wait when it comes: generous, for a loaded machine
SILENT_WAIT = 0.5       # an archive that stays silent costs the whole wait: short where none comes


@pytest.fixture(autouse=True)
def report_wait(monkeypatch):
    """report_wait(seconds): how long the adapter waits for a report on its own association."""
    def wait(seconds: float) -> None:
        monkeypatch.setattr(dimse_platform, "SAME_ASSOCIATION_WAIT", seconds)
    wait(REPORT_WAIT)
    return wait


@pytest.fixture
def box(tmp_path):
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox", clock=clock)
    outbox.start()
    yield outbox, clock
    outbox.close()


def queue(outbox, tmp_path) -> int:
    item = make_delivery(tmp_path, height=48, width=64)
    [entry] = outbox.add([("pacs", "raw")], image_id=item.image_id, image_info=item.image_info,
                         context=item.context, png_path=item.png_path)
    return entry


def forwarder_for(outbox, clock, archive, tmp_path) -> Forwarder:
    adapter = open_adapter("dimse", name="pacs", timeout=5, options=archive.options(
        storage_commitment=True, commitment_timeout_seconds=TIMEOUT))
    forwarder = Forwarder(outbox, {"pacs": Target(name="pacs", kind="dimse", adapter=adapter, backoff_base=1,
                                                  backoff_max=1)}, work_dir=tmp_path / "work", clock=clock)
    forwarder.start()
    return forwarder


def round_(forwarder) -> None:
    forwarder.tick()
    assert wait_until(lambda: forwarder.in_flight == 0, 15)


def test_no_report_waits_committing_then_stores_and_asks_again(box, tmp_path, report_wait):
    outbox, clock = box
    entry = queue(outbox, tmp_path)
    with StorageArchive(commit=["silent", "commit"]) as archive:
        forwarder = forwarder_for(outbox, clock, archive, tmp_path)
        try:
            report_wait(SILENT_WAIT)
            round_(forwarder)
            report_wait(REPORT_WAIT)
            waiting = outbox.get(entry)
            assert waiting.state == "committing" and waiting.next_attempt == clock.now + TIMEOUT
            assert outbox.counts() == {"committing": 1}
            assert set(waiting.progress) == {"stored", "commitment"}
            clock.now += TIMEOUT - 1
            round_(forwarder)                                   # not yet due
            assert outbox.get(entry).state == "committing" and len(archive.actions) == 1
            clock.now += 2
            round_(forwarder)                                   # past the deadline: expired
            done = outbox.get(entry)
        finally:
            forwarder.close()
        assert done.state == "delivered", done.last_error
        assert len(archive.stores) == 2 and len(archive.actions) == 2    # stored again, asked again
        assert done.receipt["transactionUid"] == archive.actions[1][0]


def test_a_failure_in_the_report_resends_at_once(box, tmp_path):
    outbox, clock = box
    entry = queue(outbox, tmp_path)
    with StorageArchive(commit=["fail", "commit"]) as archive:
        forwarder = forwarder_for(outbox, clock, archive, tmp_path)
        try:
            round_(forwarder)
            failed = outbox.get(entry)
            assert failed.state == "pending" and failed.next_attempt == clock.now
            assert "did not commit" in failed.last_error and "0x0110" in failed.last_error
            assert failed.progress == {}                        # stored and commitment forgotten
            round_(forwarder)                                   # due now, no clock change
            done = outbox.get(entry)
        finally:
            forwarder.close()
        assert done.state == "delivered" and len(archive.stores) == 2


# -- the outbox's own transitions ---------------------------------------------------

def commit_steps(outbox, entry: int, transaction: str, sop: str = "1.2.3") -> None:
    outbox.record_step(entry, "stored", {"sop": sop, "transferSyntax": "jpeg-ls-lossless"})
    outbox.record_step(entry, "commitment", {"transaction": transaction})


def committing(outbox, clock, tmp_path, transaction="2.25.7") -> int:
    entry = queue(outbox, tmp_path)
    [leased] = outbox.lease_due(exclude=set(), limit=5, lease_seconds=600)
    commit_steps(outbox, leased.id, transaction)
    assert outbox.await_confirmation(leased.id, clock.now + TIMEOUT)
    return entry


def test_settle_delivers_or_resends_what_the_transaction_names(box, tmp_path):
    outbox, clock = box
    kept, lost = committing(outbox, clock, tmp_path), committing(outbox, clock, tmp_path)
    decide = {kept: Settlement(receipt={"ok": 1}), lost: Settlement(error="no", forget=("stored", "commitment"))}
    settled = outbox.settle("commitment", "transaction", "2.25.7", lambda e: decide[e.id])
    assert sorted(e.id for e, _ in settled) == sorted([kept, lost])
    assert outbox.get(kept).state == "delivered" and outbox.get(kept).receipt == {"ok": 1}
    resend = outbox.get(lost)
    assert (resend.state, resend.last_error, resend.progress, resend.next_attempt) == ("pending", "no", {}, clock.now)
    # Settled once: the delivered one is done, the resent one no longer names the transaction.
    assert outbox.settle("commitment", "transaction", "2.25.7", lambda e: Settlement(receipt={})) == []
    assert outbox.settle("commitment", "transaction", "2.25.999", lambda e: Settlement(receipt={})) == []


def test_a_report_before_the_wait_began_wins(box, tmp_path):
    """The listener may settle a leased entry before the forwarder marks it committing."""
    outbox, clock = box
    entry = queue(outbox, tmp_path)
    [leased] = outbox.lease_due(exclude=set(), limit=5, lease_seconds=600)
    commit_steps(outbox, entry, "2.25.8")
    outbox.settle("commitment", "transaction", "2.25.8", lambda e: Settlement(receipt={"ok": 1}))
    assert outbox.await_confirmation(entry, clock.now + TIMEOUT) is False
    assert outbox.get(entry).state == "delivered"


def test_past_its_deadline_a_committing_entry_is_leased_as_expired(box, tmp_path):
    outbox, clock = box
    entry = committing(outbox, clock, tmp_path)
    assert outbox.lease_due(exclude=set(), limit=5, lease_seconds=600) == []
    clock.now += TIMEOUT
    [leased] = outbox.lease_due(exclude=set(), limit=5, lease_seconds=600, target="pacs")
    assert leased.id == entry and leased.state == "committing"      # tells the forwarder it expired
    assert outbox.get(entry).state == "pending"


def test_a_restart_asks_again_for_what_was_awaited(box, tmp_path):
    outbox, clock = box
    entry = committing(outbox, clock, tmp_path)
    outbox.close()
    outbox.start()
    again = outbox.get(entry)
    assert (again.state, again.next_attempt) == ("pending", clock.now)     # not expired: asked again
    assert set(again.progress) == {"stored", "commitment"}


def test_an_operator_may_retry_or_drop_a_committing_entry(box, tmp_path):
    outbox, clock = box
    entry, other = committing(outbox, clock, tmp_path), committing(outbox, clock, tmp_path, transaction="2.25.9")
    assert outbox.retry(entry) and outbox.get(entry).state == "pending"
    assert outbox.drop(other) and outbox.get(other) is None
