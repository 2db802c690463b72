"""Resource lifetime: expiry, restart, quota, crashes, modality links."""
from __future__ import annotations

import errno
import time

import numpy as np
import pytest

from sensord import filters
from sensord.daemon import durable
from tests.support import images
from tests.support.filters_api import API, assert_error, upload
from tests.support.loopback import wait_until


def test_expired_resource_answers_404_and_is_swept(serve):
    srv = serve(store={"lifetime_seconds": 1, "sweep_seconds": 1})
    rid = upload(srv).json()["id"]
    assert srv.http.get(srv.url(f"{API}/images/{rid}")).status_code == 200
    assert wait_until(lambda: srv.http.get(srv.url(f"{API}/images/{rid}")).status_code == 404, 15)
    assert_error(srv.http.get(srv.url(f"{API}/images/{rid}/media")), 404)
    assert_error(srv.http.post(srv.url(f"{API}/images/{rid}/filters/unmap")), 404)
    assert wait_until(lambda: not (srv.daemon.store.root / rid).exists(), 15)
    assert srv.daemon.store.used_bytes == 0


def test_resources_survive_a_restart(serve, tmp_path):
    state = tmp_path / "kept"
    media = images.png16(images.raw_image())
    srv = serve(state_dir=state)
    res = upload(srv, media=media).json()
    srv.daemon.close()   # the first daemon's services end; its port is left to the fixture

    again = serve(state_dir=state)
    got = again.http.get(again.url(f"{API}/images/{res['id']}"))
    assert got.status_code == 200
    assert got.json()["createdOn"] == res["createdOn"]
    assert again.http.get(again.url(f"{API}/images/{res['id']}/media")).content == media
    filtered = again.http.post(again.url(f"{API}/images/{res['id']}/filters/unmap"))
    assert filtered.status_code == 200 and images.decode(filtered.content).shape == (120, 160)


def test_expired_while_stopped_is_gone_after_restart(serve, tmp_path):
    state = tmp_path / "kept"
    srv = serve(state_dir=state, store={"lifetime_seconds": 1})
    rid = upload(srv).json()["id"]
    srv.daemon.close()
    time.sleep(1.1)
    again = serve(state_dir=state, store={"lifetime_seconds": 1})
    assert_error(again.http.get(again.url(f"{API}/images/{rid}")), 404)
    assert not (again.daemon.store.root / rid).exists()


def test_quota_refuses_with_507_and_keeps_nothing_half(serve):
    srv = serve(store={"quota_mb": 1})
    noise = np.random.default_rng(2).integers(0, 4096, (300, 500), dtype=np.uint16)
    media = images.png16(noise)            # noise does not compress: ~280 KiB
    fits = (1 << 20) // (len(media) + 1024)  # 1 KiB: room for resource.json
    assert fits == (1 << 20) // len(media) == 3
    codes = [upload(srv, media=media).status_code for _ in range(5)]
    assert codes == [201] * 3 + [507] * 2, codes
    assert_error(upload(srv, media=media), 507, "quota")
    assert len(list(srv.daemon.store.root.iterdir())) == 3
    # Deleting frees the space again.
    rid = next(iter(srv.daemon.store._index))
    assert srv.http.delete(srv.url(f"{API}/images/{rid}")).status_code == 204
    assert upload(srv, media=media).status_code == 201


def test_disk_full_mid_write_leaves_no_half_resource(serve, monkeypatch):
    srv = serve()
    real = durable.write_file
    calls = []

    def failing(path, data, **kw):
        calls.append(path.name)
        if path.name == "resource.json":    # the media is already written by then
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, **kw)

    monkeypatch.setattr("sensord.daemon.store.resource_folder.write_file", failing)
    assert_error(upload(srv), 507, "storage")
    assert calls == ["media.png", "resource.json"]
    assert list(srv.daemon.store.root.iterdir()) == []
    assert srv.daemon.store.used_bytes == 0


def test_start_removes_what_a_crash_left(serve, tmp_path):
    state = tmp_path / "crashed"
    root = state / "resources"
    (root / ".new-0b7c").mkdir(parents=True)
    (root / ".new-0b7c" / "media.png").write_bytes(b"\x89PNG half")
    (root / ".del-77aa").mkdir()
    (root / "no-meta").mkdir()
    (root / "no-meta" / "media.png").write_bytes(b"x")
    srv = serve(state_dir=state)
    assert list(root.iterdir()) == []
    assert upload(srv).status_code == 201


class Registry:
    """Live session images as the acquisition service will offer them."""

    def __init__(self):
        self.images = {}

    def find(self, session_id, image_id):
        return self.images.get((session_id, image_id))


class LiveImage:
    def __init__(self, pixels):
        self._pixels = pixels
        self.image_info = {"id": "img-1", "width": pixels.shape[1], "height": pixels.shape[0],
                           "acquisitionInfo": {"binning": "Unbinned"}, "lutInfo": None}

    def media(self):
        return images.png16(self._pixels)

    def pixels(self):
        return self._pixels


def test_modality_resource_lives_as_long_as_its_session(serve):
    registry = Registry()
    srv = serve(prepare=lambda d: setattr(d, "session_images", registry))
    pixels = images.raw_image()
    registry.images[("s-1", "img-1")] = LiveImage(pixels)

    response = srv.http.post(srv.url(API + "/images/modality"), json={"sessionId": "s-1", "imageId": "img-1"})
    assert response.status_code == 201, response.text
    res = response.json()
    assert res["modalitySession"] == {"sessionId": "s-1", "imageId": "img-1"}
    assert res["imageInfo"]["width"] == 160
    assert images.decode(srv.http.get(res["url"]).content).tolist() == pixels.tolist()
    smoothed = srv.http.post(srv.url(f"{API}/images/{res['id']}/filters/select"), json={"enhancementMode": "smooth"})
    assert np.array_equal(images.decode(smoothed.content), filters.select(pixels, mode="smooth"))

    del registry.images[("s-1", "img-1")]          # the session ended
    assert srv.http.get(srv.url(f"{API}/images/{res['id']}")).status_code == 200
    assert_error(srv.http.get(res["url"]), 410, "session")
    assert_error(srv.http.post(srv.url(f"{API}/images/{res['id']}/filters/select"),
                               json={"enhancementMode": "smooth"}), 410)


@pytest.mark.parametrize("body,status", [
    ({"sessionId": "nope", "imageId": "nope"}, 404),
    ({"sessionId": "s"}, 400),
    ({"SessionId": "s", "ImageId": 5}, 400),
    ("not an object", 400),
])
def test_modality_resource_errors(serve, body, status):
    srv = serve()
    assert_error(srv.http.post(srv.url(API + "/images/modality"), json=body), status)


def test_modality_bad_json_is_400(serve):
    srv = serve()
    response = srv.http.post(srv.url(API + "/images/modality"), data=b"{",
                             headers={"Content-Type": "application/json"})
    assert_error(response, 400, "json")


def test_internal_errors_are_500_json_without_a_trace(serve):
    class Broken:
        def find(self, session_id, image_id):
            raise RuntimeError("database on fire")

    srv = serve(prepare=lambda d: setattr(d, "session_images", Broken()))
    response = srv.http.post(srv.url(API + "/images/modality"), json={"sessionId": "a", "imageId": "b"})
    assert_error(response, 500, "ref")
    assert "fire" not in response.text
