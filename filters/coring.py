"""Noise-aware coring of fine detail: noise estimate and the noise-like part.

Fine detail is ``d = x - G(x)`` (image minus a small Gaussian blur). Its
values below the noise level are mostly noise; values far above it are edges.
The soft split used by the enhancement filters is

    noise part  n(d) = d * k**4 / (d**4 + k**4)
    detail part f(d) = d - n(d) = d * d**4 / (d**4 + k**4)

with k a multiple of the robust noise level of d. The fourth powers give a
sharper knee than squares: at ``|d| = k / 2`` 94 % of d counts as noise, at
``|d| = 2 k`` 94 % as detail, so a sharpening gain on f lifts little noise.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

# Below half a unit of the image, "noise" is just quantisation: never core finer.
MIN_THRESHOLD = 0.5
# Fine detail is quantised to k / _STEPS_PER_K for the table lookup; the table
# spans |d| <= (32768 / _STEPS_PER_K) * k, far past the knee of the curve.
_STEPS_PER_K = 128
# About 16384 samples give the median to about 1 % and keep it cheap.
_NOISE_SAMPLES = 16384
# Converts a median absolute value to a Gaussian standard deviation.
_MAD_TO_SIGMA = 1.4826


def noise_threshold(image: np.ndarray, blurred: np.ndarray, *, coring: float) -> float:
    """Coring threshold k for the fine detail ``image - blurred``.

    Parameters
    ----------
    image, blurred : (M, N) ndarray of float32
        The image and its small-scale Gaussian blur.
    coring : float
        Multiple of the noise level, > 0. Larger cores more detail away.

    Returns
    -------
    float
        ``k = max(coring * sigma, 0.5)`` in units of the image.

    Notes
    -----
    Dtype rule: float32 in, Python float out. The noise level is the robust
    estimate ``sigma = 1.4826 * median(|d|)`` of the fine detail d over a
    regular subsample of about 16384 pixels; edges are a minority of pixels,
    so the median sees the noise. One global level fits because the filters
    work where X-ray noise is about equal at every gray (`filters.stabilize`).
    """
    stride = max(1, int(math.sqrt(image.size / _NOISE_SAMPLES)))
    sample = image[::stride, ::stride] - blurred[::stride, ::stride]
    sigma = _MAD_TO_SIGMA * float(np.median(np.abs(sample)))
    return max(coring * sigma, MIN_THRESHOLD)


@functools.lru_cache(maxsize=1)
def _unit_curve() -> np.ndarray:
    """u / (1 + u**4) on the quantisation grid, u = d / k."""
    u = (np.arange(65536, dtype=np.float64) - 32768.0) / _STEPS_PER_K
    curve = u / (1.0 + u**4)
    curve.setflags(write=False)
    return curve


def detail_index(image: np.ndarray, blurred: np.ndarray, *, threshold: float) -> np.ndarray:
    """Quantise the fine detail ``d = image - blurred`` for `noise_table`.

    Parameters
    ----------
    image, blurred : (M, N) ndarray of float32
    threshold : float
        k, from `noise_threshold`, > 0.

    Returns
    -------
    (M, N) ndarray of uint16
        ``round(128 * d / k) + 32768``, saturated to [0, 65535].

    Notes
    -----
    Dtype rule: float32 in, uint16 out, one saturating ``cv2.addWeighted``
    pass. The index covers |d| <= 256 k in steps of k / 128.
    """
    scale = _STEPS_PER_K / threshold
    return cv2.addWeighted(image, scale, blurred, -scale, 32768.0, dtype=cv2.CV_16U)


def noise_table(*, threshold: float, gain: float) -> np.ndarray:
    """Table from `detail_index` values to ``gain * n(d)``.

    Parameters
    ----------
    threshold : float
        k, the same as given to `detail_index`.
    gain : float
        Factor applied to the noise part.

    Returns
    -------
    (65536,) ndarray of float32
        Apply with ``cv2.LUT(index, table)``.

    Notes
    -----
    Dtype rule: float32 table, values bounded by ``0.57 * |gain| * k`` (the
    maximum of ``|n|``, at ``|d| = 0.76 k``).

    ``n(d) = d k**4 / (d**4 + k**4) = k * u / (1 + u**4)`` with u = d / k is a
    one-variable curve, so a table lookup replaces several float passes
    over the image. The step error is below ``|gain| * k / 256``; beyond
    ``|d| = 256 k`` the index saturates, where n is negligible anyway.
    """
    return (_unit_curve() * (gain * threshold)).astype(np.float32)
