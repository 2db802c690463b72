"""Who may reach the daemon from a web browser (daemon/api/origin.py and
daemon/api/response_headers.py), through the real server: the Host header
must name the daemon (421 before any credentials are asked for), requests
from another origin are refused (403), clients without Origin or Sec-Fetch-*
(the vendor's SDK, curl, newman, the CLI) are not, the status page carries
its browser headers, and a real page of another origin in headless Chromium,
in a browser holding the daemon's credentials, changes nothing."""
from __future__ import annotations

import http.client
import logging
import re

import pytest
import requests

from sensord.daemon.host import reload
from sensord.daemon.settings import ServerSettings, SettingsError, from_mapping
from tests.support.browser import chromium, with_credentials  # noqa: F401  (fixture)
from tests.support.loopback import free_port, serving, wait_until
from tests.support.modality import ADMIN, API, control, device_of, put_info
from tests.support.server import PASSWORD, USER, make_settings, running

SESSIONS = API + "/acquisition"


def host_of(srv, name: str) -> str:
    return f"{name}:{srv.server.port}"


def device_states(srv) -> list[tuple[str, str]]:
    return sorted((d["deviceId"], d["status"]) for d in srv.http.get(srv.url(API + "/devices")).json())


def sessions(srv) -> list[dict]:
    return srv.http.get(srv.url(SESSIONS)).json()


