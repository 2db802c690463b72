"""multipart.parse_body: a body held in memory, split in place where the shape is
the common one, and read exactly as werkzeug's decoder reads it either way."""
from __future__ import annotations

import os

import pytest

from sensord.daemon.api import multipart
from sensord.daemon.api.multipart import MultipartError, PartTooLarge
from tests.support import images

BOUNDARY = b"sensordTestBoundary"
PNG_LIKE = b"\x89PNG\r\n\x1a\n" + os.urandom(50_000) + b"\r\n--sensordTestBoundar" + b"\n--x\r\n" + os.urandom(999)


def decoded(body: bytes, **options) -> list[tuple]:
    """What werkzeug's streaming decoder makes of ``body`` (fed in odd-sized pieces)."""
    pieces = (body[i:i + 4093] for i in range(0, len(body), 4093))
    return summary(multipart.parse(pieces, BOUNDARY, **options))


def summary(parts) -> list[tuple]:
    return [(p.name, p.filename, p.content_type, p.data) for p in parts]


def body_of(parts, boundary=BOUNDARY.decode()) -> bytes:
    return images.multipart(parts, boundary)[0]


COMMON = [
    [('name="imageInfo"', {"Content-Type": "application/json"}, b'{"a": 1}'),
     ('name="imageMedia"; filename="a.png"', {"Content-Type": "image/png"}, PNG_LIKE)],
    [('name="imageMedia"', {}, PNG_LIKE)],                                    # no filename (.NET SDK)
    [('name="empty"', {}, b""), ('name="x"', {}, b"\r\n")],                   # empty data, data that is a line break
    [('name="imageInfo"', {}, b"null"), ('name=imageMedia; filename="b.png"', {"X-Odd": " spaced "}, PNG_LIKE)],
]


@pytest.mark.parametrize("parts", COMMON, ids=range(len(COMMON)))
def test_the_common_shape_is_split_in_place_as_the_decoder_reads_it(parts):
    body = body_of(parts)
    got = multipart.parse_body(body, BOUNDARY)
    assert summary(got) == decoded(body)
    media = [p for p in got if len(p.view) == len(PNG_LIKE)]
    for part in media:                      # a view of the body, not a copy
        assert part.view.obj is body


UNCOMMON = {
    "preamble": b"a preamble line\r\n" + body_of(COMMON[0]),
    "LF only": body_of(COMMON[0]).replace(b"\r\n", b"\n"),
    "folded header": body_of(COMMON[0]).replace(b"Content-Type: image/png", b"Content-Type:\r\n image/png"),
    "padding after a delimiter": body_of(COMMON[0]).replace(b"--sensordTestBoundary\r\nContent-Disposition: form-data; "
                                                            b'name="imageMedia"',
                                                            b"--sensordTestBoundary  \r\nContent-Disposition: "
                                                            b'form-data; name="imageMedia"'),
    "epilogue": body_of(COMMON[0]) + b"an epilogue",
}


@pytest.mark.parametrize("name", list(UNCOMMON))
def test_any_other_shape_is_read_by_the_decoder(name):
    body = UNCOMMON[name]
    assert summary(multipart.parse_body(body, BOUNDARY)) == decoded(body)


@pytest.mark.parametrize("body", [body_of(COMMON[0])[:-40], b"just some bytes",
                                  body_of([('name="a"', {}, b"x")]).replace(b"Content-Disposition", b"X-Nothing")],
                         ids=["truncated", "no delimiter", "no disposition"])
def test_malformed_bodies_get_the_decoders_error(body):
    with pytest.raises(MultipartError, match="multipart"):
        multipart.parse_body(body, BOUNDARY)


def test_bounds_hold_in_place_too():
    many = body_of([(f'name="p{i}"', {}, b"x") for i in range(17)])
    with pytest.raises(MultipartError, match="more than 16 parts"):
        multipart.parse_body(many, BOUNDARY)
    big_info = body_of([('name="imageInfo"', {}, b"{" + b" " * 2048 + b"}")])
    with pytest.raises(PartTooLarge, match="imageInfo"):
        multipart.parse_body(big_info, BOUNDARY, part_limits={"imageinfo": 1024})
    assert PartTooLarge.status == 413
