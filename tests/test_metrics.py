"""/metrics through the real server: who may scrape it, that it parses as the
Prometheus text format, and that its values move with real events (an
exposure on the simulated sensor, a delivery to a fake Datamint, a failed
login, an upload, an outbox entry left waiting)."""
from __future__ import annotations

import functools
import re
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from sensord.daemon.api.auth import hash_password
from sensord.daemon.metrics import Metrics, Readings
from sensord.daemon.store.pixel_budget import BudgetBusy, PixelBudget
from tests.support import images
from tests.support.filters_api import upload
from tests.support.forward import target
from tests.support.loopback import closed_port_url, free_port, wait_until
from tests.support.modality import API as MODALITY
from tests.support.modality import create_session, device_of, expose, subscribe_status
from tests.support.server import CLIENT, CLIENT_PASSWORD, PASSWORD, USER, default_users

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "/api/sensord/v1"
SCRAPER, SCRAPER_PASSWORD = "prometheus", "a scraper's long passphrase"


@functools.cache
def _scraper_hash() -> str:
    return hash_password(SCRAPER_PASSWORD)


def with_scraper(**sections) -> dict:
    """Settings sections with a ``metrics`` user besides the tests' operator and client."""
    return {"auth": {"users": {**default_users(), SCRAPER: _scraper_hash()},
                     "roles": {USER: "operator", SCRAPER: "metrics"}}, **sections}


