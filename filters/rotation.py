"""Rotation by quarter turns."""

from __future__ import annotations

import numbers

import cv2
import numpy as np

from . import _checks

_CV2_CODES = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
DEGREES = (0, 90, 180, 270)


def rotate(image: np.ndarray, *, degrees: int) -> np.ndarray:
    """Rotate an image clockwise by a multiple of 90 degrees.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
    degrees : {0, 90, 180, 270}
        Clockwise angle, as seen with row 0 at the top. Integral floats
        (``90.0``) are accepted.

    Returns
    -------
    ndarray of uint16
        (N, M) for 90 and 270, (M, N) otherwise; always a new array
        (0 returns a copy).

    Notes
    -----
    Dtype rule: uint16 in, uint16 out. Range rule: pixels are moved, never
    changed. 90 degrees equals ``np.rot90(image, -1)``.
    """
    image = _checks.gray16(image)
    if isinstance(degrees, bool) or not isinstance(degrees, numbers.Real) or degrees not in DEGREES:
        raise ValueError(f"degrees must be one of 0, 90, 180, 270 (clockwise); got {degrees!r}")
    if degrees == 0:
        return image.copy()
    return cv2.rotate(image, _CV2_CODES[int(degrees)])
