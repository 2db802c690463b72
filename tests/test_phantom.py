"""sensord.drivers.phantom: shape, dtype and range rules, determinism, dose and noise."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from sensord.drivers.phantom import phantom

W, H = 960, 684   # a size 2 sensor at 2.5x larger pixels: same anatomy, fast


def noise_profile(frame, *, lo, hi, bins=1):
    """Noise variance and mean level of the smooth pixels with level in [lo, hi).

    Second differences along rows cancel the (piecewise linear) anatomy;
    pixels near edges are left out; the MAD ignores what edges remain.
    Var(a - 2b + c) = 6 var. With ``bins`` > 1 the pixels are split into
    bins of equal count by level. Returns a list of (variance, mean level).
    """
    f = frame.astype(np.float32)
    smooth = cv2.GaussianBlur(f, (0, 0), 2.0)
    grad = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    flat = (grad < np.percentile(grad, 60))[:, 1:-1]
    # Bin by the smoothed level: binning by a pixel's own noisy value would truncate its noise.
    level = smooth[:, 1:-1]
    d = f[:, 2:] - 2 * f[:, 1:-1] + f[:, :-2]
    sel = flat & (level >= lo) & (level < hi)
    level, d = level[sel].astype(np.float64), d[sel].astype(np.float64)
    order = np.argsort(level)
    out = []
    for part in np.array_split(order, bins):
        dd = d[part]
        mad = np.median(np.abs(dd - np.median(dd)))
        out.append(((1.4826 * mad) ** 2 / 6, level[part].mean()))
    return out


def offset_of(bits):
    """The dark level: a frame with no dose is offset plus read noise."""
    dark = phantom(width=W, height=H, bits=bits, dose=0.0, seed=0)
    return float(np.median(dark[dark > 0]))


@pytest.mark.parametrize("bits", [12, 14])
@pytest.mark.parametrize("binned", [False, True])
def test_shape_dtype_and_range(bits, binned):
    f = phantom(width=W, height=H, bits=bits, seed=1, binned=binned, pixel_size_mm=0.0375)
    assert f.shape == ((H // 2, W // 2) if binned else (H, W))
    assert f.dtype == np.uint16
    full = 2 ** bits - 1
    assert int(f.max()) <= full
    # Dose 1.0 is mid-range: the bulk of the exposed pixels is well inside the range.
    exposed = f[f > 0]
    assert 0.15 * full < np.median(exposed) < 0.6 * full
    assert np.percentile(exposed, 99) < 0.9 * full


def test_odd_size_bins_to_floor():
    f = phantom(width=101, height=77, seed=2, binned=True)
    assert f.shape == (38, 50)


def test_same_seed_same_frame_other_seed_other_frame():
    a = phantom(width=W, height=H, seed=42, dead_pixels=20)
    b = phantom(width=W, height=H, seed=42, dead_pixels=20)
    c = phantom(width=W, height=H, seed=43, dead_pixels=20)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unseeded_frames_differ():
    assert not np.array_equal(phantom(width=64, height=48), phantom(width=64, height=48))


def test_raw_convention_and_structure():
    f = phantom(width=W, height=H, seed=5, pixel_size_mm=0.0375)
    full = 4095
    # Corners of the active area hold no pixels: exactly 0, and only a little of the frame.
    assert f[0, 0] == f[0, -1] == f[-1, 0] == f[-1, -1] == 0
    assert (f == 0).mean() < 0.03
    # Anatomy, not noise: smoothing keeps most of the variance ...
    exposed = f.astype(np.float32)
    smooth = cv2.GaussianBlur(exposed, (0, 0), 3)
    inner = (slice(H // 8, -H // 8), slice(W // 8, -W // 8))
    assert smooth[inner].var() > 0.8 * exposed[inner].var()
    # ... and a wide span from attenuating tissue (dark) to soft tissue (bright).
    p5, p95 = np.percentile(f[inner], [5, 95])
    assert p95 - p5 > 0.2 * full


def test_dose_moves_mean_and_saturates():
    full = 2 ** 14 - 1
    frames = {d: phantom(width=W, height=H, bits=14, dose=d, seed=3) for d in (0.3, 1.0, 2.5)}
    means = [frames[d].mean() for d in (0.3, 1.0, 2.5)]
    assert means[0] < means[1] < means[2]
    assert np.median(frames[0.3]) < 0.2 * full              # underexposed
    assert not (frames[1.0] == full).any()                  # mid-range: nothing clipped
    assert (frames[2.5] == full).mean() > 0.05              # clipped highlights


def test_noise_variance_grows_in_proportion_to_signal():
    f = phantom(width=W, height=H, seed=7, dose=1.5)
    off = offset_of(12)
    profile = noise_profile(f, lo=off + 100, hi=4000, bins=5)
    variances = [v for v, _ in profile]
    signals = [m - off for _, m in profile]
    assert signals[-1] > 2.5 * signals[0]
    assert variances[-1] > 2 * variances[0]
    assert np.corrcoef(signals, variances)[0, 1] > 0.95
    # Poisson-like: variance / signal stays put (additive noise would fall, multiplicative rise).
    ratios = [v / s for v, s in zip(variances, signals)]
    assert max(ratios) / min(ratios) < 1.4


def test_doubling_dose_doubles_noise_variance():
    # Same seed: same anatomy and the same normal draws, only the dose differs.
    off = offset_of(12)
    [(v1, m1)] = noise_profile(phantom(width=W, height=H, seed=11, dose=0.5), lo=off + 100, hi=4000)
    [(v2, m2)] = noise_profile(phantom(width=W, height=H, seed=11, dose=1.0), lo=off + 200, hi=4000)
    assert 1.7 < (m2 - off) / (m1 - off) < 2.3
    assert 1.6 < v2 / v1 < 2.4


def test_binning_averages_four_pixels():
    full = phantom(width=W, height=H, seed=13, dose=1.0)
    binned = phantom(width=W, height=H, seed=13, dose=1.0, binned=True)
    off = offset_of(12)
    [(v_full, m_full)] = noise_profile(full, lo=off + 300, hi=4000)
    [(v_bin, m_bin)] = noise_profile(binned, lo=off + 300, hi=4000)
    # A quarter of the variance per unit signal, at the same signal level.
    ratio = (v_full / (m_full - off)) / (v_bin / (m_bin - off))
    assert 3.0 < ratio < 5.3
    assert abs(np.median(binned[binned > 0]) - np.median(full[full > 0])) < 0.05 * 4095


def test_dead_pixels_are_stuck_at_the_rails():
    clean = phantom(width=W, height=H, seed=17)
    dead = phantom(width=W, height=H, seed=17, dead_pixels=300)
    changed = clean != dead
    values = set(np.unique(dead[changed]).tolist())
    assert values <= {0, 4095} and values == {0, 4095}
    # Up to 300 differ; fewer only where a pixel stuck at 0 sits in a cut corner.
    assert 270 <= changed.sum() <= 300


def test_defect_seed_keeps_dead_pixels_in_place():
    def defects(seed):
        clean = phantom(width=W, height=H, seed=seed)
        dead = phantom(width=W, height=H, seed=seed, dead_pixels=50, defect_seed=99)
        return set(zip(*np.nonzero(clean != dead)))
    first, second = defects(1), defects(2)
    assert len(first) >= 45 and first == second


def test_binned_dead_pixels_shift_their_block():
    clean = phantom(width=W, height=H, seed=19, binned=True)
    dead = phantom(width=W, height=H, seed=19, binned=True, dead_pixels=100)
    moved = np.abs(dead.astype(np.int32) - clean.astype(np.int32))
    assert 80 <= (moved > 0).sum() <= 100
    assert moved.max() > 0.2 * 4095 * 0.75   # a quarter of the way to a rail


@pytest.mark.parametrize("kwargs", [
    dict(bits=7), dict(bits=17), dict(dose=-0.1), dict(dose=float("nan")),
    dict(width=4), dict(dead_pixels=-1), dict(dead_pixels=10**9), dict(pixel_size_mm=0),
])
def test_bad_arguments_are_value_errors(kwargs):
    args = dict(width=64, height=48) | kwargs
    with pytest.raises(ValueError):
        phantom(**args)


def test_full_size_frame_is_fast():
    # A regression guard, not a benchmark: best of three, generous bound for a busy CI box.
    best = float("inf")
    for seed in range(3):
        t0 = time.perf_counter()
        f = phantom(width=2400, height=1708, seed=seed)
        best = min(best, time.perf_counter() - t0)
    assert f.shape == (1708, 2400)
    assert best < 0.3