def refused(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status
    for word in words:
        assert word in body["message"], body
    assert "WWW-Authenticate" not in response.headers


# -- another origin may change nothing ----------------------------------------
def test_state_changing_requests_from_another_origin_are_refused_own_origin_served(serve):
    srv = serve()
    dev = device_of(srv, "Simradix Select")["deviceId"]
    before = device_states(srv)
    sid = srv.http.post(srv.url(SESSIONS), json={"deviceId": dev}).json()["sessionId"]
    other_port = free_port()
    foreign = [f"http://127.0.0.1:{other_port}",         # another port of this PC: a web page's server
               f"http://localhost:{srv.server.port}",    # the daemon under another name: another origin
               f"https://127.0.0.1:{srv.server.port}",   # another scheme
               "null",                                   # sandboxed frame, file:// or data: page
               "http://evil.example"]
    for value in foreign:
        for method, path, body in (("POST", SESSIONS, {"deviceId": dev}),
                                   ("POST", f"{ADMIN}/devices/{dev}/unplug", None),
                                   ("PUT", f"{SESSIONS}/{sid}/info", {"enable": True}),
                                   ("DELETE", f"{SESSIONS}/{sid}", None),
                                   ("PATCH", f"{SESSIONS}/{sid}", {"clientName": "x"})):
            response = srv.http.request(method, srv.url(path), json=body, headers={"Origin": value})
            refused(response, 403, "another web page", "Origin")
            # Decided before the credentials: none at all gets the same 403, not a 401 challenge.
            response = requests.request(method, srv.url(path), json=body, headers={"Origin": value}, timeout=5)
            refused(response, 403, "Origin")
    assert [s["sessionId"] for s in sessions(srv)] == [sid]
    assert srv.http.get(srv.url(f"{SESSIONS}/{sid}/info")).json().get("enable") is not True
    assert device_states(srv) == [(d, "InUse" if d == dev else s) for d, s in before]

    # The daemon's own origin, and clients that send no Origin, are served.
    assert srv.http.delete(srv.url(f"{SESSIONS}/{sid}")).status_code == 200
    port = srv.server.port
    own = [({}, None),                                                            # SDK, curl, newman, CLI
           ({"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}, None),
           ({"Origin": f"http://localhost:{port}"}, f"localhost:{port}"),         # the page opened as localhost
           ({"Origin": f"http://[::1]:{port}", "Sec-Fetch-Site": "same-origin"}, f"[::1]:{port}"),
           ({"Sec-Fetch-Site": "none"}, None)]                                    # typed by the user
    for headers, host in own:
        if host:
            headers = {**headers, "Host": host}
        created = srv.http.post(srv.url(SESSIONS), json={"deviceId": dev}, headers=headers)
        assert created.status_code == 201, (headers, created.text)
        sid = created.json()["sessionId"]
        assert put_info(srv, sid, enable=True).status_code == 200
        assert srv.http.delete(srv.url(f"{SESSIONS}/{sid}"), headers=headers).status_code == 200
    assert sessions(srv) == []


def test_over_https_the_own_origin_is_https_and_the_sdk_host_is_accepted(serve, pki):
    srv = serve(server={"tls_cert": pki.cert, "tls_key": pki.key})
    port = srv.server.port
    dev = device_of(srv, "Simradix Select")["deviceId"]
    # The vendor's SDK: base address https://localhost:43809, no Origin.
    created = srv.http.post(srv.url(SESSIONS), json={"deviceId": dev}, headers={"Host": f"localhost:{port}"})
    assert created.status_code == 201
    assert created.headers["Location"].startswith(f"https://localhost:{port}/")
    sid = created.json()["sessionId"]
    refused(srv.http.delete(srv.url(f"{SESSIONS}/{sid}"), headers={"Origin": f"http://127.0.0.1:{port}"}),
            403, "Origin")
    refused(srv.http.get(srv.url(API), headers={"Host": f"evil.example:{port}"}), 421)
    assert srv.http.delete(srv.url(f"{SESSIONS}/{sid}"),
                           headers={"Origin": f"https://127.0.0.1:{port}"}).status_code == 200


@pytest.mark.parametrize("site", ["cross-site", "same-site", "CROSS-SITE"])
def test_sec_fetch_site_of_another_site_is_refused(serve, site):
    srv = serve()
    dev = device_of(srv, "Simradix Select")["deviceId"]
    before = device_states(srv)
    for path, body in ((SESSIONS, {"deviceId": dev}), (f"{ADMIN}/devices/{dev}/unplug", None)):
        headers = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "empty"}
        refused(srv.http.post(srv.url(path), json=body, headers=headers), 403, "Sec-Fetch-Site")
        # A form posted from another site is a navigation, and still refused.
        headers.update({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})
        refused(srv.http.post(srv.url(path), json=body, headers=headers), 403, "Sec-Fetch-Site")
    assert sessions(srv) == [] and device_states(srv) == before


def test_reads_for_another_site_are_refused_but_following_a_link_is_not(serve):
    srv = serve()
    other = f"http://127.0.0.1:{free_port()}"
    # An event stream holds a worker thread and a subscriber slot; an image
    # pulled into another site's page sits in that page's process.
    for path, headers in (("/api/sensord/v1/status/subscribe", {"Origin": other, "Sec-Fetch-Site": "same-site",
                                                                "Sec-Fetch-Mode": "cors"}),
                          (API + "/devices/subscribe", {"Origin": other}),
                          (API + "/devices", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
                                              "Sec-Fetch-Dest": "image"}),
                          ("/", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
                                 "Sec-Fetch-Dest": "iframe"})):
        with srv.http.get(srv.url(path), headers=headers, stream=True, timeout=5) as response:
            refused(response, 403, "another web page")
    # A user following a link from another site to the status page.
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert srv.http.get(srv.url("/"), headers=link).status_code == 200
    assert srv.http.get(srv.url(API + "/devices"), headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200


# -- the Host header must name this daemon ---------------------------------------
BAD_HOSTS = ["evil.example", "evil.example:{port}", "localhost.evil.example:{port}", "127.0.0.1.nip.io:{port}",
             "[::1", "[::1]x", "localhost:99999", "localhost:{port}x", "local host", "user@localhost",
             "localhost, evil.example", "10.1.2.3:{port}", "0.0.0.0:{port}",
             "localhost:" + "9" * 5000]   # a port Python cannot turn into an int


def test_a_host_not_naming_the_daemon_gets_421_before_authentication(serve):
    srv = serve()
    port = srv.server.port
    for template in BAD_HOSTS:
        host = template.format(port=port)
        for client in (requests, srv.http):                  # without and with credentials
            response = client.get(srv.url(API + "/devices"), headers={"Host": host}, timeout=5)
            refused(response, 421, "does not name this daemon")
        dev_list = srv.http.get(srv.url(API + "/devices")).json()
        response = srv.http.post(srv.url(SESSIONS), json={"deviceId": dev_list[0]["deviceId"]},
                                 headers={"Host": host})
        refused(response, 421)
    assert sessions(srv) == []

    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost", "127.0.0.1",
                 "[::1]", f"LocalHost:{port}", f"[0:0:0:0:0:0:0:1]:{port}"):
        assert srv.http.get(srv.url(API + "/devices"), headers={"Host": host}).status_code == 200, host
        unauthenticated = requests.get(srv.url(API + "/devices"), headers={"Host": host}, timeout=5)
        assert unauthenticated.status_code == 401 and "WWW-Authenticate" in unauthenticated.headers


def test_a_request_without_host_is_refused(serve):
    srv = serve()
    conn = http.client.HTTPConnection("127.0.0.1", srv.server.port, timeout=5)
    try:
        conn.putrequest("GET", API + "/devices", skip_host=True)
        conn.putheader("Authorization", requests.auth._basic_auth_str(USER, PASSWORD))
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 400 and b"Host" in body


