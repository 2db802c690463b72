"""The working domain of the enhancement filters: square root of linear grays.

X-ray quantum noise is close to Poisson: its variance grows in proportion to
the linear gray. In ``y = s * sqrt(x)`` (a variance-stabilizing transform,
like Anscombe's) the noise is about the same at every gray, so one global
coring threshold fits dark and bright areas alike. For small changes a gain
g on detail of y is the same gain g on detail of x, since
``dx = 2 sqrt(x) / s * dy``, so presets keep their meaning.

Both directions are 65536-entry tables: the way in also unmaps a LUT and
converts to float32; the way out squares, rounds and re-maps with the LUT,
all in one ``cv2.LUT`` pass each.
"""

from __future__ import annotations

import functools

import numpy as np

from .lut import Lut, forward_table, inverse_table


@functools.lru_cache(maxsize=64)
def domain_tables(lut: Lut | None) -> tuple[np.ndarray, np.ndarray]:
    """Tables into and out of the enhancement domain.

    Parameters
    ----------
    lut : Lut or None
        The LUT the input was mapped with; None for linear input.

    Returns
    -------
    to_domain : (65536,) ndarray of float32
        Input value -> ``y = s * sqrt(x)``, x the linear gray.
    from_domain : (65536,) ndarray of uint16
        Domain index j (y rounded) -> output value: the linear gray
        ``round((j / s)**2)``, clipped to [0, 65535], re-mapped with `lut`.

    Notes
    -----
    ``s = 65535 / sqrt(top)`` makes the index span the linear range
    [0, top], with top the LUT's brightest gray (beyond it the forward map
    is flat anyway) or 65535 without a LUT. Round trip: ``j`` rounded moves
    x by at most ``sqrt(x) / s <= top / 65535``, so every linear gray below
    ``min(top, 32767)`` comes back exactly, and above that by at most one
    gray.
    """
    if lut is None:
        top, linear = 65535, np.arange(65536, dtype=np.float64)
    else:
        top, linear = lut.gray_range[1], inverse_table(lut).astype(np.float64)
    scale = 65535.0 / np.sqrt(top)
    to_domain = (scale * np.sqrt(linear)).astype(np.float32)
    index = np.arange(65536, dtype=np.float64) / scale
    back = np.clip(np.rint(index * index), 0, 65535).astype(np.uint16)
    from_domain = back if lut is None else forward_table(lut)[back]
    for table in (to_domain, from_domain):
        table.setflags(write=False)
    return to_domain, from_domain
