"""Calls and checks on the Filters API that many tests make."""
from __future__ import annotations

from tests.support import images

API = "/api/dsio/filters/v1"


def upload(srv, info=None, media=None):
    media = images.png16(images.raw_image()) if media is None else media
    return srv.http.post(srv.url(API + "/images"), files=images.upload_files(info or images.image_info(), media))


def post_raw(srv, body: bytes, content_type: str):
    return srv.http.post(srv.url(API + "/images"), data=body, headers={"Content-Type": content_type})


def assert_error(response, status: int, *words: str):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status
    for word in words:
        assert word.lower() in body["message"].lower(), body["message"]
    assert "Traceback" not in response.text
