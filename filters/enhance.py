"""The DSIO enhancement filters: Select, Supreme and AE.

All three run one engine, `filters.multiscale.multiscale_enhance`, with the
presets of `filters.presets`, on unmapped data: given a LUT, the image is
unmapped, enhanced, clipped and re-mapped with the same LUT, so the output
has the input's representation. The engine works on the square root of the
linear grays (`filters.stabilize`), where X-ray noise is about equal at
every gray, so one noise threshold fits dense and thin regions alike.

What the presets do, in words (exact numbers in `filters.presets`):

- Noise: fine detail below a threshold (a multiple of the measured noise
  level) is treated as noise and reduced, never sharpened.
- Edges: fine detail above the threshold is amplified (sharper edges,
  files, margins).
- Contrast: a mid-scale band is amplified (local contrast of bone and
  soft gradients); it is not cored, so it also lifts some mid-scale noise.
"""

from __future__ import annotations

import numpy as np

from . import _checks
from .lut import Lut
from .multiscale import multiscale_enhance
from .presets import AE_TASKS, SELECT_MODES, SUPREME_TASKS, Preset
from .stabilize import domain_tables

SELECT_MODE_NAMES = tuple(SELECT_MODES)
SUPREME_TASK_NAMES = tuple(SUPREME_TASKS)
AE_TASK_NAMES = tuple(AE_TASKS)


def select(image: np.ndarray, *, mode: str, lut: Lut | None = None) -> np.ndarray:
    """Select filter: edge-preserving smoothing or one of three sharpenings.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
        Linear grays, or LUT-mapped values if `lut` is given.
    mode : {"smooth", "edgeLow", "edgeHigh", "edgePro"}
    lut : Lut, optional
        The LUT the image was mapped with.

    Returns
    -------
    (M, N) ndarray of uint16
        Same representation as the input.

    Notes
    -----
    Dtype rule: computes in float32, returns uint16. Range rule: the
    enhanced linear image is rounded and clipped to [0, 65535] (to the
    LUT's gray range when a LUT is given) before the re-map, so no value
    leaves [0, 65535].

    ========  ========================================================
    mode      effect
    ========  ========================================================
    smooth    Removes fine detail below 2.5x the noise level:
              flat areas get much quieter, edges above it are kept
              untouched, contrast is unchanged.
    edgeLow   Mild sharpening and local contrast, while removing
              most sub-threshold noise: flat areas stay about as
              quiet as the input.
    edgeHigh  Twice edgeLow's gains; flat-area noise rises slightly.
    edgePro   Strongest sharpening and local contrast; noise rises
              visibly but far less than edge contrast.
    ========  ========================================================

    Gains rise from edgeLow to edgePro, so edge contrast does too. Formulas:
    `filters.multiscale.multiscale_enhance`.
    """
    mode = _checks.choice(mode, name="mode", allowed=SELECT_MODE_NAMES)
    return _enhance(image, preset=SELECT_MODES[mode], strength=1.0, lut=lut)


def supreme(image: np.ndarray, *, task: str, sharpness: float, lut: Lut | None = None,
            binned: bool = False) -> np.ndarray:
    """Supreme filter: task-tuned sharpening with a sharpness percentage.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
        Linear grays, or LUT-mapped values if `lut` is given.
    task : {"general", "endodontic", "periodontic", "restorative", "hygiene"}
    sharpness : float
        Percentage in [0, 100]; scales every gain linearly from 0.
        0 returns an unchanged copy.
    lut : Lut, optional
        The LUT the image was mapped with.
    binned : bool, optional
        The image was acquired with 2x2 binning: the task's scales are
        halved (`Preset.binned`), so the filter works on the same anatomy
        as in an unbinned image of the same sensor.

    Returns
    -------
    (M, N) ndarray of uint16
        Same representation as the input.

    Notes
    -----
    Dtype rule: computes in float32, returns uint16. Range rule: the
    enhanced linear image is rounded and clipped to [0, 65535] (to the
    LUT's gray range when a LUT is given) before the re-map, so no value
    leaves [0, 65535].

    ============  ======================================================
    task          emphasis
    ============  ======================================================
    general       Balanced fine sharpening and local contrast, moderate
                  noise removal.
    endodontic    Finest scale, strongest fine gain, lower threshold:
                  files, canal walls and apices are fine detail only a
                  little above the noise, so more noise comes through.
    periodontic   Mid-scale contrast first (crestal bone, trabecular
                  pattern), modest fine gain, more noise removal.
    restorative   Crisp restoration margins; a high threshold keeps
                  noise out of the strong fine gain (flat areas get
                  quieter), a low band gain limits halos around metal.
    hygiene       Gentle and balanced, clean flat areas: overview of
                  calculus and bone level.
    ============  ======================================================

    At every task edge contrast rises monotonically with `sharpness`.
    Exact parameters: `filters.presets.SUPREME_TASKS`.
    """
    task = _checks.choice(task, name="task", allowed=SUPREME_TASK_NAMES)
    strength = _checks.real(sharpness, name="sharpness", low=0.0, high=100.0) / 100.0
    if not isinstance(binned, bool):
        raise TypeError(f"binned must be True or False, got {binned!r}")
    preset = SUPREME_TASKS[task].binned() if binned else SUPREME_TASKS[task]
    return _enhance(image, preset=preset, strength=strength, lut=lut)


def ae(image: np.ndarray, *, task: str, sharpness: float, lut: Lut | None = None) -> np.ndarray:
    """AE filter: like `supreme`, tuned for noisier input.

    Parameters
    ----------
    image : (M, N) ndarray of uint16
        Linear grays, or LUT-mapped values if `lut` is given.
    task : {"general", "endodontic", "periodontic", "restorative"}
    sharpness : float
        Percentage in [0, 100]; scales every gain linearly from 0.
        0 returns an unchanged copy.
    lut : Lut, optional
        The LUT the image was mapped with.

    Returns
    -------
    (M, N) ndarray of uint16
        Same representation as the input.

    Notes
    -----
    Dtype rule: computes in float32, returns uint16. Range rule: the
    enhanced linear image is rounded and clipped to [0, 65535] (to the
    LUT's gray range when a LUT is given) before the re-map, so no value
    leaves [0, 65535].

    The tasks have the same aims as in `supreme`. Each AE preset uses
    slightly larger scales, a higher noise threshold and stronger noise
    removal than its Supreme counterpart, trading a little fine detail for
    quieter flat areas. Exact parameters: `filters.presets.AE_TASKS`.
    """
    task = _checks.choice(task, name="task", allowed=AE_TASK_NAMES)
    strength = _checks.real(sharpness, name="sharpness", low=0.0, high=100.0) / 100.0
    return _enhance(image, preset=AE_TASKS[task], strength=strength, lut=lut)


def _enhance(image, *, preset: Preset, strength: float, lut: Lut | None) -> np.ndarray:
    image = _checks.gray16(image)
    if lut is not None and not isinstance(lut, Lut):
        raise TypeError(f"lut must be a filters.lut.Lut or None, got {type(lut).__name__}")
    if strength == 0:
        # Identity by definition, also for values a LUT could not produce.
        return image.copy()
    to_domain, from_domain = domain_tables(lut)
    return multiscale_enhance(image, preset=preset, strength=strength,
                              to_domain=to_domain, from_domain=from_domain)
