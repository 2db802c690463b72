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


def to_8bit(image: np.ndarray, *, lut: Lut | None = None) -> np.ndarray:
    """Window a 16-bit image linearly to 8 bits.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
    lut : Lut, optional
        The LUT the image is mapped with. Its output range
        ``[offset, offset + slope]`` (sorted) becomes the window, since a
        LUT-mapped image is already meant for display.

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
    if lut is not None:
        if not isinstance(lut, Lut):
            raise TypeError(f"lut must be a filters.lut.Lut or None, got {type(lut).__name__}")
        lo, hi = sorted((lut.offset, lut.offset + lut.slope))
    else:
        low, high = gray_percentiles(image, low_percent=AUTO_CLIP_PERCENT,
                                     high_percent=100.0 - AUTO_CLIP_PERCENT)
        lo, hi = (float(low), float(high)) if high > low else (low - 0.5, low + 0.5)
    return cv2.LUT(image, window_table(lo, hi))


@functools.lru_cache(maxsize=64)
def window_table(lo: float, hi: float) -> np.ndarray:
    """The 65536-entry uint8 table of a linear window [lo, hi], lo < hi."""
    if not lo < hi:
        raise ValueError(f"window must have lo < hi, got [{lo}, {hi}]")
    ramp = (np.arange(65536, dtype=np.float64) - lo) / (hi - lo)
    table = np.rint(255.0 * np.clip(ramp, 0.0, 1.0)).astype(np.uint8)
    table.setflags(write=False)
    return table
