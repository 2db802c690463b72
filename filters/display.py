"""Windowing of 16-bit images to 8 bits for display formats (JPEG, GIF)."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from . import _checks
from .histogram import gray_percentiles
from .lut import Lut

# Without a LUT, this share of pixels (percent) may saturate at each end.
AUTO_CLIP_PERCENT = 0.5


def to_8bit(image: np.ndarray, *, lut: Lut | None = None,
            window: tuple[float, float] | None = None) -> np.ndarray:
    """Window a 16-bit image linearly to 8 bits.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
    lut : Lut, optional
        The LUT the image is mapped with. Its output range
        ``[offset, offset + slope]`` (sorted) becomes the window, since a
        LUT-mapped image is already meant for display.
    window : (lo, hi), optional
        A window chosen by a viewer (`center_width`), over the LUT's and
        the automatic one.

    Returns
    -------
    (M, N) ndarray of uint8

    Notes
    -----
    Dtype rule: uint16 in, uint8 out through a 65536-entry table
    (``cv2.LUT``), never a bit shift. Range rule: values below the window
    give 0, above it 255.

    .. math:: v = \\mathrm{round}\\left(255\\,\\mathrm{clip}\\left(
              \\frac{Y - lo}{hi - lo}, 0, 1\\right)\\right)

    Without a LUT the window [lo, hi] is the 0.5th to 99.5th percentile of
    the image's grays (see `filters.histogram.gray_percentiles`), so a few
    hot or dead pixels do not flatten the picture; polarity is kept. A flat
    image gets a one-gray window centred on its value (mid gray).
    """
    image = _checks.gray16(image)
    lo, hi = display_window(image, lut=lut) if window is None else _window(window)
    return cv2.LUT(image, window_table(lo, hi))


def display_window(image: np.ndarray, *, lut: Lut | None = None) -> tuple[float, float]:
    """The window ``(lo, hi)`` that `to_8bit` uses without a ``window``: the
    LUT's output range, else the image's 0.5th to 99.5th gray percentile."""
    image = _checks.gray16(image)
    if lut is not None:
        if not isinstance(lut, Lut):
            raise TypeError(f"lut must be a filters.lut.Lut or None, got {type(lut).__name__}")
        low, high = sorted((lut.offset, lut.offset + lut.slope))
        return float(low), float(high)
    low, high = gray_percentiles(image, low_percent=AUTO_CLIP_PERCENT, high_percent=100.0 - AUTO_CLIP_PERCENT)
    return (float(low), float(high)) if high > low else (low - 0.5, low + 0.5)


def center_width(center: float, width: float) -> tuple[float, float]:
    """The window ``(lo, hi)`` of a window center and width, in grays.

    ``center`` in [0, 65535], ``width`` in [1, 65536]; ``lo = center - width / 2``,
    ``hi = center + width / 2`` (either may lie outside the gray range).
    """
    c = _checks.real(center, name="window center", low=0.0, high=65535.0)
    w = _checks.real(width, name="window width", low=1.0, high=65536.0)
    return c - w / 2.0, c + w / 2.0


def _window(window) -> tuple[float, float]:
    if not (isinstance(window, (tuple, list)) and len(window) == 2):
        raise ValueError(f"window must be a (lo, hi) pair, got {window!r}")
    lo, hi = (_checks.real(v, name="window bound", low=-65536.0, high=131072.0) for v in window)
    if not lo < hi:
        raise ValueError(f"window must have lo < hi, got [{lo}, {hi}]")
    return lo, hi


@functools.lru_cache(maxsize=64)
def window_table(lo: float, hi: float) -> np.ndarray:
    """The 65536-entry uint8 table of a linear window [lo, hi], lo < hi."""
    if not lo < hi:
        raise ValueError(f"window must have lo < hi, got [{lo}, {hi}]")
    ramp = (np.arange(65536, dtype=np.float64) - lo) / (hi - lo)
    table = np.rint(255.0 * np.clip(ramp, 0.0, 1.0)).astype(np.uint8)
    table.setflags(write=False)
    return table
