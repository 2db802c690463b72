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


# --- decoding bounded by what the file declares --------------------------------
# A PNG's numbers (chunk lengths, dimensions) are claims. The decoder proves
# each against the bytes before acting on it; OpenCV, which allocated what a
# chunk length claimed (4 GB for an 87-byte file), sees only a PNG we wrote.

def _raw_rows(image: np.ndarray, kinds=(0,)) -> bytes:
    """Scanlines of a 16-bit gray image, row r filtered with kinds[r % len(kinds)] (PNG filter types 0-4)."""
    height, width = image.shape
    samples = image.astype(">u2").view(np.uint8).reshape(height, 2 * width).astype(np.int32)
    prev = np.zeros(2 * width, np.int32)
    rows = []
    for r in range(height):
        kind, cur = kinds[r % len(kinds)], samples[r]
        left = np.concatenate([[0, 0], cur[:-2]])
        corner = np.concatenate([[0, 0], prev[:-2]])
        if kind == 4:
            p = left + prev - corner
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - corner)
            predicted = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, corner))
        else:
            predicted = [0 * cur, left, prev, (left + prev) // 2][kind]
        rows.append(bytes([kind]) + ((cur - predicted) % 256).astype(np.uint8).tobytes())
        prev = cur
    return b"".join(rows)


def _adam7_rows(image: np.ndarray) -> bytes:
    """Scanlines of an interlaced image: the seven Adam7 passes, filter type 0."""
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    return b"".join(_raw_rows(image[y0::dy, x0::dx]) for x0, y0, dx, dy in passes
                    if image[y0::dy, x0::dx].size)


def _split_idat(stream: bytes, size: int) -> bytes:
    return b"".join(_chunk(b"IDAT", stream[i:i + size]) for i in range(0, len(stream), size))


def _file(width, height, body: bytes, *, interlace=0) -> bytes:
    """Signature, IHDR of a 16-bit gray image, ``body`` (chunks), IEND."""
    return (png.SIGNATURE + _chunk(b"IHDR", _ihdr(width, height, interlace=interlace)) + body
            + _chunk(b"IEND", b""))


def _zeros_stream(mib: int) -> bytes:
    """A zlib stream of ``mib`` MiB of zeros, ~1 KiB per MiB. Each MiB is
    compressed after a full flush, which resets the compressor, so the same
    bytes repeat; only the final checksum (never reached here) is off."""
    packer = zlib.compressobj(1)
    first = packer.compress(bytes(1 << 20)) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(bytes(1 << 20)) + packer.flush(zlib.Z_FULL_FLUSH)
    return first + again * (mib - 1) + packer.flush()


@pytest.fixture
def no_opencv(monkeypatch):
    """Fail if the file's bytes reach OpenCV: a lie must be refused before."""
    monkeypatch.setattr(png.cv2, "imdecode", lambda *a: pytest.fail("the bytes reached OpenCV"))


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (13, 17), (64, 48)])
@pytest.mark.parametrize("kinds", [(0,), (1,), (2,), (3,), (4,), (0, 1, 2), (2, 1, 0, 1), (0, 1, 2, 3, 4)])
def test_every_row_filter_decodes_exactly(shape, kinds):
    image = np.random.default_rng(sum(shape)).integers(0, 65536, shape, dtype=np.uint16)
    # 7-byte IDAT chunks: the stream is split anywhere, even inside a row.
    data = _file(shape[1], shape[0], _chunk(b"tEXt", b"k\0v") + _split_idat(zlib.compress(_raw_rows(image, kinds)), 7))
    out = decode_gray16(data, **BOUND)
    assert out.dtype == np.uint16 and out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (8, 8), (37, 29)])
def test_interlaced_images_decode_exactly(shape):
    image = np.random.default_rng(7).integers(0, 65536, shape, dtype=np.uint16)
    data = _file(shape[1], shape[0], _chunk(b"IDAT", zlib.compress(_adam7_rows(image))), interlace=1)
    np.testing.assert_array_equal(decode_gray16(data, **BOUND), image)


