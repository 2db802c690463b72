"""sensord.filters.enhance: select, supreme and ae on a synthetic radiograph."""

import math

import numpy as np
import pytest

from sensord.filters.enhance import (
    AE_TASK_NAMES,
    SELECT_MODE_NAMES,
    SUPREME_TASK_NAMES,
    ae,
    select,
    supreme,
)
from sensord.filters.lut import Lut, lut_map
from sensord.filters.multiscale import multiscale_enhance
from sensord.filters.presets import SUPREME_TASKS
from sensord.filters.stabilize import domain_tables
from tests.support.phantom import edge_energy, flat_noise, tooth_phantom

SHAPES = [(1, 1), (1, 9), (9, 1), (5, 7), (64, 48), (600, 427)]
SPEC_LUT = Lut(gamma=2.3, slope=65535, offset=0, total_grays=4096, minimum_gray=3612, maximum_gray=250)
IDENTITY_LUT = Lut(gamma=1.0, slope=65535, offset=0, total_grays=65536, minimum_gray=0, maximum_gray=65535)
SHARPNESS_STEPS = (0, 20, 40, 60, 80, 100)

# One call per filter setting: (function, keyword arguments).
SETTINGS = ([(select, {"mode": m}) for m in SELECT_MODE_NAMES]
            + [(supreme, {"task": t, "sharpness": 70.0}) for t in SUPREME_TASK_NAMES]
            + [(ae, {"task": t, "sharpness": 70.0}) for t in AE_TASK_NAMES])
SETTING_IDS = [f"{f.__name__}-{next(iter(kw.values()))}" for f, kw in SETTINGS]
SHARPENERS = ([(supreme, t) for t in SUPREME_TASK_NAMES] + [(ae, t) for t in AE_TASK_NAMES])
SHARPENER_IDS = [f"{f.__name__}-{t}" for f, t in SHARPENERS]


@pytest.fixture(scope="module")
def phantom():
    return tooth_phantom((600, 427))


@pytest.fixture(scope="module")
def mapped(phantom):
    return lut_map(phantom.image, lut=SPEC_LUT)


# --- dtype, shape and range rules -------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("func, kwargs", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("lut", [None, SPEC_LUT], ids=["linear", "lut"])
def test_dtype_and_shape(shape, func, kwargs, lut):
    image = np.random.default_rng(0).integers(0, 65536, shape, dtype=np.uint16)
    out = func(image, lut=lut, **kwargs)
    assert out.dtype == np.uint16 and out.shape == shape
    assert not np.shares_memory(out, image)


