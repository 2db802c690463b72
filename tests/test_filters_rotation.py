"""sensord.filters.rotation.rotate: clockwise quarter turns."""

import math

import numpy as np
import pytest

from sensord.filters.rotation import rotate

SHAPES = [(1, 1), (1, 9), (9, 1), (5, 7), (64, 48), (600, 427)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_matches_numpy_clockwise(shape, degrees):
    image = np.random.default_rng(0).integers(0, 65536, shape, dtype=np.uint16)
    out = rotate(image, degrees=degrees)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, np.rot90(image, -degrees // 90))
    assert not np.shares_memory(out, image)


def test_clockwise_as_displayed():
    # row 0 at the top: a quarter turn clockwise moves the top-left corner top-right
    assert rotate(np.array([[1, 2], [3, 4]], np.uint16), degrees=90).tolist() == [[3, 1], [4, 2]]
    assert rotate(np.array([[1, 2], [3, 4]], np.uint16), degrees=270).tolist() == [[2, 4], [1, 3]]


def test_integral_float_and_numpy_degrees_are_accepted():
    image = np.arange(6, dtype=np.uint16).reshape(2, 3)
    np.testing.assert_array_equal(rotate(image, degrees=90.0), rotate(image, degrees=np.int64(90)))


@pytest.mark.parametrize("degrees", [45, -90, 360, 90.5, "90", True, None, math.nan])
def test_other_angles_are_rejected(degrees):
    with pytest.raises(ValueError, match="0, 90, 180, 270"):
        rotate(np.zeros((2, 2), np.uint16), degrees=degrees)


def test_wrong_dtype():
    with pytest.raises(TypeError, match="uint16"):
        rotate(np.zeros((2, 2), np.int32), degrees=90)
