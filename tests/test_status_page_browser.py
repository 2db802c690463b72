"""The status page in headless Chromium through the real server: filled on
first load before any event, device icons and idle states, the outbox per
target with its last error, a thumbnail opening the full image with its
window, and everything marked stale the moment the daemon stops, live again
once it is back. Each view leaves a screenshot in tests/artifacts/."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.browser import chromium, with_credentials  # noqa: F401  (fixture)
from tests.support.daemon_process import daemon_process
from tests.support.fake_datamint import FakeDatamint
from tests.support.forward import target
from tests.support.loopback import closed_port_url, free_port, serving_fake, wait_until
from tests.support.modality import API, control, create_session, device_of, put_info
from tests.support.server import PASSWORD, USER, make_settings, running

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STATUS = "/api/sensord/v1/status"
SUBSCRIBE = "*/api/sensord/v1/status/subscribe*"

COUNT = "return document.querySelectorAll(arguments[0]).length;"
DATA = "const node = document.querySelector(arguments[0]); return node && {...node.dataset};"
TEXT = "const node = document.querySelector(arguments[0]); return node && node.textContent;"
LIVE = "return document.body.dataset.live || null;"
IMAGES_LOADED = """
const images = [...document.querySelectorAll(arguments[0])];
return images.length > 0 && images.every((i) => i.complete && i.naturalWidth > 0) &&
       images.map((i) => [i.naturalWidth, i.naturalHeight]);