@pytest.mark.parametrize("func, kwargs", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("lut", [None, IDENTITY_LUT, SPEC_LUT], ids=["linear", "identity-lut", "spec-lut"])
def test_extremes_saturate_instead_of_wrapping(func, kwargs, lut):
    # Sharpening overshoots both sides of a 0 | 65535 step; clipping must
    # give the step back, a wrap-around would not.
    step = np.zeros((40, 60), np.uint16)
    step[:, 30:] = 65535
    np.testing.assert_array_equal(func(step, lut=lut, **kwargs), step)
    for value in (0, 65535):
        flat = np.full((16, 16), value, np.uint16)
        np.testing.assert_array_equal(func(flat, lut=lut, **kwargs), flat)


@pytest.mark.parametrize("func, kwargs", SETTINGS, ids=SETTING_IDS)
def test_salt_and_pepper_at_the_extremes(func, kwargs):
    rng = np.random.default_rng(5)
    image = (rng.random((50, 70)) < 0.5).astype(np.uint16) * 65535
    out = func(image, **kwargs)
    assert out.dtype == np.uint16 and out.shape == image.shape
    # values stay ordered: a wrap-around would put bright output at dark input
    assert out[image == 65535].mean() > out[image == 0].mean()


# --- sharpness 0 and the unmap/re-map round trip ------------------------------

@pytest.mark.parametrize("func, task", SHARPENERS, ids=SHARPENER_IDS)
@pytest.mark.parametrize("lut", [None, SPEC_LUT], ids=["linear", "lut"])
def test_sharpness_zero_changes_nothing(func, task, lut):
    image = np.random.default_rng(1).integers(0, 65536, (37, 53), dtype=np.uint16)
    out = func(image, task=task, sharpness=0, lut=lut)
    np.testing.assert_array_equal(out, image)
    assert out is not image


@pytest.mark.parametrize("func, task", SHARPENERS, ids=SHARPENER_IDS)
def test_tiny_sharpness_round_trips_within_rounding(phantom, mapped, func, task):
    # Exercises the whole path: unmap, domain tables, engine, re-map.
    out = func(mapped, task=task, sharpness=1e-4, lut=SPEC_LUT)
    assert np.abs(out.astype(int) - mapped).max() <= 1
    out = func(phantom.image, task=task, sharpness=1e-4)
    assert np.abs(out.astype(int) - phantom.image).max() <= 1


# --- measurable effects on the phantom ----------------------------------------

def test_smooth_lowers_noise_in_every_flat_region(phantom):
    before = flat_noise(phantom.image, phantom)
    after = flat_noise(select(phantom.image, mode="smooth"), phantom)
    assert all(after[v] < 0.6 * before[v] for v in before)


def test_smooth_lowers_noise_through_a_lut(phantom, mapped):
    before = flat_noise(mapped, phantom)
    after = flat_noise(select(mapped, mode="smooth", lut=SPEC_LUT), phantom)
    assert all(after[v] < 0.6 * before[v] for v in before if before[v] > 0)


def test_smooth_keeps_region_means(phantom):
    out = select(phantom.image, mode="smooth")
    for value in np.unique(phantom.clean[phantom.flat]):
        region = phantom.flat & (phantom.clean == value)
        assert abs(out[region].mean() - phantom.image[region].mean()) < 1.0


def test_smooth_keeps_sharp_edges_of_a_noise_free_image(phantom):
    out = select(phantom.clean, mode="smooth")
    assert np.abs(out.astype(int) - phantom.clean).max() <= 1


@pytest.mark.parametrize("lut", [None, SPEC_LUT], ids=["linear", "lut"])
def test_select_edge_modes_raise_edge_energy_in_order(phantom, mapped, lut):
    image = mapped if lut else phantom.image
    energies = [edge_energy(image, phantom.edges)]
    energies += [edge_energy(select(image, mode=m, lut=lut), phantom.edges)
                 for m in ("edgeLow", "edgeHigh", "edgePro")]
    assert energies == sorted(energies) and len(set(energies)) == 4


@pytest.mark.parametrize("func, task", SHARPENERS, ids=SHARPENER_IDS)
@pytest.mark.parametrize("lut", [None, SPEC_LUT], ids=["linear", "lut"])
def test_edge_energy_rises_with_sharpness(phantom, mapped, func, task, lut):
    image = mapped if lut else phantom.image
    energies = [edge_energy(func(image, task=task, sharpness=s, lut=lut), phantom.edges)
                for s in SHARPNESS_STEPS]
    assert all(b > a for a, b in zip(energies, energies[1:])), energies


def test_sharpening_raises_edges_much_more_than_noise(phantom):
    # the point of coring: detail above the noise level is what gets the gain
    out = supreme(phantom.image, task="general", sharpness=100)
    noise_gain = np.mean([flat_noise(out, phantom)[v] / n for v, n in flat_noise(phantom.image, phantom).items()])
    edge_gain = math.sqrt(edge_energy(out, phantom.edges) / edge_energy(phantom.image, phantom.edges))
    assert edge_gain > 1.5 * noise_gain


# --- parameter errors ---------------------------------------------------------

@pytest.mark.parametrize("mode", ["Smooth", "edge", "", None, 3, "hygiene"])
def test_unknown_select_mode(mode):
    with pytest.raises(ValueError, match="mode must be one of smooth, edgeLow, edgeHigh, edgePro"):
        select(np.zeros((4, 4), np.uint16), mode=mode)


@pytest.mark.parametrize("func, names", [(supreme, SUPREME_TASK_NAMES), (ae, AE_TASK_NAMES)])
@pytest.mark.parametrize("task", ["General", "surgery", "", None, 1])
def test_unknown_task(func, names, task):
    with pytest.raises(ValueError, match="task must be one of " + ", ".join(names)):
        func(np.zeros((4, 4), np.uint16), task=task, sharpness=50)


def test_hygiene_is_a_supreme_task_only():
    image = np.full((8, 8), 1000, np.uint16)
    assert supreme(image, task="hygiene", sharpness=50).shape == image.shape
    with pytest.raises(ValueError, match="task"):
        ae(image, task="hygiene", sharpness=50)


@pytest.mark.parametrize("func", [supreme, ae])
@pytest.mark.parametrize("sharpness", [-0.1, 100.01, math.nan, math.inf, -math.inf, "50", None, True])
def test_sharpness_out_of_range(func, sharpness):
    with pytest.raises(ValueError, match=r"sharpness must be a number in \[0, 100\]"):
        func(np.zeros((4, 4), np.uint16), task="general", sharpness=sharpness)


@pytest.mark.parametrize("func, kwargs", [(select, {"mode": "smooth"}),
                                          (supreme, {"task": "general", "sharpness": 50}),
                                          (ae, {"task": "general", "sharpness": 50})])
def test_bad_images_and_luts(func, kwargs):
    with pytest.raises(TypeError, match="uint16"):
        func(np.zeros((4, 4), np.float32), **kwargs)
    with pytest.raises(ValueError, match="2-D"):
        func(np.zeros((4, 4, 1), np.uint16), **kwargs)
    with pytest.raises(ValueError, match="empty"):
        func(np.zeros((0, 4), np.uint16), **kwargs)
    with pytest.raises(TypeError, match="lut"):
        func(np.zeros((4, 4), np.uint16), lut={"gamma": 2.3}, **kwargs)


def test_a_binned_preset_works_at_half_the_scale():
    preset = SUPREME_TASKS["endodontic"]
    half = preset.binned()
    assert (half.fine_sigma, half.coarse_sigma) == (preset.fine_sigma / 2, preset.coarse_sigma / 2)
    assert (half.fine_gain, half.coarse_gain, half.noise_gain, half.coring) == \
        (preset.fine_gain, preset.coarse_gain, preset.noise_gain, preset.coring)


@pytest.mark.parametrize("task", SUPREME_TASK_NAMES)
def test_supreme_on_a_binned_image_uses_the_binned_preset(phantom, task):
    """binned=True is the task's preset at half scale, nothing else."""
    image = phantom.image
    expected = multiscale_enhance(image, preset=SUPREME_TASKS[task].binned(), strength=0.7,
                                  to_domain=domain_tables(None)[0], from_domain=domain_tables(None)[1])
    got = supreme(image, task=task, sharpness=70, binned=True)
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, supreme(image, task=task, sharpness=70))


def test_supreme_binned_must_be_a_bool():
    with pytest.raises(TypeError, match="binned"):
        supreme(np.zeros((4, 4), np.uint16), task="general", sharpness=50, binned="Binned2x2")
