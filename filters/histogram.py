"""Robust gray-level percentiles of a 16-bit image, from its histogram."""

from __future__ import annotations

import cv2
import numpy as np

from . import _checks

# calcHist counts in float32, exact below 2**24 per bin; past that use bincount.
_FLOAT_COUNT_LIMIT = 1 << 24


def gray_histogram(image: np.ndarray) -> np.ndarray:
    """Count the pixels at each of the 65536 gray levels.

    Parameters
    ----------
    image : (M, N) ndarray of uint16

    Returns
    -------
    (65536,) ndarray of int64
        ``hist[g]`` is the number of pixels equal to ``g``.

    Notes
    -----
    Dtype rule: uint16 in, exact int64 counts out. Uses ``cv2.calcHist``
    (about 4x faster than ``np.bincount`` here) while its float32 counts are
    exact.
    """
    image = _checks.gray16(image)
    if image.size < _FLOAT_COUNT_LIMIT:
        counts = cv2.calcHist([image], [0], None, [65536], [0, 65536])
        return counts.ravel().astype(np.int64)
    return np.bincount(image.ravel(), minlength=65536).astype(np.int64)


def gray_percentiles(image: np.ndarray, *, low_percent: float, high_percent: float,
                     exclude_zero: bool = False) -> tuple[int, int]:
    """Gray levels below which `low_percent` and `high_percent` of pixels lie.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
    low_percent, high_percent : float
        Percentages in [0, 100] with ``low_percent <= high_percent``.
    exclude_zero : bool, optional
        Leave out pixels at exactly 0 (unexposed corners, dead pixels), unless
        the image holds nothing else.

    Returns
    -------
    (low, high) : tuple of int
        Gray levels in [0, 65535] present in the image, ``low <= high``.
        0 and 100 give the smallest and largest gray present.

    Notes
    -----
    Dtype rule: uint16 in, Python ints out. The p-th percentile is the
    smallest gray g whose cumulative count C(g) satisfies
    ``C(g) >= max(p/100 * n, 1)``, n the number of pixels; no interpolation,
    so the result is always a gray that occurs.
    """
    low = _checks.real(low_percent, name="low_percent", low=0.0, high=100.0)
    high = _checks.real(high_percent, name="high_percent", low=0.0, high=100.0)
    if low > high:
        raise ValueError(f"low_percent ({low:g}) must not exceed high_percent ({high:g})")
    hist = gray_histogram(image)
    if exclude_zero and hist[0] < hist.sum():
        hist[0] = 0
    cdf = np.cumsum(hist)
    n = int(cdf[-1])
    targets = [max(p / 100.0 * n, 1.0) for p in (low, high)]
    lo, hi = np.searchsorted(cdf, targets, side="left")
    return int(lo), int(hi)
