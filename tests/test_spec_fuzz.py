"""The vendor's Modality and Filters specs, fuzzed by schemathesis against the real server.

Every answer must be no server error, carry a content type the spec
documents, and match the spec's schema for its status. The ids in the paths
are mostly real ones (tests/support/spec_fuzz.py), so the answers checked are
those of real devices, sessions, images and resources.

Checks left out, deliberately: the spec lists too few status codes (no 400
for a bad body on most calls, no 401), and the daemon accepts more than the
spec's schemas on purpose (the vendor SDK's integer enums and PascalCase
names, README "What clients may send"), which schemathesis' negative-data
checks would call a failure.
"""
from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.support.modality import API
from tests.support.server import make_settings, running
from tests.support.spec_fuzz import FILTERS_API, spec_path, world

# The event streams never end by themselves (heartbeats): fuzzing one would
# hold its worker until the request timed out. tests/test_api_modality.py
# covers them through a real SSE client.
STREAMS = r"/subscribe$"

modality = schemathesis.openapi.from_path(spec_path("dsio-modality-v1.yaml")).exclude(path_regex=STREAMS)
filters = schemathesis.openapi.from_path(spec_path("dsio-filters-v1.yaml"))

FUZZ_SIM = "sim://?time_scale=0.01&seed=5&devices=4"
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]

# Bounded and repeatable: 12 generated cases per operation (plus the spec's
# examples and schemathesis' coverage cases), derandomized, no example
# database on disk. Each answer comes in milliseconds; the deadline only
# catches a hang, generous for 2 busy cores.
BOUNDED = hypothesis.settings(
    max_examples=12, deadline=10_000, derandomize=True, database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
REQUEST_TIMEOUT = 8


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("fuzz"), drivers={"urls": [FUZZ_SIM]})
    with running(settings) as srv, world(srv) as state:
        yield state


def _call(state, case, api: str):
    state.aim(case)
    response = None
    try:
        response = case.call(base_url=state.srv.url(api), session=state.srv.http, timeout=REQUEST_TIMEOUT)
        if case.path == "/devices/{deviceId}/sensor" and response.status_code == 200 and not response.content:
            # The spec's own answer for "no sensor connected" is an empty body,
            # which no JSON schema can parse: check that it means what it says.
            device = state.srv.http.get(state.srv.url(f"{API}/devices/{case.path_parameters['deviceId']}"))
            assert device.json()["hasSensor"] is False
            return
        case.validate_response(response, checks=CHECKS)
    finally:
        state.tidy(case, response)


@modality.parametrize()
@BOUNDED
def test_modality_spec(case, fuzzed):
    _call(fuzzed, case, API)


@filters.parametrize()
@BOUNDED
def test_filters_spec(case, fuzzed):
    _call(fuzzed, case, FILTERS_API)
