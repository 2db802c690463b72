"""The front door, tried as an attacker on loopback would: slow and idle
connections, bodies without credentials, Expect: 100-continue, bodies over
the limit, and a process that runs out of file descriptors. Each through a
real server on a real port with real sockets."""
from __future__ import annotations

import os
import resource
import selectors
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support import raw_http
from tests.support.daemon_process import daemon_process
from tests.support.images import image_info, png16, raw_image, upload_files
from tests.support.loopback import wait_until
from tests.support.server import PASSWORD, USER

MODALITY = "/api/dsio/modality/v1"
IMAGES = "/api/dsio/filters/v1/images"
HEADER_TIMEOUT = 1.0
SLACK = 1.5             # the serving loop's turn, the sweep, a busy shared machine
SLOW_CLIENTS = 150      # above waitress's default connection limit (100); 1000 measured by hand


def upload_request(port: int, *, auth: bool = True, extra: dict | None = None) -> tuple[bytes, bytes]:
    """(head, body) of a small valid upload, as requests would build it."""
    prepared = requests.Request("POST", f"http://127.0.0.1:{port}{IMAGES}",
                                files=upload_files(image_info(), png16(raw_image(40, 50)))).prepare()
    headers = {"Content-Type": prepared.headers["Content-Type"],
               "Content-Length": str(len(prepared.body)), **(extra or {})}
    return raw_http.head("POST", IMAGES, port, headers, auth=auth), prepared.body


def timed_get(srv, results: list) -> None:
    start = time.monotonic()
    try:
        status = srv.http.get(srv.url(MODALITY), timeout=10).status_code
    except requests.RequestException as err:
        status = repr(err)
    results.append((status, time.monotonic() - start))