@pytest.mark.parametrize("kind, length", [(b"IDAT", 0xFFFFFFF0), (b"IDAT", 2**31 - 1), (b"tEXt", 0x7FFFFF00),
                                          (b"IDAT", None)])
def test_a_chunk_claiming_more_bytes_than_follow_is_refused_before_anything_is_read(no_opencv, kind, length):
    """The 4 GB bomb: an 87-byte file whose chunk claims ~4 GiB (None: one byte more than is there)."""
    rows = zlib.compress(b"\0" * (64 * 129))
    body = _chunk(kind, rows) if kind != b"IDAT" else b""
    body += _chunk(b"IDAT", rows)
    data = bytearray(_file(64, 64, body))
    data[33:37] = struct.pack(">I", len(data) - 33 - 12 + 1 if length is None else length)
    with pytest.raises(CorruptPngError, match=r"claims \d+ bytes of data, only \d+ follow"):
        decode_gray16(bytes(data), **BOUND)


def test_pixel_data_inflating_beyond_the_header_is_refused_within_the_declared_bytes(no_opencv):
    """64 MiB of zeros behind a 64x64 header: refused after 64 * 129 bytes plus one, not accepted."""
    import tracemalloc

    data = _file(64, 64, _split_idat(_zeros_stream(64), 1 << 16))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptPngError, match="inflates to more than the 8256 bytes its header declares"):
            decode_gray16(data, **BOUND)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_bomb_at_the_size_limit_holds_no_more_than_the_declared_image(no_opencv):
    """A 4096x4096 header (the bound) over 512 MiB of zeros: what it holds
    is the declared 32 MiB plus one zlib call's output, however far it inflates."""
    from tests.support.memory import peak_bytes, reset_peak

    data = _file(4096, 4096, _split_idat(_zeros_stream(512), 1 << 16))
    before = reset_peak()
    with pytest.raises(CorruptPngError, match="inflates to more than"):
        decode_gray16(data, **BOUND)
    assert peak_bytes() - before < 4096 * (1 + 2 * 4096) + (4 << 20)


def test_too_little_pixel_data_is_refused(no_opencv):
    rows = _raw_rows(np.zeros((64, 64), np.uint16))
    with pytest.raises(CorruptPngError, match="inflates to 8127 bytes, its header declares 8256"):
        decode_gray16(_file(64, 64, _chunk(b"IDAT", zlib.compress(rows[:-129]))), **BOUND)


@pytest.mark.parametrize("where", ["after IEND", "after the zlib stream", "between IDAT chunks"])
def test_trailing_and_interleaved_garbage_is_refused(no_opencv, where):
    stream = zlib.compress(_raw_rows(np.zeros((16, 16), np.uint16)))
    if where == "after IEND":
        data = _file(16, 16, _chunk(b"IDAT", stream)) + b"<html>"
    elif where == "after the zlib stream":
        data = _file(16, 16, _chunk(b"IDAT", stream + b"<html>"))
    else:
        data = _file(16, 16, _chunk(b"IDAT", stream[:9]) + _chunk(b"tEXt", b"k\0v") + _chunk(b"IDAT", stream[9:]))
    with pytest.raises(CorruptPngError, match="follow|consecutive"):
        decode_gray16(data, **BOUND)


def test_repeated_empty_iend_chunks_are_passed_over(no_opencv):
    # Orthanc 1.10's /image-uint16 PNGs end with two IEND chunks; libpng reads them.
    image = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 97
    data = _file(16, 16, _chunk(b"IDAT", zlib.compress(_raw_rows(image)))) + _chunk(b"IEND", b"") * 2
    assert np.array_equal(decode_gray16(data, **BOUND), image)


@pytest.mark.parametrize("tail", [_chunk(b"IEND", b"") + b"<html>", _chunk(b"IEND", b"x"),
                                  _chunk(b"IEND", b"", crc=1), _chunk(b"tEXt", b"k\0v")])
