"""A small 8-bit JPEG preview of a 16-bit image, for platforms that show one.

V7 Darwin with read-only external storage cannot make its own thumbnail, so
the adapter puts one beside the image. It must be a separate, small file
(Darwin warns that using the original as thumbnail breaks some browsers).
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from .display import to_8bit
from .lut import Lut

log = logging.getLogger("sensord.filters.thumbnail")

BOX = (356, 200)  # width, height: the size Darwin's own thumbnails fit in
QUALITY = 60


def fit_inside(width: int, height: int, *, box: tuple[int, int] = BOX) -> tuple[int, int]:
    """The size of a ``width`` x ``height`` image shrunk to fit ``box``, aspect kept.

    Never enlarges (like ImageMagick's ``356x200>``); each side is at least 1.
    """
    box_w, box_h = box
    scale = min(1.0, box_w / width, box_h / height)
    return max(1, min(box_w, round(width * scale))), max(1, min(box_h, round(height * scale)))


def jpeg_thumbnail(pixels: np.ndarray, *, lut_info: dict | None = None,
                   box: tuple[int, int] = BOX, quality: int = QUALITY) -> bytes:
    """Window ``pixels`` (2-D uint16) to 8 bits, shrink to fit ``box``, encode as JPEG.

    The window is the LUT's output range when ``lut_info`` (a DSIO LutInfo)
    is given, else the image's own percentiles (`filters.to_8bit`). A LutInfo
    that does not describe a usable map only costs the thumbnail its window:
    the image is still worth forwarding, so the automatic window is used.
    """
    lut = None
    if lut_info:
        try:
            lut = Lut.from_info(lut_info)
        except ValueError as err:
            log.warning("thumbnail: ignoring an unusable lutInfo (%s); automatic window", err)
    gray8 = to_8bit(pixels, lut=lut)
    height, width = gray8.shape
    size = fit_inside(width, height, box=box)
    if size != (width, height):
        gray8 = cv2.resize(gray8, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", gray8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV reports failure without a reason
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
