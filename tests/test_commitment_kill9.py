"""A REAL kill -9 of `sensord serve` between the C-STORE and Orthanc's storage commitment report.

Orthanc sends its report on a new association to 127.0.0.1:``modality_port``; there a
relay (tests/support/tcp_relay.py) holds it, so the daemon is killed while its image is
stored and asked for (``stored`` and ``commitment`` recorded) but not committed: either
still inside the delivery (waiting for a report on its own association) or already
waiting in the outbox as ``committing``. The held report is dropped, as it would be by a
dead daemon's port. Started again on the same state folder, the daemon asks again (no
second C-STORE: ``stored`` is kept) and the relay now lets the report through to its
listener: the entry ends delivered once, and Orthanc holds one instance, with the pixels.
"""
from __future__ import annotations

import json
import signal
import sqlite3

import pytest

from sensord.daemon.forward.platforms import dicom
from sensord.filters.pixel_hash import pixel_hash
from tests.support.daemon_process import daemon_process
from tests.support.loopback import free_port, wait_until
from tests.support.modality import acquire_one
from tests.support.orthanc import MODALITY_AE, ORTHANC_AE, archive, orthanc  # noqa: F401  (fixtures)
from tests.support.tcp_relay import HoldingRelay

pytestmark = pytest.mark.process

OUTBOX = "/api/sensord/v1/outbox"


def config(orthanc_port: int, listen_port: int) -> str:
    return f"""
[drivers]
urls = ["sim://?models=select0&time_scale=0.01"]
[dicom]
ae_title = "{MODALITY_AE}"
listen_host = "127.0.0.1"
listen_port = {listen_port}
timeout_seconds = 10
[[forward.targets]]
name = "pacs"
kind = "dimse"
host = "127.0.0.1"
port = {orthanc_port}
called_ae = "{ORTHANC_AE}"
storage_commitment = true
commitment_timeout_seconds = 120
backoff_base = 0.2
backoff_max = 0.5
[[forward.rules]]
target = "pacs"
source = "acquired"
"""


def on_disk(state) -> list[tuple[str, dict]]:
    """(state, progress) of the outbox entries, read from the file the daemon left."""
    [db_path] = list(state.rglob("outbox.db"))
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [(row[0], json.loads(row[1]) if row[1] else {})
                for row in db.execute("SELECT state, progress FROM entries")]
    finally:
        db.close()


@pytest.mark.parametrize("kill_when", ["report-held", "committing"])
def test_kill_9_between_store_and_commitment_ends_delivered_once(tmp_path, archive, kill_when):
    listen = free_port()
    with HoldingRelay(archive.modality_port, listen) as relay, \
            daemon_process(tmp_path, config(archive.dicom_port, listen)) as srv:
        info = acquire_one(srv)
        assert relay.held.wait(30), f"Orthanc sent no report:\n{srv.log()}"
        if kill_when == "committing":
            assert wait_until(lambda: [s for s, _ in on_disk(srv.state)] == ["committing"], 15), on_disk(srv.state)
        srv.signal(signal.SIGKILL)
        assert srv.wait(timeout=10) == -signal.SIGKILL
        [(state, progress)] = on_disk(srv.state)
        assert set(progress) == {"stored", "commitment"}, progress
        assert state == "committing" if kill_when == "committing" else state in ("pending", "committing")
        assert len(archive.instances()) == 1
        relay.release()                                     # the held report is lost with the process

        srv.start()                                         # the same state folder and config
        assert wait_until(lambda: srv.http.get(srv.url(OUTBOX)).json()["counts"] == {"delivered": 1}, 60), \
            (srv.http.get(srv.url(OUTBOX)).json(), srv.log())
        [entry] = srv.http.get(srv.url(OUTBOX)).json()["entries"]
        [(_, final)] = on_disk(srv.state)

    assert final["stored"] == progress["stored"]            # not stored a second time
    assert entry["receipt"]["transactionUid"] == final["commitment"]["transaction"]
    assert final["commitment"]["transaction"] != progress["commitment"]["transaction"]     # asked again
    [orthanc_id] = archive.instances()
    ds = archive.instance_file(orthanc_id)
    assert ds.SOPInstanceUID == dicom.instance_uid(info["id"]) == entry["receipt"]["sopInstanceUid"]
    assert pixel_hash(ds.pixel_array, alg=info["pixelHash"]["alg"])["hash"] == info["pixelHash"]["hash"].lower()
