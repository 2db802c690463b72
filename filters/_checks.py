"""Argument checks shared by the filters (private).

Messages name the parameter and the allowed values so that the daemon can pass
them to an HTTP client unchanged.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def gray16(image, *, name: str = "image") -> np.ndarray:
    """Return `image` as a C-contiguous native-endian 2-D uint16 array.

    Raises TypeError for a non-array or another dtype, ValueError for a wrong
    number of dimensions or an empty image. No copy when none is needed.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(image).__name__}")
    if image.dtype.kind != "u" or image.dtype.itemsize != 2:
        raise TypeError(f"{name} must have dtype uint16, got {image.dtype}")
    if image.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, columns), got {image.ndim}-D with shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {image.shape}")
    # cv2 wants native byte order and positive strides.
    return np.ascontiguousarray(image, dtype=np.uint16)


def real(value, *, name: str, low: float, high: float) -> float:
    """Return `value` as a float, checking it is a finite number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    out = float(value)
    if not math.isfinite(out) or not low <= out <= high:
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return out


def integer(value, *, name: str, low: int, high: int) -> int:
    """Return `value` as an int, checking it is a whole number in [low, high].

    Integral floats (3.0) are accepted because JSON clients often send them.
    """
    bad = ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise bad
    if isinstance(value, numbers.Integral):
        out = int(value)
    else:
        f = float(value)
        if not math.isfinite(f) or f != int(f):
            raise bad
        out = int(f)
    if not low <= out <= high:
        raise bad
    return out


def choice(value, *, name: str, allowed) -> str:
    """Return `value` if it is one of the strings in `allowed`."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value
