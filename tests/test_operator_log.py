"""The log an operator reads: one line for each event that matters."""
from __future__ import annotations

import logging
import re

from tests.support.forward import target
from tests.support.loopback import wait_until
from tests.support.modality import (
    control,
    create_session,
    device_of,
    expose,
    subscribe_status,
)


def test_one_line_per_event_that_matters(serve, datamint, caplog):
    caplog.set_level(logging.INFO)
    fake, url = datamint
    fake.faults.fail(1, status=503, path="/resources", method="POST")
    srv = serve(forward={"targets": [target(url)], "rules": [{"target": "dm"}]})
    dev = device_of(srv, "Simradix Select")["deviceId"]
    first = len(caplog.records)                 # what the start logged is not counted
    for action in ("unplug-sensor", "plug-sensor", "unplug", "plug"):
        assert control(srv, dev, action).status_code == 200
    sid = create_session(srv, dev)["sessionId"]
    _, info = expose(srv, sid, dev, subscribe_status(srv, sid))
    assert wait_until(lambda: len(fake.resources) == 1)
    # Datamint holds the bytes before the daemon has its answer: wait for the daemon's own line.
    assert wait_until(lambda: any(r.getMessage().startswith(f"delivered {info['id']} to dm")
                                  for r in caplog.records))
    assert srv.http.delete(srv.url(f"/api/dsio/modality/v1/acquisition/{sid}")).status_code in (200, 204)

    image = info["id"]
    patterns = (rf"device .* \({dev}\): NoSensor", rf"device .* \({dev}\): sensor .* attached",
                rf"device .* \({dev}\) removed", rf"device .* \({dev}\) added",
                rf"session {sid} created on device {dev}",
                rf"session {sid}: image {image} \(\d+x\d+\) ready",
                rf"queued image {image} for dm \(raw\)",
                r"forward to dm failed \(entry \d+, attempt 1\), retry in",
                rf"delivered {image} to dm \(entry \d+, attempt 2",
                rf"session {sid} deleted with 1 images")
    # The "ready" line is written after NewImage is announced, by the exposure's own thread: wait for each.
    logged = lambda: [r.getMessage() for r in caplog.records[first:]]    # noqa: E731
    assert wait_until(lambda: all(any(re.search(p, line) for line in logged()) for p in patterns)), logged()
    lines = logged()
    for pattern in patterns:
        matching = [line for line in lines if re.search(pattern, line)]
        assert len(matching) == 1, (pattern, lines)
