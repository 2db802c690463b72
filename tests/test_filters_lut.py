"""sensord.filters.lut: the LutInfo map, its exact inverse, validation, automatic choice."""

import math

import numpy as np
import pytest

from sensord.filters.lut import (
    Lut,
    forward_table,
    inverse_table,
    lut_from_histogram,
    lut_map,
    lut_unmap,
)

SHAPES = [(1, 1), (1, 9), (9, 1), (5, 7), (64, 48), (600, 427)]

SPEC_EXAMPLE = Lut(gamma=2.3, slope=65535, offset=0, total_grays=4096, minimum_gray=3612, maximum_gray=418)
LUTS = {
    "spec-inverted": SPEC_EXAMPLE,
    "non-inverted": Lut(gamma=2.3, slope=65535, offset=0, total_grays=4096, minimum_gray=418, maximum_gray=3612),
    "gamma<1": Lut(gamma=0.45, slope=65535, offset=0, total_grays=4096, minimum_gray=4000, maximum_gray=100),
    "negative-slope": Lut(gamma=1.8, slope=-60000, offset=63000, total_grays=4096, minimum_gray=100, maximum_gray=4000),
    "many-share": Lut(gamma=2.3, slope=900, offset=100, total_grays=4096, minimum_gray=3612, maximum_gray=418),
    "clips-both-ends": Lut(gamma=1.0, slope=90000, offset=-10000, total_grays=65536, minimum_gray=0, maximum_gray=65535),
    "16-bit": Lut(gamma=2.3, slope=65535, offset=0, total_grays=65536, minimum_gray=60000, maximum_gray=2000),
}


def _domain(lut):
    lo, hi = lut.gray_range
    return np.arange(lo, hi + 1, dtype=np.uint16)


def _reference_map(lut, grays):
    """The spec's forward formula, value by value in Python floats."""
    out = []
    for g in grays.tolist():
        x = min(max((g - lut.minimum_gray) / (lut.maximum_gray - lut.minimum_gray), 0.0), 1.0)
        out.append(min(max(round(lut.slope * x**lut.gamma + lut.offset), 0), 65535))
    return np.array(out)


@pytest.mark.parametrize("name", LUTS)
def test_map_matches_the_spec_formula(name):
    lut = LUTS[name]
    grays = np.unique(np.linspace(0, 65535, 2001).astype(np.uint16))
    got = lut_map(grays[None, :], lut=lut)[0]
    # rounding of exact .5 ties may differ between round() and np.rint: 1 level
    assert np.abs(got.astype(int) - _reference_map(lut, grays)).max() <= 1


def test_spec_example_is_inverted_with_the_expected_ends():
    y = lut_map(np.array([[3612, 418, 5000, 0]], np.uint16), lut=SPEC_EXAMPLE)
    assert y.tolist() == [[0, 65535, 0, 65535]]


@pytest.mark.parametrize("name", LUTS)
def test_map_is_monotonic_over_the_gray_range(name):
    lut = LUTS[name]
    x = _domain(lut)
    y = lut_map(x[None, :], lut=lut)[0].astype(int)
    steps = np.diff(y)
    rising = (lut.maximum_gray > lut.minimum_gray) == (lut.slope > 0)
    assert (steps >= 0).all() if rising else (steps <= 0).all()


@pytest.mark.parametrize("name", LUTS)
def test_unmap_is_exact_where_the_map_is_one_to_one(name):
    lut = LUTS[name]
    x = _domain(lut)
    y = lut_map(x[None, :], lut=lut)[0]
    back = lut_unmap(y[None, :], lut=lut)[0]
    values, counts = np.unique(y, return_counts=True)
    unique = np.isin(y, values[counts == 1])
    assert unique.any()
    np.testing.assert_array_equal(back[unique], x[unique])


