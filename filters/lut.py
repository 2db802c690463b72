"""The DSIO lookup table (LutInfo): forward map, exact inverse, automatic choice.

A `Lut` is a frozen value; its two 65536-entry tables are built once and
cached, and images are mapped through them with ``cv2.LUT`` (about 10x faster
than ``np.take`` on a 16-bit image).
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, fields

import cv2
import numpy as np

from . import _checks
from .histogram import gray_percentiles

_GRAYS = np.arange(65536, dtype=np.float64)

# LutInfo JSON names, used in error messages and by from_info/to_info.
_JSON_NAMES = {
    "gamma": "gamma",
    "slope": "slope",
    "offset": "offset",
    "total_grays": "totalGrays",
    "minimum_gray": "minimumGray",
    "maximum_gray": "maximumGray",
}


@dataclass(frozen=True)
class Lut:
    """Parameters of the map Y = m * x'**gamma + b (the DSIO ``LutInfo``).

    Attributes
    ----------
    gamma : float
        Exponent, finite and > 0.
    slope : float
        m, finite and non-zero (negative slopes are allowed).
    offset : float
        b, finite.
    total_grays : int
        Number of gray levels of the unmapped image, in [2, 65536].
        Informational: the map itself only uses the two grays below.
    minimum_gray : int
        Xmin in [0, 65535], the gray sent to x' = 0. Usually the bright end
        (larger than `maximum_gray`), which inverts the image.
    maximum_gray : int
        Xmax in [0, 65535], the gray sent to x' = 1; differs from Xmin.

    Raises
    ------
    ValueError
        On construction, naming the offending LutInfo field. Integral floats
        (``418.0``) are accepted for the integer fields.
    """

    gamma: float
    slope: float
    offset: float
    total_grays: int
    minimum_gray: int
    maximum_gray: int

    def __post_init__(self):
        # Normalise numpy scalars and integral floats so that equal LUTs hash
        # equally (the table cache is keyed on the Lut).
        def put(attr, value):
            object.__setattr__(self, attr, value)

        put("gamma", _as_float(self.gamma, "gamma"))
        put("slope", _as_float(self.slope, "slope"))
        put("offset", _as_float(self.offset, "offset"))
        put("total_grays", _checks.integer(self.total_grays, name="totalGrays", low=2, high=65536))
        put("minimum_gray", _checks.integer(self.minimum_gray, name="minimumGray", low=0, high=65535))
        put("maximum_gray", _checks.integer(self.maximum_gray, name="maximumGray", low=0, high=65535))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError unless the parameters define a usable map."""
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"gamma must be a finite number > 0, got {self.gamma!r}")
        if not math.isfinite(self.slope) or self.slope == 0:
            raise ValueError(f"slope must be a finite non-zero number, got {self.slope!r}")
        if not math.isfinite(self.offset):
            raise ValueError(f"offset must be a finite number, got {self.offset!r}")
        if self.minimum_gray == self.maximum_gray:
            raise ValueError(
                f"minimumGray and maximumGray must differ, both are {self.minimum_gray}"
            )

    @property
    def gray_range(self) -> tuple[int, int]:
        """The unmapped grays the map spans, ``(min(Xmin, Xmax), max(Xmin, Xmax))``."""
        return (min(self.minimum_gray, self.maximum_gray), max(self.minimum_gray, self.maximum_gray))

    @classmethod
    def from_info(cls, info) -> "Lut":
        """Build from a LutInfo mapping with the JSON names (``totalGrays`` ...)."""
        try:
            return cls(**{attr: info[key] for attr, key in _JSON_NAMES.items()})
        except KeyError as exc:
            raise ValueError(f"LutInfo is missing the field {exc.args[0]!r}") from None
        except TypeError:
            raise ValueError(f"LutInfo must be an object, got {type(info).__name__}") from None

    def to_info(self) -> dict:
        """The LutInfo mapping with the JSON names."""
        return {_JSON_NAMES[f.name]: getattr(self, f.name) for f in fields(self)}


def _forward_float(lut: Lut, grays: np.ndarray) -> np.ndarray:
    """Y before rounding, in float64, for the given grays."""
    x_norm = (grays - lut.minimum_gray) / (lut.maximum_gray - lut.minimum_gray)
    np.clip(x_norm, 0.0, 1.0, out=x_norm)
    return lut.slope * x_norm**lut.gamma + lut.offset


@functools.lru_cache(maxsize=64)
def forward_table(lut: Lut) -> np.ndarray:
    """The 65536-entry uint16 table of `lut_map` (read-only, cached per Lut)."""
    table = np.clip(np.rint(_forward_float(lut, _GRAYS)), 0, 65535).astype(np.uint16)
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=64)
def inverse_table(lut: Lut) -> np.ndarray:
    """The 65536-entry uint16 table of `lut_unmap` (read-only, cached per Lut)."""
    lo, hi = lut.gray_range
    domain = np.arange(lo, hi + 1, dtype=np.int64)
    mapped = forward_table(lut)[domain].astype(np.intp)
    # The forward map is monotonic on the domain, so the grays sharing one
    # mapped value form a contiguous bucket [first, last].
    first = np.full(65536, hi + 1, dtype=np.int64)
    last = np.full(65536, lo - 1, dtype=np.int64)
    np.minimum.at(first, mapped, domain)
    np.maximum.at(last, mapped, domain)
    hit = last >= first
    first = np.where(hit, first, lo)
    last = np.where(hit, last, hi)

    # The spec's inverse formula, with (Y - b)/m clipped so values the
    # forward map cannot produce stay defined.
    # A slope of a few ulps overflows to inf here, which the clip makes 1.0.
    with np.errstate(over="ignore"):
        t = np.clip((_GRAYS - lut.offset) / lut.slope, 0.0, 1.0)
    x = (lut.maximum_gray - lut.minimum_gray) * t ** (1.0 / lut.gamma) + lut.minimum_gray
    table = np.clip(np.rint(x), first, last).astype(np.uint16)
    table.setflags(write=False)
    return table


