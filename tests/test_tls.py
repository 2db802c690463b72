"""The TLS front over a real waitress backend, with real certificates and clients."""
from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import shutil
import socket
import ssl
import threading
import time

import pytest
import requests

from sensord.daemon.host.tls import TlsFront, load_context
from tests.support.loopback import free_port, serving, wait_until

HOST = "127.0.0.1"
SECOND = threading.Event()      # /stream sends its second event once the client has the first


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/echo":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/event-stream")])

        def events():
            yield b"data: first\n\n"
            SECOND.wait(30)
            yield b"data: second\n\n"
        return events()
    body = json.dumps({"who": environ.get("QUERY_STRING", "")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture(scope="module")
def backend():
    with serving(_app) as url:
        yield HOST, int(url.rsplit(":", 1)[1])


@pytest.fixture
def front(pki, backend):
    """front(**options) starts a TLS front before the backend; stopped after the test."""
    started = []

    def start(cert=pki.cert, key=pki.key, to=backend, **options):
        tls = TlsFront(load_context(cert, key), HOST, 0, to, **options)
        started.append(tls)
        tls.start()
        tls.url = f"https://{HOST}:{tls.port}"
        return tls
    yield start
    for tls in started:
        tls.stop()


@pytest.fixture(autouse=True)
def no_errors_logged(caplog):
    """Disconnects, refusals and bad handshakes are ordinary: no errors, no tracebacks."""
    caplog.set_level(logging.DEBUG, logger="sensord.tls")
    yield
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR
           or (r.name == "asyncio" and r.levelno >= logging.WARNING)]
    assert not bad, [r.getMessage() for r in bad]


def _tls_client(pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pki.cert)


def _is_closed(sock: socket.socket) -> bool:
    """True once the peer has closed ``sock`` (EOF or reset); waits at most its timeout."""
    try:
        return sock.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True


# -- load_context -------------------------------------------------------------

def test_certificate_and_key_in_two_files_or_in_one(pki, front):
    for tls in (front(), front(cert=pki.combined, key="")):
        answer = requests.get(tls.url + "/json?who=me", verify=pki.cert, timeout=5)
        assert answer.status_code == 200
        assert answer.json() == {"who": "who=me"}


def test_context_refuses_tls_below_1_2(pki):
    context = load_context(pki.cert, pki.key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("case", ["missing", "garbage", "key of another cert", "encrypted key",
                                  "no key in the cert file", "a folder"])
def test_load_context_errors_name_the_path(pki, case):
    cert, key = {
        "missing": (str(pki.dir / "absent.pem"), ""),
        "garbage": (pki.garbage, pki.key),
        "key of another cert": (pki.cert, pki.other_key),
        "encrypted key": (pki.encrypted_cert, pki.encrypted_key),
        "no key in the cert file": (pki.cert, ""),
        "a folder": (str(pki.dir), ""),
    }[case]
    named = cert if case in ("missing", "garbage", "a folder") else (key or cert)
    with pytest.raises(ValueError) as error:
        load_context(cert, key)
    assert named in str(error.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_key_is_a_value_error(pki, tmp_path):
    key = tmp_path / "key.pem"
    shutil.copy(pki.key, key)
    key.chmod(0)
    with pytest.raises(ValueError, match="cannot read .*key.pem"):
        load_context(pki.cert, str(key))


# -- TlsFront ------------------------------------------------------------------

def test_binds_in_the_constructor(pki, backend):
    tls = TlsFront(load_context(pki.cert, pki.key), HOST, 0, backend)
    try:
        assert tls.port != 0
        with pytest.raises(OSError):
            TlsFront(load_context(pki.cert, pki.key), HOST, tls.port, backend)
    finally:
        tls.stop()      # never started: closes the listener
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, tls.port), timeout=2)


def test_large_body_round_trips_exactly(pki, front):
    tls = front()
    body = os.urandom(8 << 20)
    answer = requests.post(tls.url + "/echo", data=body, verify=pki.cert, timeout=30)
    assert answer.status_code == 200
    assert len(answer.content) == len(body) and answer.content == body


def test_event_stream_chunks_pass_through_as_they_come(pki, front):
    tls = front()
    SECOND.clear()
    try:
        with requests.get(tls.url + "/stream", stream=True, verify=pki.cert, timeout=10) as answer:
            chunks = answer.iter_content(chunk_size=None)
            # The backend holds the second event until the first is here: a front that kept the
            # first back for more would time this read out (10 s, the backend holding 30).
            first = next(chunks)
            SECOND.set()
            rest = b"".join(chunks)
    finally:
        SECOND.set()
    assert first == b"data: first\n\n"
    assert rest == b"data: second\n\n"


def test_backend_closing_first_ends_the_tls_connection_cleanly(pki, front):
    tls = front()
    with socket.create_connection((HOST, tls.port), timeout=5) as raw:
        with _tls_client(pki).wrap_socket(raw, server_hostname="localhost",
                                          suppress_ragged_eofs=False) as conn:
            conn.sendall(b"GET /json?bye HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            reply = b""
            while piece := conn.recv(65536):    # ends with the server's close_notify
                reply += piece
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b'{"who": "bye"}')


def test_concurrent_clients_get_their_own_answers(pki, front):
    tls = front()

    def client(n):
        with requests.Session() as http:
            for i in range(5):
                body = os.urandom(100_000 + n)
                echo = http.post(tls.url + "/echo", data=body, verify=pki.cert, timeout=10)
                assert echo.content == body
                assert http.get(tls.url + f"/json?{n}-{i}", verify=pki.cert,
                                timeout=10).json() == {"who": f"{n}-{i}"}
        return n

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(client, range(8))) == list(range(8))