class SlowClients:
    """Connections that trickle header lines (or, ``silent``, send nothing at
    all); records when the server closed each, relative to its connect."""

    def __init__(self, port: int, count: int, *, cafile: str | None = None, silent: bool = False):
        self.selector = selectors.DefaultSelector()
        self.opened: dict[socket.socket, float] = {}
        self.lasted: dict[socket.socket, float] = {}
        self.silent = silent
        for _ in range(count):
            began = time.monotonic()
            if silent:      # a TCP connection only: no TLS handshake, no byte
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            else:
                sock = raw_http.connect(port, cafile=cafile)
                sock.sendall(f"GET {MODALITY} HTTP/1.1\r\nHost: localhost:{port}\r\n".encode())
            sock.setblocking(False)
            self.opened[sock] = began
            self.selector.register(sock, selectors.EVENT_READ)
            self.watch(0)       # (opening many takes a while on a busy machine: note closes meanwhile)

    def trickle(self) -> None:
        for sock in list(self.opened):
            if sock not in self.lasted and not self.silent:
                try:
                    sock.send(b"X-Slow: 1\r\n")
                except (ssl.SSLWantWriteError, BlockingIOError):
                    pass
                except OSError:
                    self._gone(sock)

    def watch(self, seconds: float) -> None:
        for key, _ in self.selector.select(seconds):
            sock = key.fileobj
            try:
                if sock.recv(4096):
                    continue        # (nothing is answered to headers that never end)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except OSError:
                pass
            self._gone(sock)

    def _gone(self, sock) -> None:
        if sock not in self.lasted:
            self.lasted[sock] = time.monotonic() - self.opened[sock]
            self.selector.unregister(sock)

    def run_until_all_closed(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        while len(self.lasted) < len(self.opened) and time.monotonic() < deadline:
            self.trickle()
            self.watch(0.3)

    def close(self) -> None:
        for sock in self.opened:
            sock.close()
        self.selector.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_slow_headers_are_cut_off_while_a_client_is_answered(serve, pki, scheme):
    tls = {"tls_cert": pki.cert, "tls_key": pki.key} if scheme == "https" else {}
    srv = serve(server={"header_timeout_seconds": HEADER_TIMEOUT, **tls})
    slow = SlowClients(srv.server.port, SLOW_CLIENTS, cafile=pki.cert if tls else None)
    try:
        results: list = []
        client = threading.Thread(target=timed_get, args=(srv, results))
        client.start()          # while every slow connection is open and trickling
        slow.run_until_all_closed(HEADER_TIMEOUT + SLACK + 3)
        client.join(10)
        assert results and results[0][0] == 200 and results[0][1] < 2.0, results
        assert len(slow.lasted) == SLOW_CLIENTS, f"{SLOW_CLIENTS - len(slow.lasted)} still open"
        # Closed at the deadline although each sent a line every 0.3 s.
        assert max(slow.lasted.values()) < HEADER_TIMEOUT + SLACK, max(slow.lasted.values())
        assert min(slow.lasted.values()) >= HEADER_TIMEOUT - 0.05
    finally:
        slow.close()


def test_connections_that_never_start_tls_are_closed(serve, pki):
    srv = serve(server={"tls_cert": pki.cert, "tls_key": pki.key, "tls_handshake_seconds": HEADER_TIMEOUT})
    idle = SlowClients(srv.server.port, SLOW_CLIENTS, silent=True)
    try:
        results: list = []
        timed_get(srv, results)
        assert results[0][0] == 200 and results[0][1] < 2.0, results
        idle.run_until_all_closed(HEADER_TIMEOUT + SLACK + 3)
        assert len(idle.lasted) == SLOW_CLIENTS
        assert max(idle.lasted.values()) < HEADER_TIMEOUT + SLACK
    finally:
        idle.close()


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmRSS")


def _files_in(folder: Path) -> list[str]:
    """Files in ``folder``, also those without a name there (O_TMPFILE), as
    this process's open descriptors show them."""
    found = [p.name for p in folder.iterdir()]
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_body_without_credentials_is_refused_from_its_headers(serve, pki, tmp_path, monkeypatch, scheme):
    spool = tmp_path / "tmp"        # where waitress would spool a large body
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    tls = scheme == "https"
    srv = serve(server={"tls_cert": pki.cert, "tls_key": pki.key} if tls else {})
    size = 100 << 20
    sock = raw_http.connect(srv.server.port, cafile=pki.cert if tls else None)
    try:
        sock.sendall(raw_http.head("POST", IMAGES, srv.server.port, {
            "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(size)}, auth=False))
        piece = b"\0" * (64 << 10)
        sock.sendall(piece)
        before = _rss()
        answer = raw_http.read_response(sock, timeout=3)
        assert answer is not None, "no answer before the body was sent"
        assert answer.status == 401 and answer.json()["status"] == 401
        assert answer.headers["www-authenticate"].startswith("Basic realm=")
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["connection"] == "close"
        # The client goes on sending, as one that does not read early answers
        # does: the server drops it unread, neither in memory nor on disk.
        sent = len(piece)
        sock.settimeout(5)
        try:
            while sent < size:
                sent += sock.send(piece)
        except OSError:
            pass        # or it stops draining and closes, as it may
        assert raw_http.closed(sock, 5)
        assert _rss() - before < 16 << 20, (_rss() - before) >> 20
        assert _files_in(spool) == []
    finally:
        sock.close()
    assert srv.http.get(srv.url(MODALITY)).status_code == 200


@pytest.mark.parametrize("auth,origin,expected", [
    (True, None, 201),
    (False, None, 401),
    (True, "http://evil.example", 403),      # the origin decision is the door's too
])
def test_expect_100_continue_only_for_a_request_let_in(serve, auth, origin, expected):
    srv = serve()
    port = srv.server.port
    extra = {"Expect": "100-continue", **({"Origin": origin} if origin else {})}
    head, body = upload_request(port, auth=auth, extra=extra)
    sock = raw_http.connect(port)
    try:
        sock.sendall(head)
        first = raw_http.read_response(sock, timeout=3)
        assert first is not None
        if expected == 201:
            assert first.status == 100
            sock.sendall(body)
            final = raw_http.read_response(sock, timeout=10, buffered=first.rest)
            assert final is not None and final.status == 201, final
            assert final.json()["mediaType"] == "image/png"
        else:
            assert first.status == expected, first      # and no 100 before it
            assert first.json()["status"] == expected
            assert raw_http.closed(sock, 5)
    finally:
        sock.close()


@pytest.mark.parametrize("declared_mb", [1.5, 50])
def test_a_body_over_the_limit_is_413_json_before_it_is_sent(serve, declared_mb):
    srv = serve(server={"max_upload_mb": 1})
    port = srv.server.port
    sock = raw_http.connect(port)
    try:
        sock.sendall(raw_http.head("POST", IMAGES, port, {
            "Content-Type": "image/png", "Content-Length": str(int(declared_mb * (1 << 20)))}))
        answer = raw_http.read_response(sock, timeout=3)
        assert answer is not None, "no answer before the body"
        assert answer.status == 413 and answer.headers["content-type"] == "application/json"
        assert answer.json()["status"] == 413 and "max_upload_mb" in answer.json()["message"]
        assert raw_http.closed(sock, 5)
    finally:
        sock.close()


def test_a_chunked_body_over_the_limit_is_413_json(serve):
    srv = serve(server={"max_upload_mb": 1})
    pieces = (b"\0" * (256 << 10) for _ in range(16))         # 4 MiB, chunked
    response = srv.http.post(srv.url(IMAGES), data=pieces, headers={"Content-Type": "image/png"}, timeout=30)
    assert response.status_code == 413, response.text
    assert response.headers["Content-Type"] == "application/json" and response.json()["status"] == 413


class ThreadCpu:
    """CPU seconds used by this process's thread called ``name``; its stat
    file is opened at once, to be read again when no descriptor is left."""

    def __init__(self, name: str):
        thread = next(t for t in threading.enumerate() if t.name == name)
        self.fd = os.open(f"/proc/self/task/{thread.native_id}/stat", os.O_RDONLY)
        self.tick = os.sysconf("SC_CLK_TCK")

    def __call__(self) -> float:
        fields = os.pread(self.fd, 4096, 0).decode().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick


def test_out_of_descriptors_no_spin_no_500_no_leftover(serve):
    srv = serve()
    port = int(srv.server.port)
    # One upload first, so that whatever it imports lazily is in: the one
    # below should run out of descriptors in the store, not in an import.
    warm = srv.http.post(srv.url(IMAGES), files=upload_files(image_info(), png16(raw_image(40, 50))))
    assert warm.status_code == 201, warm.text
    head, body = upload_request(port)
    uploader = raw_http.connect(port)
    late = socket.socket()          # its descriptor now; it connects once they have run out
    held: list[int] = []
    cpu = ThreadCpu("waitress")     # the serving loop's thread
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        # Everything but the last byte, so the upload is written while nothing is left.
        uploader.sendall(head + body[:-1])
        channels = srv.server._server.active_channels
        assert wait_until(lambda: any(c.request is not None
                                      and c.request.body_bytes_received == len(body) - 1
                                      for c in list(channels.values())), 15)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 4096), hard))
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        late.setblocking(False)
        late.connect_ex(("127.0.0.1", port))        # the server cannot accept it now
        spent = cpu()
        time.sleep(1.0)
        assert cpu() - spent < 0.3, "the accept loop spins"
        uploader.sendall(body[-1:])
        answer = raw_http.read_response(uploader, timeout=5)
        assert answer is not None
        assert answer.status in (201, 503), answer
        assert answer.headers["content-type"] == "application/json"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        uploader.close()
        os.close(cpu.fd)
    try:
        late.setblocking(True)
        late.settimeout(5)
        late.sendall(raw_http.head("GET", MODALITY, port))
        served = raw_http.read_response(late, timeout=5)
        assert served is not None and served.status == 200     # accepted once descriptors were back
    finally:
        late.close()
    assert [p.name for p in srv.daemon.store.root.iterdir() if p.name.startswith(".new-")] == []
    assert len(list(srv.daemon.store.root.iterdir())) == (2 if answer.status == 201 else 1)


NOFILE = 256        # the daemon's whole descriptor limit in the test below


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.process
def test_more_connections_than_descriptors_wait_their_turn(tmp_path):
    config = (f"[server]\nheader_timeout_seconds = {HEADER_TIMEOUT}\nthreads = 4\n"
              "[acquisition]\nmax_subscribers = 4\n")
    with daemon_process(tmp_path, config, preexec_fn=_low_nofile) as daemon:
        assert "serving at most" in daemon.log()        # the budget fits the limit, and says so
        idle = []
        try:
            for _ in range(NOFILE + 150):   # more than the daemon could ever hold open
                idle.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=5))
            spent, began = _cpu_seconds(daemon.proc.pid), time.monotonic()
            media = png16(raw_image(40, 50))
            # A new connection (not the session's, kept alive), behind the idle ones.
            response = requests.post(daemon.url(IMAGES), files=upload_files(image_info(), media),
                                     auth=(USER, PASSWORD), timeout=20)
            waited = time.monotonic() - began
            assert response.status_code in (201, 503), response.text
            assert response.headers["Content-Type"] == "application/json"
            # Waiting, not spinning: the idle ones are closed at their deadline, wave by wave.
            assert _cpu_seconds(daemon.proc.pid) - spent < 0.5 * waited + 0.5
        finally:
            for sock in idle:
                sock.close()
        assert daemon.http.get(daemon.url(MODALITY), timeout=10).status_code == 200
        resources = daemon.state / "resources"
        assert [p.name for p in resources.iterdir() if p.name.startswith(".new-")] == []
        log = daemon.log()
        assert "Traceback" not in log and "Too many open files" not in log, log[-3000:]


def test_the_units_file_limit_fits_the_default_connections_over_https():
    from sensord.daemon.host import descriptors
    from sensord.daemon.settings import Settings

    unit = (Path(__file__).resolve().parents[1] / "systemd" / "sensord.service").read_text()
    limits = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("LimitNOFILE=")]
    assert len(limits) == 1, "the unit sets no LimitNOFILE (systemd's default soft limit is 1024)"
    defaults = Settings()
    threads = defaults.server.threads + defaults.acquisition.max_subscribers
    need = 3 * defaults.server.max_connections + descriptors.reserve_for(threads)
    assert int(limits[0]) >= need