def test_urls_in_answers_name_the_checked_host(serve):
    srv = serve()
    port = srv.server.port
    dev = device_of(srv, "Simradix Select")["deviceId"]
    refused(srv.http.post(srv.url(SESSIONS), json={"deviceId": dev}, headers={"Host": "evil.example"}), 421)
    created = srv.http.post(srv.url(SESSIONS), json={"deviceId": dev}, headers={"Host": f"localhost:{port}"})
    assert created.status_code == 201
    sid = created.json()["sessionId"]
    assert created.headers["Location"] == f"http://localhost:{port}{SESSIONS}/{sid}"
    assert put_info(srv, sid, enable=True).status_code == 200
    status = srv.url(f"{SESSIONS}/{sid}/status")
    assert wait_until(lambda: srv.http.get(status).json()["ready"])
    assert control(srv, dev, "expose").status_code == 200
    assert wait_until(lambda: srv.http.get(status).json().get("lastImageId"), 15)   # absent until then
    iid = srv.http.get(status).json()["lastImageId"]
    image = srv.http.get(srv.url(f"{SESSIONS}/{sid}/images/{iid}"), headers={"Host": f"[::1]:{port}"}).json()
    assert image["imageUrl"] == f"http://[::1]:{port}{SESSIONS}/{sid}/images/{iid}/media"
    assert image["previewUrl"] == f"http://[::1]:{port}{SESSIONS}/{sid}/images/{iid}/preview"


def test_allowed_hosts_and_the_listening_address_are_accepted(serve):
    srv = serve(server={"allowed_hosts": ["Sensor-PC.clinic.test", "192.0.2.7", "[2001:db8::7]"],
                        "host": "127.0.0.9"})
    port = srv.server.port
    dev = device_of(srv, "Simradix Select")["deviceId"]
    for host in (f"sensor-pc.clinic.test:{port}", "SENSOR-PC.clinic.test", f"192.0.2.7:{port}",
                 f"[2001:db8::7]:{port}", f"127.0.0.9:{port}"):
        assert srv.http.get(srv.url(API + "/devices"), headers={"Host": host}).status_code == 200, host
    created = srv.http.post(srv.url(SESSIONS), json={"deviceId": dev},
                            headers={"Host": f"sensor-pc.clinic.test:{port}"})
    assert created.status_code == 201
    assert created.headers["Location"].startswith(f"http://sensor-pc.clinic.test:{port}/")
    for host in ("sensor-pc", f"clinic.test:{port}", f"192.0.2.8:{port}", f"10.0.0.1:{port}"):
        refused(srv.http.get(srv.url(API + "/devices"), headers={"Host": host}), 421)


def test_a_wildcard_listening_address_accepts_only_loopback_and_listed_names():
    from sensord.daemon.api import origin
    wildcard = ServerSettings(host="0.0.0.0", allowed_hosts=["192.168.1.20"])
    assert origin.accepted_names(wildcard) == {"localhost", "127.0.0.1", "::1", "192.168.1.20"}
    assert origin.accepted_names(ServerSettings(host="::")) == {"localhost", "127.0.0.1", "::1"}
    assert origin.accepted_names(ServerSettings(host="192.168.1.20")) == {
        "localhost", "127.0.0.1", "::1", "192.168.1.20"}


@pytest.mark.parametrize("bad", ["sensor-pc:43809", "http://sensor-pc", "*", "*.clinic.lan", "", "a b",
                                 "sensor-pc/", 7, "[::1]:43809"])
def test_allowed_hosts_takes_names_and_addresses_only(bad):
    with pytest.raises(SettingsError, match="'server.allowed_hosts' takes host names"):
        from_mapping({"server": {"allowed_hosts": [bad]}})


def test_allowed_hosts_change_on_reload(serve, tmp_path):
    srv = serve()
    host = {"Host": f"sensor-pc:{srv.server.port}"}
    refused(srv.http.get(srv.url(API + "/devices"), headers=host), 421)
    settings = srv.daemon.settings
    new = make_settings(tmp_path / "state", server={"allowed_hosts": ["sensor-pc"]})
    assert new.store.state_dir == settings.store.state_dir
    assert reload.reload(srv.daemon, lambda: new) == ["server.allowed_hosts"]
    assert srv.http.get(srv.url(API + "/devices"), headers=host).status_code == 200


