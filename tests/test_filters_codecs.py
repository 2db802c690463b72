"""sensord.filters.codecs.encode: lossless 16-bit PNG/TIFF, windowed 8-bit JPEG/GIF."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from sensord.filters.codecs import MEDIA_TYPES, encode
from sensord.filters.display import to_8bit
from sensord.filters.lut import Lut

SHAPES = [(1, 1), (1, 9), (9, 1), (5, 7), (64, 48), (600, 427)]
LUT = Lut(gamma=2.3, slope=65535, offset=0, total_grays=4096, minimum_gray=3612, maximum_gray=418)


def _random(shape, seed=0):
    image = np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)
    image.flat[0], image.flat[-1] = 0, 65535
    return image


def _gradient(lo=300, hi=3800, shape=(40, 600)):
    return np.tile(np.linspace(lo, hi, shape[1]).round().astype(np.uint16), (shape[0], 1))


def _cv2_decode(data):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_png_is_the_default_media_type():
    assert MEDIA_TYPES[0] == "image/png"
    assert set(MEDIA_TYPES) == {"image/png", "image/tiff", "image/jpeg", "image/gif"}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("media_type", ["image/png", "image/tiff"])
def test_sixteen_bit_formats_are_bit_exact(shape, media_type):
    image = _random(shape)
    out = _cv2_decode(encode(image, media_type=media_type, lut=LUT))
    assert out.dtype == np.uint16 and out.shape == shape
    np.testing.assert_array_equal(out, image)


def test_tiff_also_reads_back_exactly_with_pillow():
    image = _random((33, 47))
    with Image.open(io.BytesIO(encode(image, media_type="image/tiff"))) as tiff:
        assert tiff.mode == "I;16"
        np.testing.assert_array_equal(np.array(tiff), image)


def test_signatures():
    image = _random((8, 8))
    assert encode(image, media_type="image/png").startswith(b"\x89PNG\r\n\x1a\n")
    assert encode(image, media_type="image/tiff")[:4] in (b"II*\0", b"MM\0*")
    assert encode(image, media_type="image/jpeg").startswith(b"\xff\xd8")
    assert encode(image, media_type="image/gif").startswith(b"GIF8")


@pytest.mark.parametrize("shape", SHAPES)
def test_jpeg_is_8_bit_gray_of_the_right_shape(shape):
    out = _cv2_decode(encode(_random(shape), media_type="image/jpeg"))
    assert out.dtype == np.uint8 and out.shape == shape


@pytest.mark.parametrize("shape", SHAPES)
def test_gif_is_8_bit_gray_of_the_right_shape_and_exact(shape):
    image = _random(shape)
    with Image.open(io.BytesIO(encode(image, media_type="image/gif"))) as gif:
        out = np.array(gif.convert("L"))
    assert out.dtype == np.uint8 and out.shape == shape
    np.testing.assert_array_equal(out, to_8bit(image))


@pytest.mark.parametrize("lut", [None, LUT])
def test_gif_of_a_gradient_uses_the_whole_range(lut):
    image = _gradient(0, 65535) if lut else _gradient()
    with Image.open(io.BytesIO(encode(image, media_type="image/gif", lut=lut))) as gif:
        out = np.array(gif.convert("L"))
    assert out.min() == 0 and out.max() == 255 and len(np.unique(out)) >= 250


@pytest.mark.parametrize("lut", [None, LUT])
def test_jpeg_of_a_gradient_uses_most_of_the_range(lut):
    image = _gradient(0, 65535) if lut else _gradient()
    out = _cv2_decode(encode(image, media_type="image/jpeg", lut=lut, jpeg_quality=95))
    assert out.min() <= 3 and out.max() >= 252 and len(np.unique(out)) >= 200
    # close to the exact windowed image
    assert np.abs(out.astype(int) - to_8bit(image, lut=lut)).mean() < 2


def test_jpeg_quality_changes_the_size():
    image = _random((64, 64))
    assert len(encode(image, media_type="image/jpeg", jpeg_quality=20)) < len(
        encode(image, media_type="image/jpeg", jpeg_quality=95))


def test_media_type_is_case_insensitive():
    image = _random((4, 4))
    assert encode(image, media_type=" IMAGE/PNG ") == encode(image, media_type="image/png")


@pytest.mark.parametrize("media_type", ["image/bmp", "png", "", None, "image/png; q=1", "image/*"])
def test_unknown_media_type(media_type):
    with pytest.raises(ValueError, match="media_type"):
        encode(_random((4, 4)), media_type=media_type)


@pytest.mark.parametrize("kwargs, named", [
    (dict(png_compression=10), "png_compression"),
    (dict(png_compression=-1), "png_compression"),
    (dict(jpeg_quality=0), "jpeg_quality"),
    (dict(jpeg_quality=101), "jpeg_quality"),
    (dict(jpeg_quality="high"), "jpeg_quality"),
])
def test_bad_options(kwargs, named):
    with pytest.raises(ValueError, match=named):
        encode(_random((4, 4)), media_type="image/jpeg", **kwargs)


def test_bad_image():
    with pytest.raises(TypeError, match="uint16"):
        encode(np.zeros((4, 4), np.float32), media_type="image/png")
