"""sensord.filters.png_writer: standard 16-bit PNGs that independent decoders read bit-exact.

Three decoders besides our own: OpenCV (libpng), Pillow (its own PNG code
over zlib) and pypng (pure Python, its own un-filtering). Every size class,
every compression level, one strip and several (the joined zlib stream).
"""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import png as pypng
import pytest
from PIL import Image

from sensord.filters import png, png_writer
from sensord.filters.png import decode_gray16, encode_gray16

BOUND = dict(max_width=8192, max_height=8192)


def _cv2(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def _pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode.startswith("I")       # 16-bit gray, not scaled to 8 bits
        return np.asarray(image).astype(np.uint16)


def _pypng(data: bytes) -> np.ndarray:
    width, height, rows, info = pypng.Reader(bytes=data).read()
    assert (info["bitdepth"], info["greyscale"], info["alpha"]) == (16, True, False)
    return np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(height, width)


DECODERS = {"ours": lambda d: decode_gray16(d, **BOUND), "cv2": _cv2, "pillow": _pillow, "pypng": _pypng}


def _image(shape, seed=0) -> np.ndarray:
    """Noise over a ramp, with the extreme values present."""
    rng = np.random.default_rng(seed)
    rows, columns = (np.arange(n, dtype=np.uint16) for n in shape)
    image = rng.integers(0, 4096, shape, dtype=np.uint16)
    image += rows[:, None] * np.uint16(7) + columns * np.uint16(3)     # wraps modulo 65536
    image.flat[0], image.flat[-1] = 65535, 0
    return image


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, checking lengths and CRCs on the way."""
    assert data[:8] == png.SIGNATURE
    pos, out = 8, []
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert len(body) == length and zlib.crc32(kind + body) == crc
        out.append((kind, body))
        pos += 12 + length
    return out


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 3), (5, 7), (13, 17), (64, 48), (427, 601)])
@pytest.mark.parametrize("strips", [1, 2, 3])
@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_every_decoder_reads_every_size_bit_exact(shape, strips, decoder):
    image = _image(shape, seed=sum(shape) + strips)
    data = png_writer.write(image, level=1, strips=strips)
    out = DECODERS[decoder](data)
    assert out.shape == shape
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("level", range(10))
@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_every_level_is_lossless_for_every_decoder(level, decoder):
    image = _image((37, 51), seed=level)
    np.testing.assert_array_equal(DECODERS[decoder](encode_gray16(image, compression=level)), image)


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_a_radiograph_sized_image_in_two_strips(decoder):
    """2400x1708, the Supreme size 2 frame: the default path (two strips joined)."""
    image = _image((1708, 2400), seed=3)
    data = encode_gray16(image)
    assert len([kind for kind, _ in _chunks(data) if kind == b"IDAT"]) == 1
    np.testing.assert_array_equal(DECODERS[decoder](data), image)


def test_the_largest_image_the_default_configuration_accepts():
    """8192x8192 (images.max_width x max_height), read back by three decoders
    (pypng, pure Python, would take minutes here)."""
    image = _image((8192, 8192), seed=8)
    data = encode_gray16(image)
    for decoder in ("ours", "cv2", "pillow"):
        out = DECODERS[decoder](data)
        assert np.array_equal(out, image), decoder
        del out


def test_the_file_is_plain_standard_png():
    """Signature, IHDR (16-bit gray, no interlace), IDAT, IEND and nothing
    else; one zlib stream whose Adler-32 covers every filtered row."""
    image = _image((40, 30))
    data = png_writer.write(image, level=1, strips=3)
    chunks = _chunks(data)
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert chunks[0][1] == struct.pack(">IIBBBBB", 30, 40, 16, 0, 0, 0, 0)
    rows = zlib.decompress(chunks[1][1])        # zlib checks the header and the Adler-32
    assert len(rows) == 40 * (1 + 2 * 30)
    assert set(rows[::61]) == {2}               # every row Up-filtered
    assert chunks[2][1] == b""


def test_level_zero_stores_the_rows_unfiltered():
    image = _image((20, 10))
    idat = _chunks(encode_gray16(image, compression=0))[1][1]
    rows = zlib.decompress(idat)
    assert set(rows[::21]) == {0}
    assert rows[1:21] == image[0].astype(">u2").tobytes()
    assert len(idat) > len(rows)                # stored, not compressed


def test_strips_are_joined_at_a_sync_point():
    """Every strip but the last ends with an empty stored block (00 00 FF FF);
    only the last has the final bit, so zlib reads one stream to its end."""
    image = _image((9, 7))
    one = _chunks(png_writer.write(image, level=1, strips=1))[1][1]
    three = _chunks(png_writer.write(image, level=1, strips=3))[1][1]
    assert three.count(b"\x00\x00\xff\xff") >= 2
    assert zlib.decompress(one) == zlib.decompress(three)
    inflater = zlib.decompressobj()
    assert inflater.decompress(three) == zlib.decompress(one) and inflater.eof and not inflater.unused_data


def test_more_strips_than_rows_is_one_strip_per_row():
    image = _image((2, 5))
    np.testing.assert_array_equal(decode_gray16(png_writer.write(image, strips=8), **BOUND), image)


@pytest.mark.parametrize("sizes", [(0, 0), (1, 0), (0, 1), (5, 9), (65521, 3), (70000, 140000), (1 << 20, 1 << 21)])
def test_adler32_combine_agrees_with_zlib(sizes):
    rng = np.random.default_rng(sum(sizes))
    first, second = (rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes)
    assert png_writer.adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second)) \
        == zlib.adler32(first + second)


def test_no_larger_than_the_libpng_output_it_replaces_on_a_simulated_radiograph():
    """A 12-bit phantom, raw and LUT-mapped: the new writer's output is no
    larger than OpenCV's fastest setting (Huffman only, Up) made."""
    from sensord import filters
    from sensord.drivers.phantom import phantom

    raw = phantom(width=600, height=427, bits=12, seed=7)
    mapped = filters.lut_map(raw, lut=filters.lut_from_histogram(raw, gamma=2.3, total_grays=4096))
    for image in (raw, mapped):
        ok, before = cv2.imencode(".png", image, [
            cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
            cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP])
        assert ok and len(encode_gray16(image)) <= before.size


def test_non_contiguous_and_byte_swapped_input_encodes_the_values():
    image = _image((30, 40))
    for view in (image[::2, ::3], image.T, image.astype(">u2")):
        np.testing.assert_array_equal(decode_gray16(encode_gray16(view), **BOUND), view)
