"""A synthetic intraoral radiograph for the filter tests.

Linear (unmapped) 12-bit grays as a sensor delivers them: much exposure
(background, soft tissue) is bright, dense structures are dark. Two crowns
(ellipses), roots and bone (rectangles), a metal restoration and a thin
endodontic file, all with sharp edges, plus Poisson noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BACKGROUND = 3400
BONE = 2500
ROOT = 1500
CROWN = 900
FILE = 500
RESTORATION = 300


@dataclass(frozen=True)
class Phantom:
    image: np.ndarray  # uint16, noisy (or clean if noise=False)
    clean: np.ndarray  # uint16, noise free
    flat: np.ndarray  # bool, pixels at least 8 px from any edge
    edges: np.ndarray  # bool, pixels within 2 px of an edge


def tooth_phantom(shape=(600, 427), *, seed: int = 0, noise: bool = True) -> Phantom:
    rows, cols = shape
    clean = np.full(shape, BACKGROUND, np.float32)

    def box(r0, r1, c0, c1, value):
        cv2.rectangle(clean, (int(c0 * cols), int(r0 * rows)), (int(c1 * cols), int(r1 * rows)), value, -1)

    box(0.6, 1.0, 0.0, 1.0, BONE)
    for c in (0.3, 0.7):
        box(0.4, 0.9, c - 0.07, c + 0.07, ROOT)
        cv2.ellipse(clean, (int(c * cols), int(0.32 * rows)), (int(0.14 * cols), int(0.16 * rows)),
                    0, 0, 360, CROWN, -1)
    box(0.22, 0.3, 0.22, 0.36, RESTORATION)
    cv2.line(clean, (int(0.7 * cols), int(0.45 * rows)), (int(0.7 * cols), int(0.85 * rows)), FILE, 2)
    clean = clean.astype(np.uint16)

    kernel = np.ones((3, 3), np.uint8)
    boundary = cv2.dilate(clean, kernel) != cv2.erode(clean, kernel)
    edges = cv2.dilate(boundary.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    wide = np.ones((17, 17), np.uint8)
    flat = cv2.dilate(clean, wide) == cv2.erode(clean, wide)

    image = clean
    if noise:
        rng = np.random.default_rng(seed)
        image = rng.poisson(clean).clip(0, 65535).astype(np.uint16)
    return Phantom(image=image, clean=clean, flat=flat, edges=edges)


def edge_energy(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared gradient (forward differences) over the masked pixels."""
    x = image.astype(np.float64)
    gy = np.zeros_like(x)
    gx = np.zeros_like(x)
    gy[:-1] = np.diff(x, axis=0)
    gx[:, :-1] = np.diff(x, axis=1)
    return float(np.mean((gx * gx + gy * gy)[mask]))


def flat_noise(image: np.ndarray, phantom: Phantom) -> dict[int, float]:
    """Standard deviation of the image in the flat area of each clean gray."""
    x = image.astype(np.float64)
    return {int(v): float(x[phantom.flat & (phantom.clean == v)].std())
            for v in np.unique(phantom.clean[phantom.flat])}