@pytest.mark.parametrize("name", LUTS)
def test_unmap_stays_in_the_bucket_of_shared_values(name):
    lut = LUTS[name]
    x = _domain(lut).astype(np.int64)
    y = lut_map(x.astype(np.uint16)[None, :], lut=lut)[0]
    back = lut_unmap(y[None, :], lut=lut)[0].astype(np.int64)
    # group the grays by mapped value: each group is a bucket
    order = np.argsort(y, kind="stable")
    starts = np.flatnonzero(np.r_[True, y[order][1:] != y[order][:-1]])
    lows, highs = np.minimum.reduceat(x[order], starts), np.maximum.reduceat(x[order], starts)
    assert (np.minimum.reduceat(back[order], starts) >= lows).all()
    assert (np.maximum.reduceat(back[order], starts) <= highs).all()
    # and mapping back gives the same value
    np.testing.assert_array_equal(lut_map(back.astype(np.uint16)[None, :], lut=lut)[0], y)


def test_bucket_case_really_has_shared_values():
    y = lut_map(_domain(LUTS["many-share"])[None, :], lut=LUTS["many-share"])
    assert len(np.unique(y)) < y.size / 3


@pytest.mark.parametrize("name", LUTS)
def test_unmap_of_values_the_map_never_produces_follows_the_formula(name):
    lut = LUTS[name]
    produced = set(forward_table(lut)[_domain(lut)].tolist())
    others = np.array([v for v in range(0, 65536, 7) if v not in produced], np.uint16)
    if others.size == 0:
        pytest.skip("this map produces every value")
    got = lut_unmap(others[None, :], lut=lut)[0].astype(np.int64)
    lo, hi = lut.gray_range
    t = np.clip((others - lut.offset) / lut.slope, 0, 1)
    formula = (lut.maximum_gray - lut.minimum_gray) * t ** (1 / lut.gamma) + lut.minimum_gray
    np.testing.assert_array_equal(got, np.clip(np.rint(formula), lo, hi))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("func", [lut_map, lut_unmap])
def test_dtype_and_shape_rules(shape, func):
    image = np.random.default_rng(1).integers(0, 65536, shape, dtype=np.uint16)
    out = func(image, lut=SPEC_EXAMPLE)
    assert out.dtype == np.uint16 and out.shape == shape
    assert not np.shares_memory(out, image)


def test_unmap_output_stays_in_the_gray_range():
    image = np.random.default_rng(2).integers(0, 65536, (64, 64), dtype=np.uint16)
    out = lut_unmap(image, lut=SPEC_EXAMPLE)
    assert out.min() >= 418 and out.max() <= 3612


def test_tables_are_cached_per_lut_and_read_only():
    twin = Lut(gamma=2.3, slope=65535.0, offset=0.0, total_grays=4096.0, minimum_gray=np.int64(3612),
               maximum_gray=418)
    assert twin == SPEC_EXAMPLE and hash(twin) == hash(SPEC_EXAMPLE)
    assert forward_table(twin) is forward_table(SPEC_EXAMPLE)
    assert inverse_table(twin) is inverse_table(SPEC_EXAMPLE)
    with pytest.raises(ValueError):
        forward_table(twin)[0] = 1


GOOD = dict(gamma=2.3, slope=65535, offset=0, total_grays=4096, minimum_gray=3612, maximum_gray=418)


@pytest.mark.parametrize(
    "field, value, named",
    [
        ("gamma", 0, "gamma"),
        ("gamma", -1.0, "gamma"),
        ("gamma", math.nan, "gamma"),
        ("gamma", math.inf, "gamma"),
        ("gamma", "2.3", "gamma"),
        ("slope", 0.0, "slope"),
        ("slope", math.nan, "slope"),
        ("offset", math.inf, "offset"),
        ("offset", None, "offset"),
        ("total_grays", 1, "totalGrays"),
        ("total_grays", 65537, "totalGrays"),
        ("total_grays", 4096.5, "totalGrays"),
        ("minimum_gray", -1, "minimumGray"),
        ("minimum_gray", 65536, "minimumGray"),
        ("maximum_gray", 3.5, "maximumGray"),
        ("maximum_gray", True, "maximumGray"),
        ("maximum_gray", 3612, "maximumGray"),
    ],
)
def test_invalid_lut_fields_raise_value_error_naming_the_field(field, value, named):
    with pytest.raises(ValueError, match=named):
        Lut(**{**GOOD, field: value})


