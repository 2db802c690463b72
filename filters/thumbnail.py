"""A small 8-bit JPEG preview of a 16-bit image.

One function makes every preview the daemon hands out: the ``previewUrl``
of an acquired image (a square box, ``acquisition.preview_max``) and the
thumbnail the V7 Darwin adapter puts beside an image (Darwin's own box).
The same pixels, window, box and quality give the same bytes whoever asks.
"""
from __future__ import annotations

import cv2
import numpy as np

from . import _checks
from .display import to_8bit
from .lut import Lut


def fit_inside(width: int, height: int, *, box: tuple[int, int]) -> tuple[int, int]:
    """The size of a ``width`` x ``height`` image shrunk to fit ``box``, aspect kept.

    Never enlarges (like ImageMagick's ``356x200>``); each side is at least 1.
    """
    box_w, box_h = box
    scale = min(1.0, box_w / width, box_h / height)
    return max(1, min(box_w, round(width * scale))), max(1, min(box_h, round(height * scale)))


def jpeg_preview(pixels: np.ndarray, *, lut: Lut | None, box: tuple[int, int], quality: int,
                 window: tuple[float, float] | None = None) -> bytes:
    """Shrink ``pixels`` to fit ``box``, window them to 8 bits and encode a JPEG.

    Parameters
    ----------
    pixels : (M, N) ndarray of uint16
    lut : Lut or None
        The map the pixels were made with: its output range is the window.
        None for linear grays: the window then comes from the preview's own
        gray percentiles (see `filters.to_8bit`).
    box : (width, height)
        The preview fits inside, aspect kept, never enlarged (`fit_inside`).
    quality : int
        JPEG quality, 1 to 100.
    window : (lo, hi), optional
        A viewer's window (`filters.display.center_width`), over the LUT's
        and the automatic one.

    Returns
    -------
    bytes
        A baseline 8-bit grayscale JPEG.

    Raises
    ------
    TypeError
        For pixels that are not a uint16 ndarray, or a lut that is not a Lut.
    ValueError
        For pixels that are not 2-D, or a box or quality out of range.

    Notes
    -----
    Dtype rule: uint16 in, 8 bits per sample out. Range rule: as
    `filters.to_8bit`, grays below the window give black, above it white.

    The image is shrunk first (area averaging, still 16 bits), so the
    window and the encoder only touch the small image: for a 2400x1708
    exposure and a 256-pixel box, about 90 times fewer pixels. Without a
    LUT the window is thus taken from the averaged grays, whose noise is
    lower, which suits a picture that small.
    """
    pixels = _checks.gray16(pixels, name="pixels")
    if not (isinstance(box, (tuple, list)) and len(box) == 2):
        raise ValueError(f"box must be a (width, height) tuple, got {box!r}")
    box_w, box_h = (_checks.integer(side, name="box side", low=1, high=65535) for side in box)
    quality = _checks.integer(quality, name="quality", low=1, high=100)
    height, width = pixels.shape
    size = fit_inside(width, height, box=(box_w, box_h))
    if size != (width, height):
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", to_8bit(pixels, lut=lut, window=window), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV reports failure without a reason
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