class Scrape:
    """One scrape, parsed with prometheus_client's own parser."""

    def __init__(self, text: str):
        self.text = text
        self.samples: dict[tuple[str, frozenset], float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def has(self, name: str, **labels) -> bool:
        return (name, frozenset(labels.items())) in self.samples

    def get(self, name: str, **labels) -> float:
        """The sample's value; 0 for a labelled series not seen yet (a counter never incremented)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def labels_of(self, name: str) -> list[dict]:
        return [dict(labels) for (n, labels) in self.samples if n == name]


def scrape(srv, auth=None) -> Scrape:
    response = requests.get(srv.url("/metrics"), auth=auth or (SCRAPER, SCRAPER_PASSWORD), timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    return Scrape(response.text)


def test_values_move_with_an_exposure_a_delivery_an_upload_and_a_failed_login(serve, datamint):
    fake, url = datamint
    srv = serve(**with_scraper(forward={"targets": [target(url)],
                                        "rules": [{"target": "dm", "source": "acquired", "filter": "raw"}]}))
    before = scrape(srv)
    assert before.types["sensord_deliveries"] == "counter"
    assert before.types["sensord_readout_to_new_image_seconds"] == "histogram"
    assert before.get("sensord_devices") == 3 and before.get("sensord_sessions") == 0
    # A configured target shows every state at 0 before anything is queued: alerts see 0, not nothing.
    assert before.has("sensord_outbox_entries", target="dm", state="pending")
    assert before.get("sensord_outbox_oldest_age_seconds", target="dm", state="pending") == 0

    dev = device_of(srv, "Simradix Select")["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    stream = subscribe_status(srv, sid)
    _, info = expose(srv, sid, dev, stream)
    during = scrape(srv)
    assert during.get("sensord_event_subscribers") >= 1 and during.get("sensord_sessions") == 1
    stream.close()
    # Counted by the exposure's thread once NewImage is out, and a delivery once the platform has
    # answered: each counter, then its histogram. Wait for the histograms.
    assert wait_until(lambda: scrape(srv).get("sensord_readout_to_new_image_seconds_count")
                      == before.get("sensord_readout_to_new_image_seconds_count") + 1)
    assert wait_until(lambda: scrape(srv).get("sensord_deliveries_total", target="dm", result="delivered") == 1
                      and scrape(srv).get("sensord_delivery_duration_seconds_count", target="dm") == 1)
    assert len(fake.resources) == 1

    requests.get(srv.url(MODALITY + "/devices"), auth=(USER, "not the password"), timeout=10)
    assert upload(srv).status_code == 201

    after = scrape(srv)
    assert after.get("sensord_exposures_total", result="image") == before.get("sensord_exposures_total",
                                                                               result="image") + 1
    count = after.get("sensord_readout_to_new_image_seconds_count")
    assert count == before.get("sensord_readout_to_new_image_seconds_count") + 1
    assert after.get("sensord_readout_to_new_image_seconds_bucket", le="+Inf") == count
    assert after.get("sensord_readout_to_new_image_seconds_sum") > 0
    assert after.get("sensord_delivery_duration_seconds_count", target="dm") == 1
    assert after.get("sensord_outbox_entries", target="dm", state="pending") == 0
    assert after.get("sensord_login_failures_total") == before.get("sensord_login_failures_total") + 1
    assert after.get("sensord_http_refused_total", status="401") == \
        before.get("sensord_http_refused_total", status="401") + 1
    assert after.get("sensord_store_resources") == before.get("sensord_store_resources") + 1
    assert after.get("sensord_store_bytes") > before.get("sensord_store_bytes")
    # Requests are labelled by their URL rule, never by the path that holds the ids.
    created = after.get("sensord_http_request_duration_seconds_count",
                        route=MODALITY + "/acquisition", method="POST", status="201")
    assert created == 1
    routes = {labels["route"] for labels in after.labels_of("sensord_http_request_duration_seconds_count")}
    assert MODALITY + "/acquisition/<sid>/images/<iid>" in routes
    assert sid not in after.text and info["id"] not in after.text


def test_an_outbox_entry_left_waiting_shows_its_depth_and_age(serve):
    srv = serve(**with_scraper(forward={"targets": [target(closed_port_url(), backoff_base=120,
                                                           backoff_max=600)]}))
    resource = upload(srv).json()
    queued_after = time.time()
    queued = srv.http.post(srv.url(ADMIN + "/forward"), json={"target": "dm", "resourceId": resource["id"]})
    assert queued.status_code == 202, queued.text
    assert wait_until(lambda: scrape(srv).get("sensord_deliveries_total", target="dm", result="retry") == 1)
    waiting = scrape(srv)
    assert waiting.get("sensord_outbox_entries", target="dm", state="pending") == 1
    age = waiting.get("sensord_outbox_oldest_age_seconds", target="dm", state="pending")
    assert 0 <= age <= time.time() - queued_after + 1
    # Backing off after a failure is not being stuck: still ready.
    assert requests.get(srv.url("/readyz"), timeout=10).status_code == 200


def test_operators_and_the_metrics_role_may_scrape_and_no_one_else(serve):
    srv = serve(**with_scraper())
    assert scrape(srv, auth=(USER, PASSWORD)).get("sensord_devices") == 3
    assert scrape(srv).get("sensord_devices") == 3
    as_client = requests.get(srv.url("/metrics"), auth=(CLIENT, CLIENT_PASSWORD), timeout=10)
    assert as_client.status_code == 403 and "metrics or operator role" in as_client.json()["message"]
    assert requests.get(srv.url("/metrics"), timeout=10).status_code == 401
    # The metrics role reads /metrics and nothing else.
    for path in (MODALITY, MODALITY + "/devices", "/api/dsio/filters/v1", ADMIN + "/status", ADMIN + "/outbox", "/"):
        refused = requests.get(srv.url(path), auth=(SCRAPER, SCRAPER_PASSWORD), timeout=10)
        assert refused.status_code == 403, (path, refused.status_code)
        assert "has the metrics role" in refused.json()["message"]
    posted = requests.post(srv.url("/api/dsio/filters/v1/images"), auth=(SCRAPER, SCRAPER_PASSWORD),
                           files=images.upload_files(images.image_info(), images.png16(images.raw_image(48, 64))),
                           timeout=10)
    assert posted.status_code == 403


def test_openmetrics_when_the_scraper_prefers_it(serve):
    srv = serve(**with_scraper())
    response = requests.get(srv.url("/metrics"), auth=(SCRAPER, SCRAPER_PASSWORD), timeout=10,
                            headers={"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_each_daemon_in_a_process_counts_its_own(serve, tmp_path):
    first = serve(state_dir=tmp_path / "one", **with_scraper())
    second = serve(state_dir=tmp_path / "two", **with_scraper())
    failures = scrape(second).get("sensord_login_failures_total")
    for _ in range(2):
        requests.get(first.url(MODALITY), auth=(CLIENT, "wrong"), timeout=10)
    assert scrape(first).get("sensord_login_failures_total") == 2
    assert scrape(second).get("sensord_login_failures_total") == failures == 0


def test_every_name_the_readme_gives_is_served(serve):
    """The README's Fleets section (its table, its alert rules) names only series a scrape has,
    with MPPS and a worklist configured (neither answering: nothing listens there)."""
    nowhere = free_port()
    srv = serve(**with_scraper(worklist={"host": "127.0.0.1", "port": nowhere, "called_ae": "RIS"},
                               mpps={"host": "127.0.0.1", "port": nowhere, "called_ae": "RIS"},
                               forward={"targets": [target(closed_port_url())]}))
    readme = (ROOT / "README.md").read_text()
    fleets = readme[readme.index("## Fleets"):readme.index("## Layout")]
    named = set(re.findall(r"\b(?:sensord|process)_[a-z_]*[a-z]", fleets))
    assert {"sensord_outbox_oldest_age_seconds", "sensord_deliveries_total"} <= named
    assert wait_until(lambda: scrape(srv).has("sensord_worklist_up"))
    served = scrape(srv)
    names = ({name for name, _ in served.samples} | set(served.types)
             | {f"{family}_total" for family, kind in served.types.items() if kind == "counter"})
    assert named - names == set()
    assert served.get("sensord_worklist_up") == 0 and served.get("sensord_worklist_items") == 0
    assert served.get("sensord_mpps_messages", state="pending") == 0


def test_budget_waits_and_a_reading_that_fails(caplog):
    budget = PixelBudget(1 << 20, wait_seconds=0.05)

    def closed():
        raise RuntimeError("the outbox is not open")

    metrics = Metrics(Readings(clock=time.time, budget_waits=lambda: budget.waits,
                               budget_refusals=lambda: budget.refusals, outbox=closed, targets=lambda: ["dm"]))
    with budget.reserve(1 << 20, what="a filter"):
        with pytest.raises(BudgetBusy):
            with budget.reserve(1, what="a decode"):
                pass
    body, content_type = metrics.render()
    parsed = Scrape(body.decode())
    assert parsed.get("sensord_pixel_budget_waits_total") == 1
    assert parsed.get("sensord_pixel_budget_refusals_total") == 1
    # A reading that fails (a service closing) leaves its series at 0, logged once; the scrape goes on.
    assert parsed.get("sensord_outbox_entries", target="dm", state="pending") == 0
    metrics.render()
    assert caplog.text.count("cannot read outbox") == 1
