"""Exposure quality of a raw frame: the Modality API's ExposureInfo."""

from __future__ import annotations

import math

import numpy as np

from .histogram import gray_histogram

# The ExposureInfo scale (spec example values); the meter below is built on it.
SCALE = {"min": -1.0, "max": 1.0, "low": -0.5, "high": 0.5, "optimum": 0.0}

LEVEL_PERCENT = 90.0      # percentile of the exposed area taken as its level
OPTIMUM_FRACTION = 0.5    # level at the optimum: one stop below saturation
STOPS_PER_UNIT_OVER = 1.0   # optimum -> saturation (1 stop) spans 0 -> +1
STOPS_PER_UNIT_UNDER = 2.0  # 2 stops under the optimum (1/8 full scale) reach -1


def exposure_info(image: np.ndarray, *, bits: int) -> dict:
    """Rate the exposure of a raw (unmapped) frame against the sensor's range.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
        Raw signal, higher where more X-rays arrived, before any LUT.
    bits : int
        Significant bits of the sensor, 1 to 16; full scale is ``2**bits - 1``.

    Returns
    -------
    dict
        ExposureInfo: ``min`` -1, ``max`` +1, ``low`` -0.5, ``high`` +0.5,
        ``optimum`` 0 and the measured ``value`` in [-1, 1], rounded to 4
        decimals. Below ``low``: raise the dose; above ``high``: lower it.

    Raises
    ------
    ValueError
        If `bits` is not an integer from 1 to 16.

    Notes
    -----
    With full scale :math:`F = 2^{bits} - 1`, the level :math:`L` is the
    90th gray percentile of the exposed pixels (those > 0, saturated ones
    included): the smallest gray with at least 90 % of them at or below it.
    In stops from the optimum level :math:`F/2`,

    .. math::

        s = \\log_2 \\frac{L}{F/2}, \\qquad
        v = \\mathrm{clip}\\left(\\frac{s}{1}\\ \\text{if}\\ s \\ge 0\\ \\text{else}\\
            \\frac{s}{2},\\ -1,\\ 1\\right)

    so the optimal range [-0.5, 0.5] is L in [F/4, F/sqrt(2)], i.e. one stop
    under to half a stop over; +1 is saturation, -1 is L <= F/8.

    Why:

    * Signal is linear in dose, so stops (log2) make the meter read the same
      for the same dose error at any level; dose errors are multiplicative.
    * The brightest tenth of the exposed area is soft tissue and air, where
      clipping loses detail first; its level hardly depends on how much
      tooth or bone is in view (on the phantoms: 0.48-0.54 F at dose 1 over
      seeds, against 0.22-0.26 F for the median). The 90th, not the 99th,
      percentile so that hot pixels and small air gaps do not set it.
    * Zeros are excluded: they are the chamfered corners where there are no
      pixels, and dead pixels. Saturated pixels are kept, counted at F: they
      received the most dose. Dropping them would lower the level as the
      dose rises past saturation, making the meter fall when it should read
      its maximum (phantom seed 0: 0.77 F, 0.66 F, 0.56 F at doses 1.5, 2,
      2.5).
    * The sides differ because the failures differ: over the optimum there
      is one stop of headroom before clipping destroys data, while under it
      the image degrades gently (SNR falls as the square root of the dose),
      so two stops map to -1. F/2 as optimum leaves that one stop of
      headroom for thinner patients while keeping the SNR near its best.

    An image with no exposed pixel reads -1.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an integer from 1 to 16, got {bits!r}")
    full = 2**bits - 1
    hist = gray_histogram(image)   # a fresh array: ours to change
    hist[full] += hist[full + 1:].sum()   # above full scale (a sensor bug) counts as saturated
    hist = hist[: full + 1]
    hist[0] = 0
    cdf = np.cumsum(hist)
    exposed = int(cdf[-1])
    if exposed == 0:
        return {**SCALE, "value": SCALE["min"]}
    level = int(np.searchsorted(cdf, max(LEVEL_PERCENT / 100.0 * exposed, 1.0), side="left"))
    stops = math.log2(level / (OPTIMUM_FRACTION * full))
    value = stops / (STOPS_PER_UNIT_OVER if stops >= 0 else STOPS_PER_UNIT_UNDER)
    return {**SCALE, "value": round(min(max(value, SCALE["min"]), SCALE["max"]), 4)}