def test_info_round_trip_and_missing_field():
    info = SPEC_EXAMPLE.to_info()
    assert info == {"gamma": 2.3, "slope": 65535.0, "offset": 0.0, "totalGrays": 4096,
                    "minimumGray": 3612, "maximumGray": 418}
    assert Lut.from_info(info) == SPEC_EXAMPLE
    del info["offset"]
    with pytest.raises(ValueError, match="offset"):
        Lut.from_info(info)


@pytest.mark.parametrize("func", [lut_map, lut_unmap])
def test_bad_image_or_lut_types(func):
    with pytest.raises(TypeError, match="uint16"):
        func(np.zeros((4, 4), np.float32), lut=SPEC_EXAMPLE)
    with pytest.raises(ValueError, match="2-D"):
        func(np.zeros((4, 4, 3), np.uint16), lut=SPEC_EXAMPLE)
    with pytest.raises(TypeError, match="lut"):
        func(np.zeros((4, 4), np.uint16), lut=GOOD)


def _gradient_with_outliers():
    rng = np.random.default_rng(3)
    image = rng.normal(2000, 500, (200, 300)).clip(300, 3800).astype(np.uint16)
    image[0, :5] = 4095  # hot pixels
    image[1, :5] = 0  # dead pixels
    return image


def test_lut_from_histogram_is_inverted_and_robust():
    image = _gradient_with_outliers()
    lut = lut_from_histogram(image, gamma=2.3, total_grays=4096)
    assert lut.minimum_gray > lut.maximum_gray  # inverted: bright end first
    assert (lut.slope, lut.offset, lut.gamma, lut.total_grays) == (65535.0, 0.0, 2.3, 4096)
    # Percentiles of the pixels above 0: dead pixels are not anatomy.
    low, high = np.percentile(image[image > 0], [0.5, 99.5], method="inverted_cdf")
    assert (lut.maximum_gray, lut.minimum_gray) == (low, high)
    mapped = lut_map(image, lut=lut)
    assert mapped[0, 0] == 0 and mapped[1, 0] == 65535  # outliers saturate
    # dense (low raw) pixels come out light
    assert mapped[image < 1500].mean() > mapped[image > 2500].mean()


@pytest.mark.parametrize("value, top", [(0, 4095), (2000, 4095), (4095, 4095), (65535, 4095), (70, 65535)])
def test_lut_from_histogram_on_flat_images(value, top):
    image = np.full((8, 8), value, np.uint16)
    lut = lut_from_histogram(image, gamma=1.0, total_grays=top + 1)
    assert lut.minimum_gray != lut.maximum_gray
    assert 0 <= lut.maximum_gray < lut.minimum_gray <= top


@pytest.mark.parametrize("kwargs, named", [
    (dict(clip_percent=50), "clip_percent"),
    (dict(clip_percent=-1), "clip_percent"),
    (dict(clip_percent=math.nan), "clip_percent"),
    (dict(total_grays=1), "total_grays"),
    (dict(gamma=0), "gamma"),
])
def test_lut_from_histogram_rejects_bad_parameters(kwargs, named):
    args = {"gamma": 2.3, "total_grays": 4096, **kwargs}
    with pytest.raises(ValueError, match=named):
        lut_from_histogram(_gradient_with_outliers(), **args)


def test_lut_from_histogram_ignores_unexposed_zero_pixels():
    from sensord.filters.lut import lut_from_histogram

    rng = np.random.default_rng(3)
    image = rng.integers(800, 3000, (200, 300)).astype(np.uint16)
    image[:20, :20] = 0            # 0.7 % unexposed corner, more than the clip
    lut = lut_from_histogram(image, gamma=2.3, total_grays=4096, clip_percent=0.5)
    assert lut.maximum_gray >= 800 and lut.minimum_gray <= 3000
    assert lut_from_histogram(np.zeros((4, 4), np.uint16), gamma=2.3, total_grays=4096).maximum_gray == 0