def test_only_exact_empty_iend_repeats_may_follow_iend(no_opencv, tail):
    stream = zlib.compress(_raw_rows(np.zeros((16, 16), np.uint16)))
    with pytest.raises(CorruptPngError, match="follow its IEND"):
        decode_gray16(_file(16, 16, _chunk(b"IDAT", stream)) + tail, **BOUND)


def test_many_tiny_chunks_are_refused_quickly(no_opencv):
    import time

    stream = zlib.compress(_raw_rows(np.zeros((16, 16), np.uint16)))
    data = _file(16, 16, _chunk(b"tEXt", b"") * (png._MAX_CHUNKS + 1) + _chunk(b"IDAT", stream))
    started = time.monotonic()
    with pytest.raises(CorruptPngError, match="more than 131072 chunks"):
        decode_gray16(data, **BOUND)
    assert time.monotonic() - started < 2.0


def test_one_byte_idat_chunks_below_the_limit_still_decode():
    image = np.random.default_rng(5).integers(0, 65536, (40, 30), dtype=np.uint16)
    data = _file(30, 40, _split_idat(zlib.compress(_raw_rows(image, (2,))), 1))
    np.testing.assert_array_equal(decode_gray16(data, **BOUND), image)


def test_every_truncation_is_refused_before_opencv(no_opencv):
    image = np.random.default_rng(9).integers(0, 65536, (12, 10), dtype=np.uint16)
    data = _file(10, 12, _chunk(b"gAMA", b"\0\0\xb1\x8f") + _split_idat(zlib.compress(_raw_rows(image, (4,))), 50))
    for cut in range(len(data)):
        with pytest.raises(PngError):
            decode_gray16(data[:cut], **BOUND)


@pytest.mark.parametrize("position", [40, 60, -20, -3])
def test_a_flipped_bit_anywhere_fails_a_crc(no_opencv, position):
    image = np.random.default_rng(2).integers(0, 65536, (12, 10), dtype=np.uint16)
    data = bytearray(_file(10, 12, _split_idat(zlib.compress(_raw_rows(image)), 64)))
    data[position] ^= 0x10
    with pytest.raises(CorruptPngError, match="CRC"):
        decode_gray16(bytes(data), **BOUND)


@pytest.mark.parametrize("body", [_chunk(b"IDAT", b"") + _chunk(b"IHDR", _ihdr(4, 4)),
                                  _chunk(b"IDAT", b"") + _chunk(b"ZZZZ", b""),
                                  _chunk(b"IDAT", b"") + _chunk(b"t3Xt", b"")])
def test_a_second_ihdr_an_unknown_critical_chunk_or_a_bad_type_is_refused(no_opencv, body):
    with pytest.raises(CorruptPngError, match="critical|valid type"):
        decode_gray16(_file(4, 4, body), **BOUND)


def test_an_animated_png_is_refused_as_a_format(no_opencv):
    stream = zlib.compress(_raw_rows(np.zeros((4, 4), np.uint16)))
    data = _file(4, 4, _chunk(b"acTL", struct.pack(">II", 2, 0)) + _chunk(b"IDAT", stream))
    with pytest.raises(PngFormatError, match="animation"):
        decode_gray16(data, **BOUND)


def test_the_decoded_image_holds_one_buffer():
    """Unfiltered in place: the pixels share the inflate buffer, not a copy of it."""
    image = np.random.default_rng(4).integers(0, 65536, (300, 200), dtype=np.uint16)
    out = decode_gray16(encode_gray16(image), **BOUND)
    np.testing.assert_array_equal(out, image)
    assert out.base is not None and out.base.nbytes == png.raw_size(read_header(encode_gray16(image)))


def test_an_unknown_row_filter_type_is_refused(no_opencv):
    rows = bytearray(_raw_rows(np.zeros((4, 4), np.uint16)))
    rows[9 * 2] = 5                                  # the third row's filter byte
    with pytest.raises(CorruptPngError, match="unknown filter type 5"):
        decode_gray16(_file(4, 4, _chunk(b"IDAT", zlib.compress(bytes(rows)))), **BOUND)
