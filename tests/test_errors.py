"""One error type carries its HTTP status: a room below the API raises it,
one handler answers it, and anything unexpected is a 500 without a traceback."""
from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest

from sensord.daemon.acquisition.devices import DeviceInUse, DeviceNotFound
from sensord.daemon.acquisition.sessions import InsufficientStorage, Locked, SessionNotFound
from sensord.daemon.api.errors import ApiError
from sensord.daemon.api.multipart import MultipartError
from sensord.daemon.errors import ServiceError
from sensord.daemon.live.hub import SubscriberLimit, TooManySubscribers
from sensord.daemon.store.resources import QuotaExceeded, StoreFull
from tests.support.filters_api import API as FILTERS
from tests.support.filters_api import assert_error
from tests.support.modality import API
from tests.support.sse_client import EventStream

STATUS_FEED = "/api/sensord/v1/status/subscribe"


@pytest.mark.parametrize("cls, status", [
    (QuotaExceeded, 507), (StoreFull, 507), (InsufficientStorage, 507), (Locked, 423),
    (SessionNotFound, 404), (DeviceNotFound, 404), (DeviceInUse, 409),
    (TooManySubscribers, 503), (MultipartError, 400),
])
def test_each_domain_error_names_its_status(cls, status):
    err = cls("what went wrong")
    assert isinstance(err, ServiceError)
    assert (err.status, err.message, str(err)) == (status, "what went wrong", "what went wrong")


def test_domain_errors_keep_the_builtin_bases_callers_may_catch():
    assert issubclass(DeviceNotFound, LookupError) and issubclass(SessionNotFound, LookupError)
    assert issubclass(MultipartError, ValueError)


def test_headers_are_per_raise_and_the_class_default_stays():
    limit = SubscriberLimit(0)
    with pytest.raises(TooManySubscribers) as caught:
        limit.acquire()
    assert caught.value.headers == {"Retry-After": "5"}
    assert "try again later" in caught.value.message
    caught.value.headers["Retry-After"] = "60"
    assert TooManySubscribers("again").headers == {"Retry-After": "5"}
    assert ServiceError("x", status=418, headers={"A": "b"}).headers == {"A": "b"}


def test_api_error_is_a_service_error_with_the_status_first():
    err = ApiError(401, "authentication required", headers={"WWW-Authenticate": "Basic"})
    assert isinstance(err, ServiceError)
    assert (err.status, err.message, err.headers) == (401, "authentication required", {"WWW-Authenticate": "Basic"})


def test_the_error_type_does_not_pull_in_flask():
    # Lower rooms raise it without knowing the web framework exists.
    code = "import sys, sensord.daemon.errors; print('flask' in sys.modules, 'werkzeug' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


class Archived(ServiceError):
    """A domain error no view knows about."""
    status = 410
    headers = {"X-Archived-On": "tape 7"}


def test_a_domain_error_from_the_store_reaches_the_client_as_its_status(serve, monkeypatch):
    srv = serve()

    def archived(rid):
        raise Archived(f"resource {rid!r} went to tape")

    monkeypatch.setattr(srv.daemon.store, "get", archived)
    response = srv.http.get(srv.url(FILTERS + "/images/abc"))
    assert_error(response, 410, "went to tape")
    assert response.json() == {"status": 410, "error": "Gone", "message": "resource 'abc' went to tape"}
    assert response.headers["X-Archived-On"] == "tape 7"


def test_a_missing_device_is_404_with_the_rooms_own_words(serve):
    srv = serve()
    response = srv.http.get(srv.url(API + "/devices/nope"))
    assert response.json() == {"status": 404, "error": "Not Found", "message": "no device 'nope'"}
    assert_error(srv.http.get(srv.url(API + "/acquisition/gone")), 404, "no acquisition session 'gone'")


@pytest.mark.parametrize("path", [API + "/devices/subscribe", STATUS_FEED])
def test_too_many_subscribers_is_503_with_retry_after_on_every_feed(serve, path):
    srv = serve(acquisition={"max_subscribers": 1})
    held = EventStream(srv.http, srv.url(API + "/devices/subscribe"))
    try:
        assert held.status_code == 200
        refused = srv.http.get(srv.url(path))
        assert_error(refused, 503, "1 event subscribers", "try again later")
        assert refused.headers["Retry-After"] == "5"
    finally:
        held.close()


def test_an_unexpected_error_is_a_500_with_a_ref_and_no_details(serve, monkeypatch, caplog):
    srv = serve()

    def broken():
        raise RuntimeError("the secret path /var/lib/sensord/keys")

    monkeypatch.setattr(srv.daemon.devices, "list", broken)
    caplog.set_level(logging.ERROR, logger="sensord.http")
    response = srv.http.get(srv.url(API + "/devices"))
    assert_error(response, 500, "internal error")
    body = response.json()
    assert body["error"] == "Internal Server Error"
    ref = re.search(r"\(ref ([0-9a-f]{8})\)", body["message"]).group(1)
    assert "secret" not in response.text and "RuntimeError" not in response.text
    # The operator finds the traceback in the log under the same ref.
    [record] = [r for r in caplog.records if ref in r.getMessage()]
    assert record.exc_info and "secret path" in str(record.exc_info[1])