def test_plain_http_on_the_tls_port_is_dropped_and_others_are_served(pki, front, caplog):
    tls = front()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{HOST}:{tls.port}/json", timeout=5)
    assert requests.get(tls.url + "/json", verify=pki.cert, timeout=5).status_code == 200
    assert wait_until(lambda: any("handshake" in r.getMessage() for r in caplog.records), 15)
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "handshake" in r.getMessage())


def test_a_silent_client_does_not_block_others_and_is_dropped(pki, front):
    tls = front(handshake_timeout=0.5)
    with socket.create_connection((HOST, tls.port), timeout=5) as silent:
        assert requests.get(tls.url + "/json", verify=pki.cert, timeout=5).status_code == 200
        began = time.monotonic()
        assert _is_closed(silent)
        assert time.monotonic() - began < 4


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_old_tls_clients_are_refused(pki, front, caplog):
    tls = front()
    if not getattr(ssl, "HAS_TLSv1_1", False):
        pytest.skip("this OpenSSL cannot make a TLS 1.1 client")
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    try:
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot make a TLS 1.1 client")
    with socket.create_connection((HOST, tls.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)) as refused:
            old.wrap_socket(raw).close()
    if getattr(refused.value, "reason", None) in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE"):
        pytest.skip(f"this OpenSSL cannot make a TLS 1.1 client: {refused.value}")
    assert wait_until(lambda: any("UNSUPPORTED_PROTOCOL" in r.getMessage() for r in caplog.records), 15)
    modern = _tls_client(pki)
    modern.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection((HOST, tls.port), timeout=5) as raw:
        with modern.wrap_socket(raw, server_hostname="localhost") as conn:
            assert conn.version() == "TLSv1.2"


def test_backend_down_closes_the_client_with_one_warning(pki, front, caplog):
    tls = front(to=(HOST, free_port()))
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            requests.get(tls.url + "/json", verify=pki.cert, timeout=5)
    warnings = [r for r in caplog.records if r.name == "sensord.tls" and r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all(r.exc_info is None for r in warnings)
    assert "cannot reach" in warnings[0].getMessage()


def test_stop_closes_connections_and_the_port_and_is_idempotent(pki, front):
    tls = front()
    silent = socket.create_connection((HOST, tls.port), timeout=5)     # never handshakes
    keep_alive = _tls_client(pki).wrap_socket(socket.create_connection((HOST, tls.port), timeout=5),
                                             server_hostname="localhost")
    with keep_alive, silent:
        keep_alive.sendall(b"GET /json?alive HTTP/1.1\r\nHost: localhost\r\n\r\n")
        reply = b""
        while not reply.endswith(b'{"who": "alive"}'):
            reply += keep_alive.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200")

        other = threading.Thread(target=tls.stop)
        other.start()
        other.join(10)
        assert not other.is_alive()
        assert _is_closed(keep_alive)
        assert _is_closed(silent)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, tls.port), timeout=2)
        assert not [t for t in threading.enumerate() if t.name == "tls-front"]
        tls.stop()
