"""sensord.filters.png: header parsing on crafted bytes, bounded decoding, lossless encoding."""

import struct
import zlib

import cv2
import numpy as np
import pytest

from sensord.filters import png
from sensord.filters.png import (
    CorruptPngError,
    NotPngError,
    PngError,
    PngFormatError,
    PngHeader,
    PngTooLargeError,
    decode_gray16,
    encode_gray16,
    read_header,
)

SHAPES = [(1, 1), (1, 9), (9, 1), (5, 7), (64, 48), (600, 427)]
BOUND = dict(max_width=4096, max_height=4096)


def _chunk(kind: bytes, payload: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + payload) if crc is None else crc
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _ihdr(width, height, depth=16, color=0, compression=0, filter_method=0, interlace=0):
    return struct.pack(">IIBBBBB", width, height, depth, color, compression, filter_method, interlace)


def _png(width, height, *, depth=16, color=0, idat=b"", **fields) -> bytes:
    return (png.SIGNATURE + _chunk(b"IHDR", _ihdr(width, height, depth, color, **fields))
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def _handmade_gray16(image: np.ndarray) -> bytes:
    """A 16-bit gray PNG written by hand: filter byte 0, big-endian samples."""
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in image)
    return _png(image.shape[1], image.shape[0], idat=zlib.compress(rows))


# --- read_header -----------------------------------------------------------

def test_header_fields():
    header = read_header(_png(427, 600, depth=8, color=2, interlace=1))
    assert header == PngHeader(width=427, height=600, bit_depth=8, color_type=2, interlace=1)


@pytest.mark.parametrize("data", [b"", b"GIF89a" + b"\0" * 40, b"\xff\xd8\xff\xe0" + b"\0" * 40,
                                  b"\x89PNX\r\n\x1a\n" + b"\0" * 40])
def test_bad_signature(data):
    with pytest.raises(NotPngError, match="signature"):
        read_header(data)


def test_first_chunk_must_be_an_ihdr():
    data = png.SIGNATURE + _chunk(b"gAMA", b"\0" * 13) + _chunk(b"IHDR", _ihdr(4, 4))
    with pytest.raises(NotPngError, match="IHDR"):
        read_header(data)


def test_ihdr_must_be_13_bytes_long():
    data = png.SIGNATURE + _chunk(b"IHDR", _ihdr(4, 4)[:12]) + _chunk(b"IEND", b"")
    with pytest.raises(NotPngError, match="13-byte"):
        read_header(data)


def test_bad_ihdr_crc():
    data = png.SIGNATURE + _chunk(b"IHDR", _ihdr(4, 4), crc=12345) + _chunk(b"IEND", b"")
    with pytest.raises(CorruptPngError, match="CRC"):
        read_header(data)


@pytest.mark.parametrize("cut", [4, 8, 20, 32])
def test_truncated_header(cut):
    data = _png(4, 4)[:cut]
    with pytest.raises(CorruptPngError, match="truncated"):
        read_header(data)


@pytest.mark.parametrize("fields", [dict(width=0, height=4), dict(width=4, height=2**31),
                                    dict(width=4, height=4, compression=1),
                                    dict(width=4, height=4, filter_method=1),
                                    dict(width=4, height=4, interlace=2)])
def test_fields_outside_the_png_specification(fields):
    data = png.SIGNATURE + _chunk(b"IHDR", _ihdr(**fields))
    with pytest.raises(CorruptPngError):
        read_header(data)


def test_errors_are_value_errors():
    for cls in (NotPngError, PngFormatError, PngTooLargeError, CorruptPngError):
        assert issubclass(cls, PngError) and issubclass(cls, ValueError)


# --- decode_gray16 -----------------------------------------------------------

def test_decodes_a_handmade_file_with_big_endian_samples():
    image = np.array([[0, 1, 256], [65535, 4660, 43981]], np.uint16)
    np.testing.assert_array_equal(decode_gray16(_handmade_gray16(image), **BOUND), image)


@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_is_lossless(shape):
    image = np.random.default_rng(0).integers(0, 65536, shape, dtype=np.uint16)
    image.flat[0], image.flat[-1] = 0, 65535
    data = encode_gray16(image)
    header = read_header(data)
    assert (header.width, header.height, header.bit_depth, header.color_type) == (shape[1], shape[0], 16, 0)
    out = decode_gray16(data, **BOUND)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("level", [0, 1, 2, 6, 9])
def test_every_compression_level_is_lossless(level):
    image = np.random.default_rng(level).integers(0, 4096, (37, 51), dtype=np.uint16)
    np.testing.assert_array_equal(decode_gray16(encode_gray16(image, compression=level), **BOUND), image)


def test_eight_bit_gray_is_rejected_naming_depth_and_type():
    ok, data = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    with pytest.raises(PngFormatError, match="8-bit grayscale"):
        decode_gray16(data.tobytes(), **BOUND)


def test_sixteen_bit_rgb_is_rejected_naming_depth_and_type():
    ok, data = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(PngFormatError, match="16-bit RGB"):
        decode_gray16(data.tobytes(), **BOUND)


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (4097, 10), (10, 4097)])
def test_huge_dimensions_are_rejected_before_decoding(monkeypatch, width, height):
    def no_decoding(*args):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(png.cv2, "imdecode", no_decoding)
    with pytest.raises(PngTooLargeError, match=f"{width}x{height}"):
        decode_gray16(_png(width, height, idat=zlib.compress(b"\0" * 64)), **BOUND)


def test_format_is_checked_before_size(monkeypatch):
    monkeypatch.setattr(png.cv2, "imdecode", lambda *a: pytest.fail("pixels were decoded"))
    with pytest.raises(PngFormatError):
        decode_gray16(_png(100_000, 100_000, depth=8), **BOUND)


def test_undecodable_pixel_data():
    with pytest.raises(CorruptPngError, match="decode"):
        decode_gray16(_png(4, 4, idat=b"not zlib at all"), **BOUND)


def test_truncated_pixel_data():
    data = encode_gray16(np.random.default_rng(1).integers(0, 65536, (64, 64), dtype=np.uint16))
    with pytest.raises(CorruptPngError):
        decode_gray16(data[: len(data) // 2], **BOUND)


def test_not_png_at_all():
    with pytest.raises(NotPngError):
        decode_gray16(b"hello world, this is not an image at all", **BOUND)


@pytest.mark.parametrize("bounds", [dict(max_width=0, max_height=10), dict(max_width=10, max_height=1.5),
                                    dict(max_width="10", max_height=10)])
def test_bad_bounds(bounds):
    with pytest.raises(ValueError, match="max_"):
        decode_gray16(_png(4, 4), **bounds)


# --- encode_gray16 -----------------------------------------------------------

@pytest.mark.parametrize("level", [-1, 10, 1.5, "1", None, True])
def test_bad_compression_level(level):
    with pytest.raises(ValueError, match="compression"):
        encode_gray16(np.zeros((2, 2), np.uint16), compression=level)


def test_encode_rejects_other_dtypes():
    with pytest.raises(TypeError, match="uint16"):
        encode_gray16(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        encode_gray16(np.zeros((2, 2, 3), np.uint16))
