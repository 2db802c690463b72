"""Sending raw JSON bytes as real clients label them, for tests of what the
daemon refuses: the bytes are sent as given, never re-serialized."""
from __future__ import annotations

from tests.support import images
from tests.support.filters_api import API, post_raw

MEDIA = images.png16(images.raw_image(24, 32))


def info_upload(srv, info_bytes: bytes, media: bytes = MEDIA):
    """POST /images with ``info_bytes`` as the imageInfo part, labelled text/plain as .NET's StringContent does."""
    body, ctype = images.multipart([
        ('name="imageInfo"', {"Content-Type": "text/plain; charset=utf-8"}, info_bytes),
        ('name="imageMedia"; filename="a.png"', {"Content-Type": "image/png"}, media),
    ])
    return post_raw(srv, body, ctype)


def send_json(srv, path: str, body: bytes, method: str = "POST"):
    """``body`` to ``path`` labelled text/plain, as the vendor's SDK labels its JSON;
    to POST /images it goes as the imageInfo part of an upload."""
    if path == API + "/images":
        return info_upload(srv, body)
    return srv.http.request(method, srv.url(path), data=body,
                            headers={"Content-Type": "text/plain; charset=utf-8"})
