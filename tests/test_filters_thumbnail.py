"""sensord.filters.thumbnail: fit_inside and jpeg_preview, the one JPEG preview."""

import cv2
import numpy as np
import pytest

from sensord.filters.display import to_8bit
from sensord.filters.lut import Lut, lut_map
from sensord.filters.thumbnail import fit_inside, jpeg_preview

LUT = Lut(gamma=2.3, slope=65535, offset=0, total_grays=4096, minimum_gray=3612, maximum_gray=418)


def _raw(shape=(300, 420), seed=0):
    """12-bit grays: a ramp with noise, so both windows have something to show."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(400, 3600, shape[1])[None, :] + rng.normal(0, 40, shape)
    return np.clip(ramp, 0, 4095).astype(np.uint16)


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("size, box, expected", [
    ((2400, 1708), (356, 200), (281, 200)),
    ((1708, 2400), (356, 200), (142, 200)),
    ((4000, 300), (356, 200), (356, 27)),
    ((160, 120), (356, 200), (160, 120)),      # never enlarged
    ((2400, 1708), (256, 256), (256, 182)),    # a square box: the longest side is the box's
    ((1708, 2400), (256, 256), (182, 256)),
    ((10000, 1), (100, 100), (100, 1)),        # no side below 1
])
def test_fit_inside(size, box, expected):
    assert fit_inside(*size, box=box) == expected


@pytest.mark.parametrize("shape", [(300, 420), (420, 300), (1, 1), (7, 500)])
@pytest.mark.parametrize("box", [(356, 200), (128, 128)])
@pytest.mark.parametrize("lut", [None, LUT])
def test_a_gray_jpeg_of_the_fitted_size(shape, box, lut):
    pixels = _raw(shape)
    if lut is not None:
        pixels = lut_map(pixels, lut=lut)
    data = jpeg_preview(pixels, lut=lut, box=box, quality=80)
    assert data[:3] == b"\xff\xd8\xff"
    out = _decode(data)
    assert out.dtype == np.uint8 and out.ndim == 2
    assert out.shape[::-1] == fit_inside(shape[1], shape[0], box=box)


@pytest.mark.parametrize("lut", [None, LUT])
def test_shrinks_the_16_bit_grays_then_windows_them(lut):
    pixels = _raw()
    if lut is not None:
        pixels = lut_map(pixels, lut=lut)
    small = cv2.resize(pixels, fit_inside(420, 300, box=(100, 100)), interpolation=cv2.INTER_AREA)
    reference = cv2.imencode(".jpg", to_8bit(small, lut=lut), [cv2.IMWRITE_JPEG_QUALITY, 75])[1].tobytes()
    assert jpeg_preview(pixels, lut=lut, box=(100, 100), quality=75) == reference


def test_the_lut_sets_the_window():
    raw = _raw()
    # Unmapped 12-bit grays in the LUT's 0..65535 window stay dark; their own window spreads them.
    assert _decode(jpeg_preview(raw, lut=LUT, box=(100, 100), quality=90)).mean() < 20
    assert _decode(jpeg_preview(raw, lut=None, box=(100, 100), quality=90)).mean() > 60


def test_quality_changes_the_size():
    pixels = _raw()
    low = jpeg_preview(pixels, lut=None, box=(300, 300), quality=10)
    high = jpeg_preview(pixels, lut=None, box=(300, 300), quality=95)
    assert len(low) < len(high)


def test_layout_of_the_input_does_not_matter():
    pixels = _raw((200, 400))
    view = pixels[::-1, ::2]
    expected = jpeg_preview(np.ascontiguousarray(view), lut=None, box=(64, 64), quality=85)
    assert jpeg_preview(view, lut=None, box=(64, 64), quality=85) == expected
    read_only = pixels.copy()
    read_only.setflags(write=False)
    assert jpeg_preview(read_only, lut=None, box=(64, 64), quality=85) == \
        jpeg_preview(pixels, lut=None, box=(64, 64), quality=85)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_other_dtypes_are_refused(dtype):
    with pytest.raises(TypeError, match="uint16"):
        jpeg_preview(np.zeros((8, 8), dtype), lut=None, box=(4, 4), quality=80)


@pytest.mark.parametrize("kwargs, word", [
    ({"box": (0, 10)}, "box"),
    ({"box": (10,)}, "box"),
    ({"box": "356x200"}, "box"),
    ({"box": (10.5, 10)}, "box"),
    ({"quality": 0}, "quality"),
    ({"quality": 101}, "quality"),
    ({"quality": "high"}, "quality"),
])
def test_bad_options_are_refused(kwargs, word):
    options = {"lut": None, "box": (10, 10), "quality": 80, **kwargs}
    with pytest.raises(ValueError, match=word):
        jpeg_preview(np.zeros((8, 8), np.uint16), **options)


def test_a_lut_info_dict_is_not_a_lut():
    # The wire format is read by the daemon (dsio.imageinfo.lut_from_info), never here.
    with pytest.raises(TypeError, match="Lut"):
        jpeg_preview(_raw(), lut=LUT.to_info(), box=(10, 10), quality=80)


def test_one_dimensional_input_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        jpeg_preview(np.zeros(16, np.uint16), lut=None, box=(4, 4), quality=80)