def lut_map(image: np.ndarray, *, lut: Lut) -> np.ndarray:
    """Map unmapped (linear) grays to presentation values with a LUT.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
        Unmapped grays.
    lut : Lut

    Returns
    -------
    (M, N) ndarray of uint16
        A new array.

    Notes
    -----
    Dtype rule: uint16 in, uint16 out; the table is computed in float64.
    Range rule: rounded to nearest, clipped to [0, 65535].

    .. math::

        x' = \\mathrm{clip}\\left(\\frac{X - X_{min}}{X_{max} - X_{min}}, 0, 1\\right),
        \\qquad Y = m\\,x'^{\\gamma} + b

    with :math:`X_{min}` = ``minimum_gray``, :math:`X_{max}` = ``maximum_gray``,
    m = ``slope``, b = ``offset``. Grays outside the LUT's range map like the
    nearer end of it.
    """
    image = _checks.gray16(image)
    _check_lut(lut)
    return cv2.LUT(image, forward_table(lut))


def lut_unmap(image: np.ndarray, *, lut: Lut) -> np.ndarray:
    """Recover unmapped (linear) grays from a LUT-mapped image.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
        Mapped values, as produced by `lut_map` with the same `lut`.
    lut : Lut

    Returns
    -------
    (M, N) ndarray of uint16
        A new array with grays in ``lut.gray_range``.

    Notes
    -----
    Dtype rule: uint16 in, uint16 out; the table is computed in float64.
    Range rule: clipped to [min(Xmin, Xmax), max(Xmin, Xmax)].

    The inverse formula is

    .. math::

        X = (X_{max} - X_{min})\\,\\mathrm{clip}\\left(\\frac{Y - b}{m}, 0, 1\\right)^{1/\\gamma} + X_{min}

    rounded. Rounding in the forward map makes some grays share a mapped
    value; for every Y the forward map produces, the result is clipped into
    that Y's bucket (the grays mapping to Y). Hence
    ``lut_unmap(lut_map(x)) == x`` exactly for every gray x of the range that
    shares its mapped value with no other gray, and stays in x's bucket
    otherwise. Values the forward map never produces (e.g. after filtering)
    get the formula's value clipped to the range.
    """
    image = _checks.gray16(image)
    _check_lut(lut)
    return cv2.LUT(image, inverse_table(lut))


def lut_from_histogram(
    image: np.ndarray, *, gamma: float, total_grays: int, clip_percent: float = 0.5
) -> Lut:
    """Choose an inverted display LUT from an unmapped image's histogram.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
        Unmapped (linear) grays, e.g. a fresh exposure.
    gamma : float
        Exponent of the map, > 0.
    total_grays : int
        Gray levels of the sensor, in [2, 65536] (4096 for 12 bits).
    clip_percent : float, optional
        Percentage of pixels allowed to saturate at each end, in [0, 50).

    Returns
    -------
    Lut
        ``minimum_gray`` = the bright-end percentile (most exposure) and
        ``maximum_gray`` = the dark-end percentile, so dense tissue shows
        light as on film; ``slope`` 65535, ``offset`` 0.

    Notes
    -----
    Dtype rule: uint16 in. With p = `clip_percent`, ``maximum_gray`` is the
    p-th and ``minimum_gray`` the (100 - p)-th gray percentile of the pixels
    above 0 (see `filters.histogram.gray_percentiles`), both clipped to
    [0, total_grays - 1]. A flat image gets a one-gray-wide range.
    """
    clip = _checks.real(clip_percent, name="clip_percent", low=0.0, high=50.0)
    if clip >= 50.0:
        raise ValueError(f"clip_percent must be in [0, 50), got {clip_percent!r}")
    total = _checks.integer(total_grays, name="total_grays", low=2, high=65536)
    # Pixels at 0 are the sensor's unexposed corners or dead pixels, not
    # anatomy: counting them pins the dark end of the map at 0.
    low, high = gray_percentiles(image, low_percent=clip, high_percent=100.0 - clip, exclude_zero=True)
    top = total - 1
    low, high = min(low, top), min(high, top)
    if low == high:  # flat image: any non-empty range will do
        low, high = (low - 1, high) if high == top else (low, high + 1)
    return Lut(gamma=gamma, slope=65535.0, offset=0.0, total_grays=total,
               minimum_gray=high, maximum_gray=low)


def _as_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _check_lut(lut) -> None:
    if not isinstance(lut, Lut):
        raise TypeError(f"lut must be a filters.lut.Lut, got {type(lut).__name__}")
