"""The enhancement engine's parts: working domain, coring, blurs."""

import math

import cv2
import numpy as np
import pytest

from sensord.filters import coring
from sensord.filters.lut import Lut, lut_map
from sensord.filters.multiscale import coarse_blur, multiscale_enhance
from sensord.filters.presets import AE_TASKS, SELECT_MODES, SUPREME_TASKS, Preset
from sensord.filters.stabilize import domain_tables

SPEC_LUT = Lut(gamma=2.3, slope=65535, offset=0, total_grays=4096, minimum_gray=3612, maximum_gray=418)


def _through_domain(values, lut):
    to_domain, from_domain = domain_tables(lut)
    index = np.clip(np.rint(to_domain[values]), 0, 65535).astype(np.uint16)
    return from_domain[index]


def test_domain_round_trip_without_lut():
    grays = np.arange(65536, dtype=np.uint16)
    back = _through_domain(grays, None).astype(int)
    np.testing.assert_array_equal(back[:16384], grays[:16384])
    assert np.abs(back - grays).max() <= 1


def test_domain_round_trip_through_a_lut_returns_mapped_values():
    mapped = lut_map(np.arange(418, 3613, dtype=np.uint16)[None, :], lut=SPEC_LUT)[0]
    np.testing.assert_array_equal(_through_domain(mapped, SPEC_LUT), mapped)


def test_domain_tables_are_cached_and_read_only():
    assert domain_tables(SPEC_LUT) is domain_tables(SPEC_LUT)
    with pytest.raises(ValueError):
        domain_tables(None)[0][0] = 1


@pytest.mark.parametrize("sigma", [5.0, 50.0])
def test_noise_threshold_measures_the_noise_of_the_fine_detail(sigma):
    noise = np.random.default_rng(0).normal(1000, sigma, (512, 512)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (7, 7), 1.0)
    true_sigma = float(np.std(noise - blurred))
    k = coring.noise_threshold(noise, blurred, coring=2.0)
    assert k == pytest.approx(2.0 * true_sigma, rel=0.05)


def test_noise_threshold_has_a_floor():
    flat = np.full((64, 64), 7.0, np.float32)
    assert coring.noise_threshold(flat, flat, coring=2.0) == coring.MIN_THRESHOLD


def test_noise_part_follows_the_coring_curve():
    d = np.linspace(-40, 40, 801, dtype=np.float32)[None, :]
    zero = np.zeros_like(d)
    k, gain = 5.0, -1.5
    got = cv2.LUT(coring.detail_index(d, zero, threshold=k), coring.noise_table(threshold=k, gain=gain))
    expected = gain * d * k**4 / (d**4 + k**4)
    assert np.abs(got - expected).max() < abs(gain) * k / 200


@pytest.mark.parametrize("shape", [(5, 7), (64, 48), (600, 427)])
@pytest.mark.parametrize("sigma", [1.5, 3.0, 4.0, 7.0])
def test_coarse_blur_is_close_to_a_gaussian(shape, sigma):
    image = np.random.default_rng(1).normal(0, 100, shape).astype(np.float32)
    image = cv2.GaussianBlur(image, (0, 0), 2.0)  # smooth content, like the band it feeds
    exact = cv2.GaussianBlur(image, (0, 0), sigma)
    error = np.sqrt(np.mean((coarse_blur(image, sigma=sigma) - exact) ** 2))
    assert error < 0.1 * np.std(image)


def test_engine_at_strength_zero_gives_the_image_back():
    image = np.random.default_rng(2).integers(0, 65536, (40, 50), dtype=np.uint16)
    preset = SUPREME_TASKS["general"]
    np.testing.assert_array_equal(multiscale_enhance(image, preset=preset, strength=0.0), image)


def test_all_presets_are_valid_and_ordered():
    for preset in [*SELECT_MODES.values(), *SUPREME_TASKS.values(), *AE_TASKS.values()]:
        assert 0 < preset.fine_sigma < preset.coarse_sigma and preset.coring > 0
    gains = [SELECT_MODES[m] for m in ("edgeLow", "edgeHigh", "edgePro")]
    assert [p.fine_gain for p in gains] == sorted(p.fine_gain for p in gains)
    assert [p.coarse_gain for p in gains] == sorted(p.coarse_gain for p in gains)
    for task, preset in AE_TASKS.items():  # AE is the more noise-averse family
        assert preset.coring >= SUPREME_TASKS[task].coring
        assert preset.noise_gain <= SUPREME_TASKS[task].noise_gain


@pytest.mark.parametrize("kwargs", [dict(fine_sigma=0), dict(fine_sigma=5.0), dict(coarse_sigma=math.inf),
                                    dict(coring=0)])
def test_invalid_presets(kwargs):
    base = dict(fine_sigma=1.0, coarse_sigma=4.0, fine_gain=1.0, coarse_gain=0.5, noise_gain=-0.5, coring=2.0)
    with pytest.raises(ValueError):
        Preset(**{**base, **kwargs})
