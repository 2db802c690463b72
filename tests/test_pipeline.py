"""sensord.daemon.acquisition.pipeline: binning, rotation, exposure quality, LUT, hash, preview, PNG."""

import functools
import hashlib

import cv2
import numpy as np
import pytest

from sensord import filters
from sensord.daemon.acquisition import pipeline
from sensord.daemon.forward.platforms import v7
from sensord.drivers.base import FrameEvent, Sensor
from sensord.drivers.phantom import phantom
from sensord.filters import Lut
from sensord.filters.exposure import exposure_info
from sensord.filters.pixel_hash import pixel_hash
from sensord.filters.thumbnail import jpeg_preview

SPEC_LUT_KEYS = {"gamma", "slope", "offset", "totalGrays", "minimumGray", "maximumGray"}
SPEC_EXPOSURE = {"min": -1.0, "max": 1.0, "low": -0.5, "high": 0.5, "optimum": 0.0}


def sensor(*, bits=12, supports_binning=True, width=600, height=428):
    return Sensor(model_name="Test", serial_number="T1", brand="B", family="Supreme", size=1,
                  width=width, height=height, supports_binning=supports_binning, version="1",
                  bits=bits)


@functools.cache
def _phantom(width, height, dose, seed, binned=False):
    # The anatomy of a 2400-pixel-wide size 2 sensor, at any resolution.
    raw = phantom(width=width, height=height, bits=12, dose=dose, seed=seed, binned=binned,
                  pixel_size_mm=0.015 * 2400 / width)
    raw.setflags(write=False)     # shared between tests: nobody may change it
    return raw


def small_phantom(dose=1.0, seed=3):
    return _phantom(600, 428, dose, seed)


def frame(pixels, *, binned=False):
    return FrameEvent(device_id="dev", pixels=pixels, binned=binned)


def synthetic(rows=6, cols=10, bits=12):
    """Distinct grays in a non-square frame, so any misplaced pixel shows."""
    return (np.arange(rows * cols, dtype=np.uint16).reshape(rows, cols) * 7) % (2**bits)


