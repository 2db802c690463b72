"""sensord.filters.display.to_8bit and filters.histogram percentiles."""

import numpy as np
import pytest

from sensord.filters.display import to_8bit
from sensord.filters.histogram import gray_histogram, gray_percentiles
from sensord.filters.lut import Lut

SHAPES = [(1, 1), (1, 9), (9, 1), (5, 7), (64, 48), (600, 427)]
LUT = Lut(gamma=2.3, slope=65535, offset=0, total_grays=4096, minimum_gray=3612, maximum_gray=418)


def _gradient(lo, hi, shape=(20, 1000)):
    return np.tile(np.linspace(lo, hi, shape[1]).round().astype(np.uint16), (shape[0], 1))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lut", [None, LUT])
def test_dtype_and_shape(shape, lut):
    image = np.random.default_rng(0).integers(0, 65536, shape, dtype=np.uint16)
    out = to_8bit(image, lut=lut)
    assert out.dtype == np.uint8 and out.shape == shape


@pytest.mark.parametrize("lo, hi", [(300, 3800), (0, 65535), (1000, 1100), (40000, 41000)])
def test_auto_window_uses_the_whole_8_bit_range(lo, hi):
    out = to_8bit(_gradient(lo, hi))
    assert out.min() == 0 and out.max() == 255
    assert len(np.unique(out)) >= min(250, hi - lo)
    assert (np.diff(out[0].astype(int)) >= 0).all()  # polarity kept


def test_auto_window_ignores_a_few_outliers():
    image = _gradient(1000, 2000)
    image[0, :10] = 65535
    image[1, :10] = 0
    out = to_8bit(image)
    assert 120 <= np.median(out) <= 135  # the gradient still spans the range


def test_flat_image_shows_mid_gray():
    assert (to_8bit(np.full((4, 4), 1234, np.uint16)) == 128).all()


@pytest.mark.parametrize("slope, offset", [(65535, 0), (-65535, 65535), (30000, 10000), (-20000, 50000)])
def test_lut_window_is_the_mapped_range(slope, offset):
    lut = Lut(gamma=2.3, slope=slope, offset=offset, total_grays=4096, minimum_gray=3612, maximum_gray=418)
    lo, hi = sorted((offset, offset + slope))
    mid = (lo + hi) // 2
    image = np.array([[lo, mid, hi, max(lo - 1, 0), min(hi + 1, 65535)]], np.uint16)
    assert to_8bit(image, lut=lut).tolist() == [[0, round(255 * (mid - lo) / (hi - lo)), 255, 0, 255]]


def test_matches_the_windowing_formula():
    image = np.random.default_rng(1).integers(0, 65536, (50, 60), dtype=np.uint16)
    lo, hi = 0.0, 65535.0
    expected = np.rint(255 * np.clip((image - lo) / (hi - lo), 0, 1)).astype(np.uint8)
    lut = Lut(gamma=1, slope=65535, offset=0, total_grays=65536, minimum_gray=0, maximum_gray=65535)
    np.testing.assert_array_equal(to_8bit(image, lut=lut), expected)


def test_bad_input():
    with pytest.raises(TypeError, match="uint16"):
        to_8bit(np.zeros((2, 2), np.float64))
    with pytest.raises(TypeError, match="lut"):
        to_8bit(np.zeros((2, 2), np.uint16), lut="gamma 2.3")


def test_histogram_counts_exactly():
    image = np.random.default_rng(2).integers(0, 65536, (300, 200), dtype=np.uint16)
    image[0, 0], image[0, 1] = 0, 65535
    np.testing.assert_array_equal(gray_histogram(image), np.bincount(image.ravel(), minlength=65536))


def test_percentiles_are_grays_that_occur():
    image = np.array([[10, 20, 30, 40]], np.uint16)
    assert gray_percentiles(image, low_percent=0, high_percent=100) == (10, 40)
    assert gray_percentiles(image, low_percent=25, high_percent=50) == (10, 20)
    assert gray_percentiles(image, low_percent=26, high_percent=75.1) == (20, 40)


@pytest.mark.parametrize("low, high", [(60, 40), (-1, 50), (50, 101)])
def test_percentiles_reject_bad_bounds(low, high):
    with pytest.raises(ValueError, match="percent"):
        gray_percentiles(np.zeros((2, 2), np.uint16), low_percent=low, high_percent=high)