"""
# The mean gray of the shown image, read back through a canvas (same origin: not tainted).
MEAN_GRAY = """
const img = document.getElementById("full");
const canvas = document.createElement("canvas");
[canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
const ctx = canvas.getContext("2d");
ctx.drawImage(img, 0, 0);
const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
let sum = 0;
for (let i = 0; i < pixels.length; i += 4) sum += pixels[i];
return sum / (pixels.length / 4);
"""
SET_INPUT = """
const input = document.getElementById(arguments[0]);
input.value = arguments[1];
input.dispatchEvent(new Event(arguments[2]));
"""


def save(chromium, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(chromium.page_screenshot())
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    print(f"screenshot: {path}")
    return path


def snapshot(srv) -> dict:
    return srv.http.get(srv.url(STATUS)).json()


def expose(srv, dev: str, sid: str) -> str:
    assert put_info(srv, sid, enable=True).status_code == 200
    status = srv.url(f"{API}/acquisition/{sid}/status")
    assert wait_until(lambda: srv.http.get(status).json()["ready"])
    assert control(srv, dev, "expose").status_code == 200
    assert wait_until(lambda: srv.http.get(status).json().get("lastImageId"), 15)
    return srv.http.get(status).json()["lastImageId"]


@pytest.mark.process
def test_first_load_is_filled_before_any_event_then_live(chromium, tmp_path):
    good, refusing = FakeDatamint(), FakeDatamint()
    for _ in range(3):
        refusing.refuse_next("storage quota exceeded for project 7")
    mpps = {"host": "127.0.0.1", "port": free_port(), "called_ae": "MPPS"}
    with serving_fake(good) as (_, good_url), serving_fake(refusing) as (_, bad_url):
        targets = [target(good_url, name="archive"), target(bad_url, name="research"),
                   target(closed_port_url(), name="offsite", backoff_base=60, backoff_max=60)]
        forward = {"targets": targets, "rules": [{"target": t["name"], "source": "acquired"} for t in targets]}
        with running(make_settings(tmp_path / "state", forward=forward, mpps=mpps)) as srv:
            client = '</script><script id="injected">alert(1)</script>Imaging & Co'
            dev = device_of(srv, "Simradix Select")["deviceId"]
            sid = create_session(srv, dev, clientName=client)["sessionId"]
            image_id = expose(srv, dev, sid)
            assert wait_until(lambda: snapshot(srv)["outbox"]["counts"] == {"delivered": 1, "dead": 1, "pending": 1}
                              and all(d["state"] is None for d in snapshot(srv)["devices"]), 20)

            # The live feed is held (its request paused): what shows comes with the page.
            chromium.cdp("Fetch.enable", patterns=[{"urlPattern": SUBSCRIBE}])
            try:
                chromium.get(with_credentials(srv.base, USER, PASSWORD) + "/")
                assert chromium.execute(COUNT, "#devices tr[data-device-id]") == 3
                assert chromium.execute(COUNT, "#sessions tr[data-session-id]") == 1
                assert chromium.execute(COUNT, "#targets tr[data-target]") == 3
                assert chromium.execute(COUNT, f"#thumbnails figure[data-image-id='{image_id}']") == 1
                assert chromium.execute(LIVE) is None                 # no event came: never live yet
                assert chromium.execute(TEXT, "#connection") == "connecting…"
                assert chromium.execute("return document.getElementById('injected');") is None
                assert client in chromium.execute(TEXT, f"#sessions tr[data-session-id='{sid}']")
                chromium.wait_for(IMAGES_LOADED, "#devices img.icon, #thumbnails img")
                save(chromium, "status-first-load.png")
            finally:
                chromium.cdp("Fetch.disable")                       # the held request goes on
            chromium.wait_for("return document.body.dataset.live === 'live';")
            assert chromium.execute(TEXT, "#connection") == "connected"

            # Icons: one per interface type, 48x48, in every device row.
            icons = chromium.wait_for(IMAGES_LOADED, "#devices img.icon")
            assert icons == [[48, 48]] * 3
            # Idle devices say so: the free ones and the one whose exposure is done.
            assert [chromium.execute(DATA, f"#devices tr[data-device-id='{d['deviceId']}']")["state"]
                    for d in snapshot(srv)["devices"]] == ["Idle"] * 3
            assert chromium.execute(DATA, f"#devices tr[data-device-id='{dev}']")["status"] == "InUse"
            # The outbox per target: delivered, dead with the platform's refusal, waiting with its error.
            archive, research, offsite = (chromium.execute(DATA, f"#targets tr[data-target='{name}']")
                                          for name in ("archive", "research", "offsite"))
            assert (archive["health"], archive["delivered"], archive["pending"]) == ("ok", "1", "0")
            assert (research["health"], research["dead"]) == ("dead", "1")
            assert (offsite["health"], offsite["pending"]) == ("failing", "1")
            assert "storage quota exceeded for project 7" in chromium.execute(TEXT, "#targets tr[data-target='research']")
            assert "Connection refused" in chromium.execute(TEXT, "#targets tr[data-target='offsite'] td:last-child")
            assert chromium.execute(TEXT, "#targets tr[data-target='offsite'] .age").endswith(("s", "min"))
            assert chromium.execute(TEXT, "#targets tr[data-target='archive'] td:last-child") == ""
            assert chromium.execute(TEXT, "#mpps-counts") == "MPPS messages: none"
            assert chromium.execute(TEXT, "#outbox-counts") == "1 waiting · dead: 1, delivered: 1, pending: 1"
            # Live changes still come: a new session shows without a reload.
            other = device_of(srv, "Simradix Supreme")["deviceId"]
            sid2 = create_session(srv, other, clientName="second")["sessionId"]
            chromium.wait_for(COUNT, f"#sessions tr[data-session-id='{sid2}']")
            assert chromium.errors() == []
            save(chromium, "status-live.png")


@pytest.mark.process
def test_thumbnail_opens_the_full_image_with_window_control(chromium, tmp_path):
    with running(make_settings(tmp_path / "state")) as srv:
        dev = device_of(srv, "Simradix Select")["deviceId"]
        sid = create_session(srv, dev, clientName="panoramix")["sessionId"]
        image_id = expose(srv, dev, sid)
        chromium.get(with_credentials(srv.base, USER, PASSWORD) + "/")
        chromium.wait_for(IMAGES_LOADED, f"#thumbnails img[data-image-id='{image_id}']")
        chromium.click(f"#thumbnails figure[data-image-id='{image_id}'] a")
        chromium.wait_for("return location.pathname.startsWith('/view/');")
        chromium.wait_for("return document.getElementById('full').dataset.loads === '1';")
        first = chromium.execute(DATA, "#full")
        # The full image, not the thumbnail: its own size (within the view's 2048 bound).
        view = chromium.execute("return JSON.parse(document.getElementById('image').textContent);")
        size = chromium.execute("const i = document.getElementById('full'); return [i.naturalWidth, i.naturalHeight];")
        assert size == [view["width"], view["height"]] and max(size) > 256
        assert "panoramix" in chromium.execute(TEXT, "#meta")
        own = chromium.execute(MEAN_GRAY)
        save(chromium, "status-image-view.png")

        # A narrower window, typed in: the server renders it again, and it looks different.
        center, width = float(first["center"]), float(first["width"])
        chromium.execute(SET_INPUT, "width", str(round(width / 6)), "change")
        chromium.wait_for("return document.getElementById('full').dataset.loads === '2';")
        assert chromium.execute(DATA, "#full")["width"] == str(round(width / 6))
        narrow = chromium.execute(MEAN_GRAY)
        assert abs(narrow - own) > 5
        # The center slider moves it again.
        chromium.execute(SET_INPUT, "center-range", str(round(center - width / 12)), "input")
        chromium.wait_for("return document.getElementById('full').dataset.loads === '3';")
        assert chromium.execute("return document.getElementById('center').value;") == str(round(center - width / 12))
        assert abs(chromium.execute(MEAN_GRAY) - narrow) > 5
        assert "window center" in chromium.execute(TEXT, "#caption")
        assert chromium.errors() == []
        save(chromium, "status-image-window.png")


@pytest.mark.process
def test_everything_stale_when_the_daemon_stops_and_live_after_restart(chromium, tmp_path):
    with daemon_process(tmp_path, '[drivers]\nurls = ["sim://?time_scale=0.05&seed=5"]\n') as daemon:
        chromium.get(with_credentials(daemon.base, USER, PASSWORD) + "/")
        chromium.wait_for("return document.body.dataset.live === 'live';")
        dev = device_of(daemon, "Simradix Select")["deviceId"]
        sid = create_session(daemon, dev, clientName="before the stop")["sessionId"]
        image_id = expose(daemon, dev, sid)
        chromium.wait_for(DATA, f"#sessions tr[data-session-id='{sid}']")
        chromium.wait_for(IMAGES_LOADED, f"#thumbnails img[data-image-id='{image_id}']")
        assert chromium.execute(TEXT, "#stale-banner") == "" and chromium.execute(
            "return document.getElementById('stale-banner').hidden;")

        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        chromium.wait_for("return document.body.dataset.live === 'stale';", timeout=10)
        banner = chromium.execute(TEXT, "#stale-banner")
        assert banner.startswith("Not live since ") and not chromium.execute(
            "return document.getElementById('stale-banner').hidden;")
        assert chromium.execute(TEXT, "#connection") == "disconnected"
        # What was shown stays, greyed: devices, sessions, images, outbox alike.
        assert chromium.execute(COUNT, f"#sessions tr[data-session-id='{sid}']") == 1
        assert chromium.execute(COUNT, f"#thumbnails figure[data-image-id='{image_id}']") == 1
        uptime = chromium.execute(TEXT, "#uptime")              # frozen with the rest
        for section in ("#devices", "#sessions", "#thumbnails", "#outbox"):
            assert float(chromium.execute(
                "return getComputedStyle(document.querySelector(arguments[0]).closest('main')).opacity;",
                section)) < 1, section
            assert chromium.execute("return getComputedStyle(document.querySelector('main')).filter;") != "none"
        save(chromium, "status-stale.png")
        assert chromium.execute(TEXT, "#uptime") == uptime

        daemon.start()
        # Back: a fresh snapshot (the restart ended the session), no banner.
        chromium.wait_for("return document.body.dataset.live === 'live';", timeout=30)
        assert chromium.execute(COUNT, "#sessions tr[data-session-id]") == 0
        assert chromium.execute(COUNT, "#thumbnails figure") == 0
        assert chromium.execute("return document.getElementById('stale-banner').hidden;")
        assert chromium.execute("return document.body.dataset.drops;") == "1"
        assert float(chromium.execute("return getComputedStyle(document.querySelector('main')).opacity;")) == 1
        assert chromium.errors() == []