def decode(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


# --- binning and rotation ---------------------------------------------------

@pytest.mark.parametrize("requested, supported, by_driver, expected", [
    (False, True, False, "Unbinned"),
    (True, True, False, "Binned2x2"),
    (True, False, False, "Unbinned"),    # the sensor cannot: keep the full frame
    (True, True, True, "Binned2x2"),     # the driver binned: not again
    (False, True, True, "Binned2x2"),    # report what was really done
])
def test_binning_shape_and_report(requested, supported, by_driver, expected):
    raw = synthetic(8, 12)
    out = pipeline.process(frame(raw, binned=by_driver), sensor(supports_binning=supported),
                           binning=requested, apply_lut=False)
    binned_here = expected == "Binned2x2" and not by_driver
    assert out.binning == expected
    assert out.pixels.shape == ((4, 6) if binned_here else (8, 12))
    assert (out.height, out.width) == out.pixels.shape
    want = filters.bin2x2(raw) if binned_here else raw
    np.testing.assert_array_equal(out.pixels, want)


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_rotation_is_clockwise(degrees):
    raw = synthetic(6, 10)
    out = pipeline.process(frame(raw), sensor(), rotation=degrees, apply_lut=False)
    np.testing.assert_array_equal(out.pixels, np.rot90(raw, -degrees // 90))
    assert (out.height, out.width) == ((10, 6) if degrees in (90, 270) else (6, 10))


def test_binning_happens_before_rotation():
    raw = synthetic(8, 12)
    out = pipeline.process(frame(raw), sensor(), binning=True, rotation=90, apply_lut=False)
    np.testing.assert_array_equal(out.pixels, np.rot90(filters.bin2x2(raw), -1))
    assert (out.width, out.height) == (4, 6)


# --- LUT --------------------------------------------------------------------

@pytest.mark.parametrize("degrees", [0, 90])
@pytest.mark.parametrize("gamma", [2.3, 0.8])
def test_lut_info_describes_the_applied_map(degrees, gamma):
    raw = small_phantom()
    out = pipeline.process(frame(raw), sensor(), rotation=degrees, gamma=gamma)
    info = out.lut_info
    assert set(info) == SPEC_LUT_KEYS
    assert info["gamma"] == gamma and info["totalGrays"] == 4096
    assert info["minimumGray"] > info["maximumGray"]     # inverted: dense tissue light
    assert all(0 <= info[k] < 4096 for k in ("minimumGray", "maximumGray"))
    rotated = np.rot90(raw, -degrees // 90)
    np.testing.assert_array_equal(out.pixels, filters.lut_map(rotated, lut=Lut.from_info(info)))
    assert Lut.from_info(info) == filters.lut_from_histogram(rotated, gamma=gamma, total_grays=4096)


def test_lut_total_grays_follows_sensor_bits():
    raw = synthetic(16, 16, bits=14) * 4
    out = pipeline.process(frame(raw), sensor(bits=14))
    assert out.lut_info["totalGrays"] == 2**14


def test_no_lut_keeps_raw_grays():
    raw = small_phantom()
    out = pipeline.process(frame(raw), sensor(), rotation=180, apply_lut=False)
    assert out.lut_info is None
    np.testing.assert_array_equal(out.pixels, np.rot90(raw, 2))


# --- hash and PNG -----------------------------------------------------------

@pytest.mark.parametrize("alg, fn", [("MD5", hashlib.md5), ("SHA256", hashlib.sha256)])
@pytest.mark.parametrize("apply_lut", [True, False])
def test_hash_is_of_the_decoded_png_pixels(alg, fn, apply_lut):
    out = pipeline.process(frame(small_phantom()), sensor(), rotation=90, hash_alg=alg,
                           apply_lut=apply_lut)
    decoded = decode(out.png)
    assert out.pixel_hash == {"alg": alg, "hash": fn(decoded.astype("<u2").tobytes()).hexdigest()}
    assert out.pixel_hash == pixel_hash(decoded, alg=alg)      # what the forwarder and adapters compute


@pytest.mark.parametrize("compression", [0, 1, 6])
def test_png_round_trips_exactly(compression):
    out = pipeline.process(frame(small_phantom()), sensor(), rotation=270, png_compression=compression)
    decoded = decode(out.png)
    assert decoded.dtype == np.uint16 and decoded.shape == (out.height, out.width)
    np.testing.assert_array_equal(decoded, out.pixels)
    header = filters.read_header(out.png)
    assert (header.bit_depth, header.color_type) == (16, 0)


def test_pixels_are_read_only_and_the_frame_untouched():
    raw = synthetic(6, 10)
    before = raw.copy()
    out = pipeline.process(frame(raw), sensor(), apply_lut=False)   # no stage copies
    assert not out.pixels.flags.writeable
    assert raw.flags.writeable and not np.shares_memory(out.pixels, raw)
    with pytest.raises(ValueError):
        out.pixels[0, 0] = 1
    np.testing.assert_array_equal(raw, before)


# --- preview ----------------------------------------------------------------

@pytest.mark.parametrize("degrees, preview_max", [(0, 256), (90, 256), (0, 100)])
def test_preview_is_a_jpeg_with_longest_side_preview_max(degrees, preview_max):
    raw = _phantom(1200, 854, 1.0, 1)
    out = pipeline.process(frame(raw), sensor(), rotation=degrees, preview_max=preview_max)
    assert out.preview[:3] == b"\xff\xd8\xff"
    thumb = cv2.imdecode(np.frombuffer(out.preview, np.uint8), cv2.IMREAD_UNCHANGED)
    assert thumb.dtype == np.uint8 and thumb.ndim == 2
    assert max(thumb.shape) == preview_max
    # Same aspect and orientation as the image, to a pixel.
    assert abs(thumb.shape[0] / thumb.shape[1] - out.height / out.width) < 2 / min(thumb.shape)
    assert (thumb.shape[0] > thumb.shape[1]) == (out.height > out.width)


@pytest.mark.parametrize("apply_lut", [True, False])
def test_preview_is_the_shared_jpeg_preview_in_a_square_box(apply_lut):
    out = pipeline.process(frame(small_phantom()), sensor(), apply_lut=apply_lut, preview_max=200)
    lut = Lut.from_info(out.lut_info) if apply_lut else None
    assert out.preview == jpeg_preview(out.pixels, lut=lut, box=(200, 200), quality=pipeline.JPEG_QUALITY)


@pytest.mark.parametrize("apply_lut", [True, False])
def test_preview_and_v7_thumbnail_agree_for_the_same_box_and_quality(monkeypatch, apply_lut):
    # The two callers differ only in box and quality: given the same, they give the same bytes.
    out = pipeline.process(frame(small_phantom()), sensor(), apply_lut=apply_lut, preview_max=200)
    monkeypatch.setattr(v7, "THUMBNAIL_BOX", (200, 200))
    monkeypatch.setattr(v7, "THUMBNAIL_QUALITY", pipeline.JPEG_QUALITY)
    assert v7.thumbnail(out.pixels, {"lutInfo": out.lut_info}) == out.preview


def test_small_image_preview_is_not_enlarged():
    out = pipeline.process(frame(synthetic(6, 10)), sensor(), preview_max=256)
    thumb = cv2.imdecode(np.frombuffer(out.preview, np.uint8), cv2.IMREAD_UNCHANGED)
    assert thumb.shape == (6, 10)


# --- exposure quality -------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exposure_bands_on_phantoms(seed):
    def value(dose):
        info = pipeline.process(frame(_phantom(600, 428, dose, seed)), sensor()).exposure_info
        assert {k: info[k] for k in SPEC_EXPOSURE} == SPEC_EXPOSURE
        return info["value"]

    assert value(0.3) < -0.5
    assert -0.5 <= value(1.0) <= 0.5
    assert value(2.5) > 0.5


@pytest.mark.parametrize("seed", [0, 4])
def test_exposure_is_monotonic_in_dose(seed):
    doses = [0.05, 0.2, 0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 2.5, 4.0, 8.0]
    values = [exposure_info(_phantom(300, 214, d, seed), bits=12)["value"] for d in doses]
    assert all(-1.0 <= v <= 1.0 for v in values)
    assert values == sorted(values)
    assert values[0] == -1.0 and values[-1] == 1.0
    working = values[doses.index(0.3):doses.index(2.0)]
    assert len(set(working)) == len(working)        # no plateau from 0.3 to 1.4


def test_exposure_measured_before_the_lut_and_binning_neutral():
    raw = small_phantom()
    mapped = pipeline.process(frame(raw), sensor(), apply_lut=True).exposure_info
    unmapped = pipeline.process(frame(raw), sensor(), apply_lut=False).exposure_info
    assert mapped == unmapped == exposure_info(raw, bits=12)
    binned = pipeline.process(frame(raw), sensor(), binning=True).exposure_info
    assert abs(binned["value"] - unmapped["value"]) < 0.02


def test_exposure_ignores_missing_pixels_and_counts_saturated_ones():
    image = np.full((40, 40), 2047, np.uint16)      # half scale: the optimum
    assert exposure_info(image, bits=12)["value"] == pytest.approx(0.0, abs=1e-3)
    image[:30] = 0                                  # no pixels there: same level
    assert exposure_info(image, bits=12)["value"] == pytest.approx(0.0, abs=1e-3)
    image[:30] = 4095                               # saturated: the level is full scale
    assert exposure_info(image, bits=12)["value"] == 1.0
    assert exposure_info(np.zeros((8, 8), np.uint16), bits=12)["value"] == -1.0
    assert exposure_info(np.full((8, 8), 255, np.uint16), bits=12)["value"] == -1.0   # F/16


# --- timings and arguments --------------------------------------------------

@pytest.mark.parametrize("kwargs", [{}, {"apply_lut": False, "binning": True}])
def test_timings_cover_every_stage_in_order(kwargs):
    out = pipeline.process(frame(synthetic(8, 12)), sensor(), **kwargs)
    assert tuple(out.timings) == pipeline.STAGES == (
        "binning", "rotation", "exposure", "lut", "hash", "preview", "png_encode")
    assert all(isinstance(v, float) and v >= 0 for v in out.timings.values())


@pytest.mark.parametrize("kwargs", [
    {"rotation": 45}, {"rotation": -90}, {"rotation": 360}, {"rotation": True}, {"rotation": None},
    {"hash_alg": "CRC"}, {"hash_alg": "md5"}, {"hash_alg": None}, {"hash_alg": ["MD5"]},
    {"gamma": 0}, {"gamma": -1.0}, {"gamma": float("nan")}, {"gamma": "2.3"},
    {"png_compression": 10}, {"png_compression": -1}, {"png_compression": 1.5},
    {"preview_max": 0}, {"preview_max": 2.5},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        pipeline.process(frame(synthetic()), sensor(), **kwargs)
