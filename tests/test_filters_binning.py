"""sensord.filters.binning.bin2x2 against an exact numpy reference."""

import numpy as np
import pytest

from sensord.filters.binning import bin2x2


def _reference(image):
    rows, cols = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    x = image[:rows, :cols].astype(np.int64)
    sums = x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2]
    return (sums + 2) // 4  # mean rounded to nearest, halves up


@pytest.mark.parametrize("shape", [(2, 2), (3, 3), (2, 9), (9, 2), (5, 7), (4, 6), (64, 48), (600, 427), (601, 428)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_rounded_block_means(shape, seed):
    image = np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)
    out = bin2x2(image)
    assert out.dtype == np.uint16 and out.shape == (shape[0] // 2, shape[1] // 2)
    np.testing.assert_array_equal(out, _reference(image))


@pytest.mark.parametrize("block, mean", [
    ([[0, 0], [0, 1]], 0),  # 0.25
    ([[0, 0], [1, 1]], 1),  # 0.5 rounds up
    ([[0, 1], [1, 1]], 1),  # 0.75
    ([[65535, 65535], [65535, 65534]], 65535),  # no overflow at the top
    ([[65535, 65535], [65535, 65535]], 65535),
])
def test_rounding_and_extremes(block, mean):
    assert bin2x2(np.array(block, np.uint16)).tolist() == [[mean]]


def test_odd_last_row_and_column_are_dropped():
    image = np.zeros((5, 7), np.uint16)
    image[4, :] = 65535
    image[:, 6] = 65535
    assert (bin2x2(image) == 0).all()


def test_accepts_non_contiguous_views():
    image = np.random.default_rng(3).integers(0, 65536, (40, 60), dtype=np.uint16)
    view = image[::-1, ::2]
    np.testing.assert_array_equal(bin2x2(view), _reference(np.ascontiguousarray(view)))


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1)])
def test_too_small_to_bin(shape):
    with pytest.raises(ValueError, match="at least 2x2"):
        bin2x2(np.zeros(shape, np.uint16))


def test_wrong_dtype_or_dimensions():
    with pytest.raises(TypeError, match="uint16"):
        bin2x2(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        bin2x2(np.zeros(16, np.uint16))
    with pytest.raises(TypeError, match="ndarray"):
        bin2x2([[1, 2], [3, 4]])
