"""Parameter sets of the enhancement filters (Select, Supreme, AE).

The vendor's algorithms are not public; these presets drive our own engine,
`filters.multiscale.multiscale_enhance`. Each one sets two scales and three
gains:

- ``fine_sigma`` (px): the fine scale. Detail finer than it (edges of files,
  canal walls, enamel margins, and noise) is ``d = x - G(fine_sigma)``.
- ``coarse_sigma`` (px): the coarse scale. The band ``G(fine) - G(coarse)``
  holds local contrast (bone crest, trabecular pattern, soft gradients).
- ``fine_gain``: gain on fine detail *above* the noise level (sharpening).
- ``coarse_gain``: gain on the band (local contrast).
- ``noise_gain``: gain on fine detail *below* the noise level; negative
  values remove noise (-1 removes all of it).
- ``coring``: the noise threshold as a multiple of the measured noise
  level; larger values treat more fine detail as noise.

Scales are in pixels; gains and noise levels apply in the working domain of
`filters.stabilize` (square root of linear grays), where a gain g on small
detail is also a gain g on the linear image.

Supreme and AE gains are the values at sharpness 100 and scale linearly
with sharpness. The AE presets assume a noisier input than the Supreme ones
(our design choice, not vendor data): larger scales, higher coring and
stronger noise removal for the same task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from types import MappingProxyType


@dataclass(frozen=True)
class Preset:
    """Scales (px), gains and coring of one enhancement preset."""

    fine_sigma: float
    coarse_sigma: float
    fine_gain: float
    coarse_gain: float
    noise_gain: float
    coring: float

    def __post_init__(self):
        if not (0 < self.fine_sigma < self.coarse_sigma and math.isfinite(self.coarse_sigma)):
            raise ValueError("need 0 < fine_sigma < coarse_sigma")
        if not self.coring > 0:
            raise ValueError("coring must be > 0")

    def binned(self) -> "Preset":
        """The same preset for a 2x2-binned image: each pixel spans twice the
        distance, so the same anatomy sits at half the scale in pixels."""
        return replace(self, fine_sigma=self.fine_sigma / 2, coarse_sigma=self.coarse_sigma / 2)


# Select: fixed strengths. smooth only removes noise; the edge modes keep the
# same scales and raise both gains step by step.
SELECT_MODES = MappingProxyType({
    "smooth": Preset(1.0, 4.0, fine_gain=0.0, coarse_gain=0.0, noise_gain=-1.0, coring=2.5),
    "edgeLow": Preset(1.0, 4.0, fine_gain=0.6, coarse_gain=0.3, noise_gain=-0.6, coring=2.0),
    "edgeHigh": Preset(1.0, 4.0, fine_gain=1.2, coarse_gain=0.6, noise_gain=-0.5, coring=2.0),
    "edgePro": Preset(1.0, 4.0, fine_gain=2.0, coarse_gain=1.0, noise_gain=-0.4, coring=2.0),
})

SUPREME_TASKS = MappingProxyType({
    # Balanced sharpening and local contrast, moderate noise removal.
    "general": Preset(1.0, 4.0, fine_gain=1.5, coarse_gain=0.7, noise_gain=-0.5, coring=2.0),
    # Finest scale, strongest fine gain, lighter coring: thin files, apices
    # and canal walls are fine detail only a little above the noise.
    "endodontic": Preset(0.8, 3.0, fine_gain=2.0, coarse_gain=0.5, noise_gain=-0.4, coring=1.6),
    # Mid scales dominate: crestal bone and trabecular pattern are low
    # contrast structures of several pixels; fine gain is kept modest.
    "periodontic": Preset(1.2, 6.0, fine_gain=1.0, coarse_gain=1.4, noise_gain=-0.6, coring=2.0),
    # Crisp margins of restorations and caries beside them; strong coring so
    # the high fine gain does not raise noise, low band gain to limit halos
    # around metal.
    "restorative": Preset(1.0, 4.0, fine_gain=1.6, coarse_gain=0.4, noise_gain=-0.6, coring=2.8),
    # Overview for calculus and bone level: gentle, balanced, clean.
    "hygiene": Preset(1.0, 5.0, fine_gain=1.0, coarse_gain=0.9, noise_gain=-0.6, coring=2.0),
})

# Same aims per task as Supreme, with larger scales, higher coring and more
# noise removal.
AE_TASKS = MappingProxyType({
    "general": Preset(1.2, 5.0, fine_gain=1.3, coarse_gain=0.8, noise_gain=-0.7, coring=2.5),
    "endodontic": Preset(1.0, 3.5, fine_gain=1.8, coarse_gain=0.6, noise_gain=-0.6, coring=2.0),
    "periodontic": Preset(1.4, 7.0, fine_gain=0.9, coarse_gain=1.5, noise_gain=-0.8, coring=2.5),
    "restorative": Preset(1.2, 5.0, fine_gain=1.4, coarse_gain=0.5, noise_gain=-0.8, coring=3.2),
})