# -- headers a browser acts on ----------------------------------------------------
def browser_headers_present(response) -> None:
    csp = response.headers["Content-Security-Policy"]
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in csp.split(";"))
    assert directives["default-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_status_page_and_api_answers_carry_browser_headers(serve):
    srv = serve()
    for path in ("/", "/assets/status.js", "/assets/status.css", "/api/sensord/v1/status", API,
                 API + "/devices", SESSIONS + "/no-such-session"):
        browser_headers_present(srv.http.get(srv.url(path)))
    browser_headers_present(requests.get(srv.url("/"), timeout=5))     # the 401 challenge too
    with srv.http.get(srv.url("/api/sensord/v1/status/subscribe"), stream=True, timeout=5) as stream:
        assert stream.headers["X-Content-Type-Options"] == "nosniff"
    # The policy allows no inline script or style: the page has none. (Its one
    # JSON data block, the snapshot it is served with, is data: never run.)
    page = srv.http.get(srv.url("/")).text.lower()
    data = page.count('<script type="application/json" id="snapshot">')
    assert data == 1 and page.count("<script") == page.count("<script src=") + data and "<style" not in page
    assert not re.search(r"<[^>]*\s(style|on[a-z]+)\s*=", page)


# -- a real browser --------------------------------------------------------------
# Records CSP violations of every page from here on, before its scripts run.
CSP_WATCH = """
window.addEventListener("securitypolicyviolation",
    (e) => (window.__errors = window.__errors || []).push(`CSP: ${e.violatedDirective} ${e.blockedURI}`));
"""

ATTACK = """<!doctype html>
<html><head><meta charset="utf-8"><title>a page from another origin</title></head>
<body><script>
const daemon = "{daemon}", device = "{device}";
const asJson = {{"Content-Type": "text/plain"}};       // a "simple" request: no preflight
const sent = [
  // what the vendor's SDK sends, from this page, with the browser's saved credentials
  fetch(daemon + "/api/dsio/modality/v1/acquisition", {{method: "POST", credentials: "include",
        headers: asJson, body: JSON.stringify({{deviceId: device, clientName: "attacker"}})}}),
  fetch(daemon + "/api/sensord/v1/devices/" + device + "/unplug", {{method: "POST", credentials: "include"}}),
  fetch(daemon + "/api/dsio/modality/v1/acquisition", {{method: "POST", credentials: "include", mode: "no-cors",
        headers: asJson, body: JSON.stringify({{deviceId: device, clientName: "attacker"}})}}),
  fetch(daemon + "/api/sensord/v1/devices/" + device + "/unplug", {{method: "POST", credentials: "include",
        mode: "no-cors"}}),
];
Promise.allSettled(sent).then((results) => {{ window.done = results.map((r) => r.status); }});
</script></body></html>
"""


@pytest.mark.process
def test_a_page_of_another_origin_in_a_browser_with_credentials_changes_nothing(chromium, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="sensord.http")
    caplog.set_level(logging.DEBUG, logger="sensord.server")
    watch = chromium.cdp("Page.addScriptToEvaluateOnNewDocument", source=CSP_WATCH)["identifier"]
    try:
        with running(make_settings(tmp_path / "state")) as srv:
            dev = device_of(srv, "Simradix Select")["deviceId"]
            before = device_states(srv)
            # The user opens the status page and gives the browser the credentials.
            chromium.get(with_credentials(srv.base, USER, PASSWORD) + "/")
            chromium.wait_for("return document.querySelectorAll('#devices tr[data-device-id]').length === 3;")
            chromium.wait_for("return document.querySelector('#connection').textContent === 'connected';")
            # The page works under its policy, and its own origin may still change things.
            status = chromium.execute("""
                const request = new XMLHttpRequest();
                request.open("POST", "/api/dsio/modality/v1/acquisition", false);
                request.setRequestHeader("Content-Type", "application/json");
                request.send(JSON.stringify({deviceId: arguments[0], clientName: "status page"}));
                const sid = JSON.parse(request.responseText).sessionId;
                const removal = new XMLHttpRequest();
                removal.open("DELETE", "/api/dsio/modality/v1/acquisition/" + sid, false);
                removal.send();
                return [request.status, removal.status];""", dev)
            assert status == [201, 200]
            assert chromium.errors() == []

            def attack(app_environ, start_response):
                page = ATTACK.format(daemon=srv.base, device=dev).encode()
                start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                          ("Content-Length", str(len(page)))])
                return [page]

            with serving(attack, threads=2) as attacker:
                assert attacker != srv.base
                chromium.get(attacker + "/")
                chromium.wait_for("return window.done;", timeout=20)
            assert sessions(srv) == []
            assert device_states(srv) == before
            # Every one of the four reached the daemon and was refused there
            # (by the server's front door, or else by the app: each logs it).
            refusals = [r.getMessage() for r in caplog.records
                        if r.name.startswith("sensord") and "from another web page are refused" in r.getMessage()]
            assert len(refusals) == 4 and all("Origin" in m for m in refusals), refusals
    finally:
        chromium.cdp("Page.removeScriptToEvaluateOnNewDocument", identifier=watch)
