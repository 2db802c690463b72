"""What the status page is served with, through the real server: the snapshot
inside the page, the devices' idle state, the outbox per target, and the
windowed JPEG of a full image (api/image_view.py)."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from sensord.daemon.api.image_view import jpeg_url
from tests.support.fake_datamint import FakeDatamint
from tests.support.forward import target
from tests.support.loopback import closed_port_url, serving_fake, wait_until
from tests.support.modality import API, control, create_session, device_of, put_info
from tests.support.server import CLIENT, CLIENT_PASSWORD

STATUS = "/api/sensord/v1/status"
HOSTILE = '</script><script id="injected">alert(1)</script><!-- & "quotes" \u2028'


def snapshot(srv) -> dict:
    response = srv.http.get(srv.url(STATUS))
    assert response.status_code == 200, response.text
    return response.json()


def data_block(html: str, element_id: str):
    found = re.findall(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    assert len(found) == 1, html
    return json.loads(found[0])


def exposed_image(srv, model="Simradix Select", **session) -> tuple[str, str, str]:
    """(device, session, image) after one exposure."""
    dev = device_of(srv, model)["deviceId"]
    sid = create_session(srv, dev, **session)["sessionId"]
    assert put_info(srv, sid, enable=True).status_code == 200
    status = srv.url(f"{API}/acquisition/{sid}/status")
    assert wait_until(lambda: srv.http.get(status).json()["ready"])
    assert control(srv, dev, "expose").status_code == 200
    assert wait_until(lambda: srv.http.get(status).json().get("lastImageId"), 15)
    return dev, sid, srv.http.get(status).json()["lastImageId"]


def all_idle(srv) -> bool:
    return all(d["state"] is None for d in snapshot(srv)["devices"])


# -- the snapshot in the page ------------------------------------------------------
def test_page_carries_the_current_snapshot_escaped(serve):
    srv = serve()
    assert wait_until(lambda: all_idle(srv))
    dev = device_of(srv, "Simradix Select")["deviceId"]
    create_session(srv, dev, clientName=HOSTILE, context={"note": HOSTILE})
    page = srv.http.get(srv.url("/"))
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    # The client's text cannot end the data block nor open a comment or a tag.
    assert HOSTILE not in page.text and "<script id=\"injected\">" not in page.text
    assert page.text.count("</script>") == 2          # status.js and the data block
    served = data_block(page.text, "snapshot")
    assert served == snapshot(srv)
    assert served["sessions"][0]["clientName"] == HOSTILE
    # No inline script may run: the policy stays strict.
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "script-src" not in csp


def test_devices_show_idle_once_warm_and_after_a_disarm(serve):
    srv = serve()
    # Warm and unarmed: idle (null), not the start-up's Initializing.
    assert wait_until(lambda: all_idle(srv))
    dev, sid, _ = exposed_image(srv)
    assert wait_until(lambda: all_idle(srv))              # after the frame: idle again
    assert put_info(srv, sid, enable=True).status_code == 200
    device = lambda: next(d for d in snapshot(srv)["devices"] if d["deviceId"] == dev)   # noqa: E731
    assert wait_until(lambda: device()["state"] == "Ready")
    assert device()["status"] == "InUse"
    assert srv.http.delete(srv.url(f"{API}/acquisition/{sid}")).status_code == 200
    assert device()["state"] is None                      # disarmed: idle, though it last said Ready
    assert device()["status"] == "Available"
    # A fault shows as itself, then the warm-up after it ends idle.
    assert control(srv, dev, "fault").status_code == 200
    assert wait_until(lambda: device()["state"] == "Error")
    assert control(srv, dev, "clear-fault").status_code == 200
    assert wait_until(lambda: device()["state"] is None)


def test_devices_carry_their_icon(serve):
    srv = serve()
    for device in snapshot(srv)["devices"]:
        assert device["iconUrl"] == f"/api/dsio/modality/v1/icons/{device['interfaceType']}.png"
        icon = srv.http.get(srv.url(device["iconUrl"]))
        assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/png"
        assert cv2.imdecode(np.frombuffer(icon.content, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (48, 48)


# -- the outbox per target -------------------------------------------------------
def test_outbox_per_target_counts_age_and_last_error(serve):
    good, refusing = FakeDatamint(), FakeDatamint()
    for _ in range(3):
        refusing.refuse_next("storage quota exceeded for project 7")
    with serving_fake(good) as (_, good_url), serving_fake(refusing) as (_, bad_url):
        targets = [target(good_url, name="archive"), target(bad_url, name="research"),
                   target(closed_port_url(), name="offsite", backoff_base=60, backoff_max=60)]
        srv = serve(forward={"targets": targets,
                             "rules": [{"target": t["name"], "source": "acquired"} for t in targets]})
        before = snapshot(srv)["outbox"]["targets"]
        assert [t["name"] for t in before] == ["archive", "research", "offsite"]
        assert all(t["counts"] == {} and t["lastError"] is None and t["oldestPending"] is None for t in before)
        _, _, image_id = exposed_image(srv)

        def settled():
            rows = {t["name"]: t for t in snapshot(srv)["outbox"]["targets"]}
            return (rows["archive"]["counts"] == {"delivered": 1} and rows["research"]["counts"] == {"dead": 1}
                    and rows["offsite"]["lastError"] is not None) and rows
        rows = wait_until(settled, 20) and settled()
    assert rows, snapshot(srv)["outbox"]
    archive, research, offsite = rows["archive"], rows["research"], rows["offsite"]
    assert archive["kind"] == "datamint" and archive["configured"] is True
    assert archive["lastError"] is None and archive["oldestPending"] is None
    assert "storage quota exceeded for project 7" in research["lastError"]["message"]
    assert research["oldestPending"] is None and research["lastError"]["at"].endswith("Z")
    # Waiting a minute for its next try: pending since the image was queued.
    assert offsite["counts"] == {"pending": 1} and offsite["oldestPending"].endswith("Z")
    assert offsite["oldestPending"] <= offsite["lastError"]["at"]
    assert offsite["lastError"]["entryId"] == next(f["id"] for f in snapshot(srv)["outbox"]["failures"]
                                                   if f["target"] == "offsite" and f["imageId"] == image_id)


# -- the full image, windowed ---------------------------------------------------------
def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.dtype == np.uint8 and image.ndim == 2
    return image


def test_full_image_as_a_jpeg_windowed_on_the_server(serve):
    srv = serve()
    _, sid, iid = exposed_image(srv, clientName=HOSTILE)
    page = srv.http.get(srv.url(f"/view/{sid}/{iid}"))
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert HOSTILE not in page.text
    view = data_block(page.text, "image")
    assert view["clientName"] == HOSTILE and view["jpegUrl"] == jpeg_url(sid, iid)
    png = decode_png16(srv.http.get(srv.url(f"{API}/acquisition/{sid}/images/{iid}/media")).content)
    assert (view["height"], view["width"]) == png.shape

    url = srv.url(view["jpegUrl"])
    own = srv.http.get(url)
    assert own.status_code == 200 and own.headers["Content-Type"] == "image/jpeg"
    assert decode(own.content).shape == png.shape             # within the default size: full resolution
    window = view["window"]
    same = srv.http.get(url, params={"center": window["center"], "width": window["width"]})
    assert same.content == own.content                        # the view starts with the image's own window
    narrow = srv.http.get(url, params={"center": window["center"], "width": window["width"] / 8})
    assert narrow.status_code == 200
    assert np.abs(decode(narrow.content).astype(int) - decode(own.content)).mean() > 5
    small = decode(srv.http.get(url, params={"size": 64}).content)
    assert max(small.shape) == 64

    for query, word in (({"center": "x", "width": "1"}, "center"), ({"center": "100"}, "together"),
                        ({"center": "100", "width": "0"}, "width"), ({"center": "nan", "width": "5"}, "finite"),
                        ({"size": "4097"}, "size"), ({"zoom": "2"}, "unknown")):
        bad = srv.http.get(url, params=query)
        assert bad.status_code == 400 and word in bad.json()["message"], query
    assert srv.http.get(srv.url(jpeg_url(sid, "nope"))).status_code == 404
    assert srv.http.get(srv.url(f"/view/{sid}/nope")).status_code == 404
    assert srv.http.get(srv.url(jpeg_url("nope", iid))).status_code == 404
    # The imaging software's role reads its own session through the Modality API, not this.
    client = srv.as_user(CLIENT, CLIENT_PASSWORD)
    assert client.http.get(url).status_code == 403
    assert client.http.get(srv.url(f"/view/{sid}/{iid}")).status_code == 403
    # A session that ended takes its images with it.
    assert srv.http.delete(srv.url(f"{API}/acquisition/{sid}")).status_code == 200
    assert srv.http.get(url).status_code == 404


def test_full_image_within_the_pixel_budget(serve):
    srv = serve(images={"pixel_budget_mb": 4})
    _, sid, iid = exposed_image(srv)
    response = srv.http.get(srv.url(jpeg_url(sid, iid)))
    assert response.status_code == 413 and "pixel budget" in response.json()["message"]


def decode_png16(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.dtype == np.uint16
    return image


@pytest.mark.parametrize("value", ["</script>", "<!--", "\u2028", "&amp;"])
def test_json_for_html_round_trips(value):
    from sensord.daemon.api.page_data import fill, placeholder

    html = fill(f"<head>{placeholder('x')}</head>", "x", {"v": value})
    text = html.removeprefix('<head><script type="application/json" id="x">').removesuffix("</script></head>")
    assert not set(text) & {"<", ">", "&", "\u2028"} and text.isascii()
    assert data_block(html, "x") == {"v": value}
