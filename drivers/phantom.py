"""A synthetic intraoral radiograph in raw sensor units, for the simulator.

One public function, :func:`phantom`. The anatomy (posterior teeth with
enamel caps, dentin, pulp and canals, roots in alveolar bone with a
periodontal ligament gap and lamina dura, trabecular texture, sometimes a
metal filling or a root filling) is drawn as an attenuation map at a quarter
of the sensor's resolution with cv2, turned into transmitted intensity, scaled
up, and only then given per-pixel quantum noise: the costly steps stay small
and a 2400x1708 frame takes 50-70 ms (plus ~0.1 s once per process
to tabulate the normal quantiles).
"""
from __future__ import annotations

import functools
import math
import statistics

import cv2
import numpy as np

# Attenuation (optical depth, exp(-T)) per structure at full thickness.
# Chosen so that dose 1.0 puts soft tissue near mid-range and metal near 0.
_MU = {"soft": 0.22, "bone": 0.55, "lamina": 0.30, "dentin": 0.95,
       "enamel": 0.75, "pulp": 0.45, "gutta": 1.8, "metal": 6.0}
_I0 = 0.62          # unattenuated signal at dose 1.0, fraction of full scale
_OFFSET = 0.02      # dark offset, fraction of full scale
_GAIN_12 = 0.5      # ADU per absorbed quantum at 12 bits (sets the SNR)
_READ_12 = 1.5      # read noise sigma in ADU at 12 bits
_BEAM_RADIUS_MM = 30.0  # round 60 mm cone at the sensor
_CHAMFER_MM = 2.5   # cut corners of the active area (no pixels there)
_LOWRES = 4         # anatomy is drawn at 1/_LOWRES of the sensor's pixels
_SUB = 3            # cv2 drawing: fixed-point bits for sub-pixel vertices


def phantom(*, width: int, height: int, bits: int = 12, dose: float = 1.0,
            seed=None, dead_pixels: int = 0, binned: bool = False,
            pixel_size_mm: float = 0.015, defect_seed=None) -> np.ndarray:
    """Synthesize a raw intraoral X-ray frame.

    Parameters
    ----------
    width, height : int
        Sensor size in unbinned pixels (at least 8 each).
    bits : int, optional
        Significant bits of the sensor, 8 to 16.
    dose : float, optional
        Relative exposure, >= 0. Scales both the mean signal and the number
        of quanta: 1.0 puts soft tissue near mid-range, 0.3 is underexposed
        (noisy, low), 2.5 clips the bright areas at ``2**bits - 1``.
    seed : int or None, optional
        Seeds anatomy and noise; the same seed gives the same frame.
        None draws fresh entropy.
    dead_pixels : int, optional
        Number of defective pixels, each stuck at 0 or at ``2**bits - 1``.
    binned : bool, optional
        Return the frame as a sensor binning 2x2 would: ``(height // 2,
        width // 2)``, each pixel the mean of four, so noise sigma halves.
    pixel_size_mm : float, optional
        Unbinned pixel pitch; anatomy has real sizes in mm, so a sensor with
        larger pixels shows the same teeth with fewer pixels.
    defect_seed : int or None, optional
        Seeds the dead pixel positions (default: ``seed``). A real sensor's
        defects stay put from frame to frame; a driver passes a per-sensor
        value here and a per-exposure ``seed``.

    Returns
    -------
    (height, width) or (height // 2, width // 2) ndarray of uint16

    Notes
    -----
    Convention: raw values are *higher where more X-rays arrived*. Air and
    thin soft tissue are bright, bone darker, enamel darker still, metal and
    the unexposed area (outside the collimated beam) sit near the dark offset;
    the chamfered corners of the active area, where there are no pixels,
    are exactly 0.

    Dtype rule: computed in float32, returned as uint16.
    Range rule: every value is in ``[0, 2**bits - 1]``; values that would
    exceed it are clipped (saturation), as an ADC would.

    With transmission :math:`t = e^{-T}` of the attenuation map :math:`T`,
    a smooth gain/heel field :math:`g` and beam profile :math:`b`, the mean
    and noise of a pixel are

    .. math:: S = I_0\\,d\\,g\\,b\\,t, \\qquad
              x = o + S + \\sqrt{k S + r^2}\\;z, \\quad z \\sim N(0, 1)

    with full scale :math:`F = 2^{bits} - 1`, :math:`I_0 = 0.62F`, offset
    :math:`o = 0.02F`, :math:`k = 0.5 \\cdot 2^{bits-12}` ADU per quantum and
    read noise :math:`r = 1.5 \\cdot 2^{bits-12}`: the variance grows in
    proportion to the signal, as for Poisson counts (Gaussian approximation,
    which holds at these counts). Binning divides the variance by 4.
    """
    _check(width, height, bits, dose, dead_pixels, pixel_size_mm)
    width, height, bits, dead_pixels = int(width), int(height), int(bits), int(dead_pixels)
    root = np.random.SeedSequence(seed)
    geo_ss, noise_ss, defect_ss = root.spawn(3)
    if defect_seed is not None:
        defect_ss = np.random.SeedSequence(defect_seed)
    full = float(2 ** bits - 1)
    scale = 2.0 ** (bits - 12)

    lw, lh = max(4, math.ceil(width / _LOWRES)), max(4, math.ceil(height / _LOWRES))
    mm = (width * pixel_size_mm / lw, height * pixel_size_mm / lh)  # mm per low-res px
    rng = np.random.default_rng(geo_ss)
    transmission = np.exp(-_attenuation(lh, lw, mm, rng)) * _beam_and_gain(lh, lw, mm, rng)

    out_h, out_w = (height // 2, width // 2) if binned else (height, width)
    signal = cv2.resize(transmission.astype(np.float32), (out_w, out_h),
                        interpolation=cv2.INTER_LINEAR)
    signal *= np.float32(_I0 * full * dose)
    # Per-pixel sigma from the signal itself: Poisson-like, vectorised.
    var = signal * np.float32(_GAIN_12 * scale)
    var += np.float32((_READ_12 * scale) ** 2)
    if binned:
        var *= np.float32(0.25)
    noise = _standard_normal(np.random.default_rng(noise_ss), (out_h, out_w))
    noise *= np.sqrt(var, out=var)
    signal += noise
    signal += np.float32(_OFFSET * full)
    np.clip(signal, 0.0, full, out=signal)
    frame = np.rint(signal, out=signal).astype(np.uint16)

    out_pitch = pixel_size_mm * (2 if binned else 1)
    _cut_corners(frame, max(1, round(_CHAMFER_MM / out_pitch)))
    if dead_pixels:
        _add_dead_pixels(frame, width, height, dead_pixels, binned, full,
                         np.random.default_rng(defect_ss))
    return frame


def _check(width, height, bits, dose, dead_pixels, pixel_size_mm):
    if int(width) != width or int(height) != height or width < 8 or height < 8:
        raise ValueError(f"width and height must be integers >= 8, got {width}x{height}")
    if int(bits) != bits or not 8 <= bits <= 16:
        raise ValueError(f"bits must be an integer from 8 to 16, got {bits!r}")
    if not (math.isfinite(dose) and dose >= 0):
        raise ValueError(f"dose must be finite and >= 0, got {dose!r}")
    if int(dead_pixels) != dead_pixels or not 0 <= dead_pixels <= width * height:
        raise ValueError(f"dead_pixels must be an integer in [0, {width * height}], got {dead_pixels!r}")
    if not (math.isfinite(pixel_size_mm) and pixel_size_mm > 0):
        raise ValueError(f"pixel_size_mm must be > 0, got {pixel_size_mm!r}")


@functools.cache
def _normal_table() -> np.ndarray:
    """The 65536 quantiles of N(0, 1) at (i + 0.5) / 65536, scaled to unit variance."""
    inv = statistics.NormalDist().inv_cdf
    table = np.array([inv((i + 0.5) / 65536) for i in range(65536)], np.float64)
    return (table / table.std()).astype(np.float32)


def _standard_normal(rng, shape) -> np.ndarray:
    """N(0, 1) draws by table lookup of uniform 16-bit indices.

    Three times faster than ``rng.standard_normal`` for a full frame; the
    tails stop at 4.3 sigma, far beyond anything a 2-D frame would show.
    """
    return _normal_table()[rng.integers(0, 65536, size=shape, dtype=np.uint16)]


# --- anatomy (low resolution, in mm) ----------------------------------------

def _attenuation(lh, lw, mm, rng) -> np.ndarray:
    """Attenuation map T (float32, >= 0) of a posterior periapical view."""
    fov_w, fov_h = lw * mm[0], lh * mm[1]
    # Draw beyond the field so that tilting it brings in anatomy, not edges.
    m = max(2, math.ceil(0.08 * max(lh, lw)))
    big_h, big_w = lh + 2 * m, lw + 2 * m
    yy = ((np.arange(big_h, dtype=np.float32) + 0.5 - m) * mm[1])[:, None]
    xx = ((np.arange(big_w, dtype=np.float32) + 0.5 - m) * mm[0])[None, :]
    canvas = _Canvas(big_h, big_w, mm, origin=(m * mm[0], m * mm[1]))

    y_occ = fov_h * rng.uniform(0.06, 0.12)          # occlusal plane
    teeth = _draw_teeth(canvas, rng, fov_w, y_occ, margin=m * mm[0])
    crown, core, root, pulp, metal, gutta = (canvas.mask(k) for k in
                                             ("crown", "core", "root", "pulp", "metal", "gutta"))
    tooth = np.maximum(crown, root)
    enamel = crown * (1.0 - core)

    # Alveolar crest 1.2-2 mm below the cementoenamel junction, gently wavy.
    y_cej = np.mean([t[1] for t in teeth]) if teeth else fov_h * 0.4
    crest = y_cej + 1.6 + 0.4 * np.sin(2 * np.pi * xx / rng.uniform(7, 11) + rng.uniform(0, 6.3))
    bone = np.clip((yy - crest) / 0.5, 0.0, 1.0)
    d_out = canvas.distance(root, inside=False)      # mm from the root surface
    # Ligament space (no bone) and the dense socket wall, softened so the
    # pixel steps of the distance transform do not show.
    pdl = cv2.GaussianBlur(((d_out > 0) & (d_out < 0.22)).astype(np.float32), (0, 0), 1.0)
    lamina = cv2.GaussianBlur(((d_out >= 0.22) & (d_out < 0.5)).astype(np.float32), (0, 0), 1.0)
    trab = _trabecular(big_h, big_w, mm, rng)

    t = np.full((big_h, big_w), _MU["soft"], np.float32)
    t += np.float32(0.08) * (yy / fov_h) + np.float32(0.05) * np.sin(xx / fov_w * 3 + rng.uniform(0, 6.3))
    t -= np.float32(0.07) * np.clip((y_occ - yy) / 2.0, 0.0, 1.0)  # air by the cheek
    t += bone * (_MU["bone"] * (1.0 + 0.25 * trab) * (1.0 - 0.8 * pdl) * (1.0 - 0.35 * root)
                 + _MU["lamina"] * lamina)
    t += _MU["dentin"] * _rounded(canvas.distance(tooth), 1.4) * tooth
    t += _MU["enamel"] * enamel
    t -= _MU["pulp"] * _rounded(canvas.distance(pulp), 0.5) * pulp
    t += _MU["gutta"] * gutta + _MU["metal"] * metal * crown

    # Tilt of the film holder, upper jaw (crowns down) or lower, either side.
    angle = rng.uniform(-6.0, 6.0)
    rot = cv2.getRotationMatrix2D((big_w / 2, big_h / 2), angle, 1.0)
    t = cv2.warpAffine(t, rot, (big_w, big_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        t = cv2.flip(t, 0)
    if rng.random() < 0.5:
        t = cv2.flip(t, 1)
    # Scintillator blur: softens drawn edges the way a real sensor does.
    t = cv2.GaussianBlur(t, (0, 0), max(0.5, 0.035 / mm[0]))
    return t[m:m + lh, m:m + lw]


class _Canvas:
    """Union masks drawn with anti-aliased cv2 polygons in mm coordinates."""

    def __init__(self, h, w, mm, origin=(0.0, 0.0)):
        self.shape, self.mm, self.origin, self.layers = (h, w), mm, origin, {}

    def _layer(self, name):
        return self.layers.setdefault(name, np.zeros(self.shape, np.uint8))

    def poly(self, name, pts_mm):
        pts = (np.asarray(pts_mm, np.float64) + self.origin) / self.mm * (1 << _SUB)
        cv2.fillPoly(self._layer(name), [np.rint(pts).astype(np.int32)], 255,
                     lineType=cv2.LINE_AA, shift=_SUB)

    def ellipse(self, name, center_mm, axes_mm, angle=0.0):
        f = 1 << _SUB
        c = tuple(int(round((v + o) / s * f)) for v, o, s in zip(center_mm, self.origin, self.mm))
        a = tuple(max(1, int(round(v / s * f))) for v, s in zip(axes_mm, self.mm))
        cv2.ellipse(self._layer(name), c, a, angle, 0, 360, 255, -1, cv2.LINE_AA, _SUB)

    def mask(self, name) -> np.ndarray:
        return self._layer(name).astype(np.float32) * np.float32(1 / 255)

    def distance(self, mask, inside=True) -> np.ndarray:
        """Distance in mm to the mask's edge, from inside (or from outside)."""
        binary = ((mask > 0.5) if inside else (mask <= 0.5)).astype(np.uint8)
        return cv2.distanceTransform(binary, cv2.DIST_L2, 3) * np.float32(sum(self.mm) / 2)


def _rounded(dist_mm, radius_mm):
    """Projected thickness profile of a rounded body: 0 at the edge, 1 inside."""
    u = np.minimum(dist_mm / np.float32(radius_mm), 1.0)
    return np.sqrt(1.0 - (1.0 - u) ** 2)


def _draw_teeth(canvas, rng, fov_w, y_occ, margin):
    """Premolars then molars across the field; returns (cx, y_cej) per tooth."""
    n_pre = int(rng.integers(0, 4))
    restored = rng.random() < 0.7
    root_filled = rng.random() < 0.3
    teeth, x, i, treated = [], -margin - rng.uniform(0.0, 5.0), 0, False
    while x < fov_w + margin:
        molar = i >= n_pre
        w = (10.2 if molar else 7.0) * rng.uniform(0.93, 1.07)
        cx, hw = x + w / 2, w / 2
        # Dental work goes on the first tooth wholly in view.
        treat = not treated and hw < cx < fov_w - hw
        treated |= treat
        neck = hw * rng.uniform(0.6, 0.68)
        y_cej = y_occ + rng.uniform(6.0, 7.2) + rng.normal(0, 0.3)
        canvas.poly("crown", _crown(cx, y_occ, y_cej, hw, neck, 1.2 if molar else 1.0))
        # Enamel's inner boundary: the crown moved down and narrowed, so the
        # cap is ~1.5 mm thick on the cusps and thins out to the CEJ.
        core = _crown(cx, y_occ + 1.5, y_cej + 1.5, hw, neck, 1.0)
        core[:, 0] = cx + (core[:, 0] - cx) * 0.82
        canvas.poly("core", core)
        canvas.ellipse("pulp", (cx, y_cej - 0.9), (0.36 * hw, 1.7))
        length = rng.uniform(10.5, 13.0) * (0.92 if molar else 1.0)
        tilt = rng.normal(0, 0.6)
        roots = ([(-0.45, -1.0), (0.45, 0.8)] if molar else [(0.0, 0.0)])
        for j, (off, spread) in enumerate(roots):
            top_x = cx + off * neck
            apex = (top_x + spread + tilt, y_cej + length * (0.95 if j else 1.0))
            half = neck * (0.5 if molar else 0.95)
            canvas.poly("root", _root(top_x, y_cej - 0.6, *apex, half, 0.45))
            canal = _root(top_x, y_cej - 0.3, apex[0], apex[1] - 0.6, 0.32, 0.07)
            canvas.poly("pulp", canal)
            if root_filled and treat:
                canvas.poly("gutta", _root(top_x, y_cej - 0.3, apex[0], apex[1] - 1.0, 0.3, 0.1))
                canvas.ellipse("gutta", (cx, y_cej - 0.9), (0.36 * hw, 1.7))   # sealed chamber
        if molar:  # root trunk above the furcation
            canvas.poly("root", _root(cx, y_cej - 0.6, cx, y_cej + 2.8, neck * 0.98, neck * 0.8))
        if restored and treat:
            side = 1.0 if rng.random() < 0.5 else -1.0
            canvas.ellipse("metal", (cx, y_occ + 1.3), (0.32 * w, 1.3))
            if rng.random() < 0.6:   # class II: the filling reaches a contact
                edge = cx + side * hw
                canvas.poly("metal", [(cx, y_occ + 0.3), (edge, y_occ + 0.3),
                                      (edge, y_occ + 3.4), (cx, y_occ + 3.4)])
        teeth.append((cx, y_cej))
        x += w + rng.uniform(0.1, 0.5)
        i += 1
    return teeth


def _crown(cx, y_occ, y_cej, hw, neck, depth, n=20):
    """Crown outline: two cusps, widest near the contacts, narrowing to the neck."""
    u = np.linspace(0.0, 1.0, n)
    half = np.where(u < 0.3, hw * (0.82 + 0.18 * np.sin(u / 0.3 * np.pi / 2)),
                    hw + (neck - hw) * np.clip((u - 0.3) / 0.7, 0, 1) ** 1.4)
    y = y_occ + depth + u * (y_cej - y_occ - depth)
    s = np.linspace(0.0, 1.0, 2 * n)
    top = np.c_[cx + (s - 0.5) * 2 * half[0], y_occ + depth * (1 - np.abs(np.sin(2 * np.pi * s)))]
    return np.vstack([np.c_[cx - half[::-1], y[::-1]], top, np.c_[cx + half, y]])


def _root(x0, y0, x1, y1, half0, half1, n=14):
    """Tapering root (or canal) outline from (x0, y0) to a rounded apex at (x1, y1)."""
    v = np.linspace(0.0, 1.0, n)
    xc, yc = x0 + (x1 - x0) * v ** 1.3, y0 + (y1 - y0) * v
    half = half0 + (half1 - half0) * v ** 0.8
    theta = np.linspace(np.pi, 0.0, 9)
    cap = np.c_[x1 + half1 * np.cos(theta), y1 + half1 * np.sin(theta)]
    return np.vstack([np.c_[xc - half, yc], cap, np.c_[xc + half, yc][::-1]])


def _trabecular(lh, lw, mm, rng) -> np.ndarray:
    """Band-passed noise squashed into a network, in [-1, 1]: trabecular bone."""
    n = rng.standard_normal((lh, lw), dtype=np.float32)
    fine = cv2.GaussianBlur(n, (0, 0), max(0.3, 0.22 / mm[0]))
    # The wide blur on a 4x smaller grid: same result for a smooth field, 10x cheaper.
    small = cv2.resize(fine, (max(1, lw // 4), max(1, lh // 4)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(0.3, 0.8 / mm[0] / 4))
    band = fine - cv2.resize(small, (lw, lh), interpolation=cv2.INTER_LINEAR)
    return np.tanh(band * np.float32(1.0 / (band.std() + 1e-6)))


def _beam_and_gain(lh, lw, mm, rng) -> np.ndarray:
    """Round collimated beam (sometimes cutting a corner) times heel/gain field."""
    fov = np.array([lw * mm[0], lh * mm[1]])
    if rng.random() < 0.35:  # cone cut: beam aimed off towards one corner
        corner = rng.choice([-1.0, 1.0], size=2)
        center = fov / 2 - corner * np.array([rng.uniform(10, 14), rng.uniform(8, 11)])
    else:
        center = fov / 2 + rng.normal(0.0, 3.0, 2)
    yy = ((np.arange(lh, dtype=np.float32) + 0.5) * mm[1] - center[1])[:, None]
    xx = ((np.arange(lw, dtype=np.float32) + 0.5) * mm[0] - center[0])[None, :]
    r = np.sqrt(xx * xx + yy * yy)
    beam = np.clip((_BEAM_RADIUS_MM - r) / 0.6 + 0.5, 0.0, 1.0)   # 0.6 mm penumbra
    phi = rng.uniform(0, 2 * np.pi)   # anode-cathode axis of the tube head
    heel = 1.0 + 0.08 * (xx * np.cos(phi) + yy * np.sin(phi)) / _BEAM_RADIUS_MM
    falloff = 1.0 - 0.06 * (r / _BEAM_RADIUS_MM) ** 2   # inverse square, obliquity
    return np.clip(beam * heel * falloff, 0.0, None).astype(np.float32)


# --- sensor defects (output resolution) -------------------------------------

def _cut_corners(frame, c):
    """Zero the chamfered corners of the active area: no pixels exist there."""
    h, w = frame.shape
    c = min(c, h, w)
    tri = np.tri(c, c, -1, dtype=bool)[::-1]   # True above the anti-diagonal
    frame[:c, :c][tri] = 0
    frame[:c, w - c:][tri[:, ::-1]] = 0
    frame[h - c:, :c][tri[::-1]] = 0
    frame[h - c:, w - c:][tri[::-1, ::-1]] = 0


def _add_dead_pixels(frame, width, height, count, binned, full, rng):
    """Stick ``count`` sensor pixels at 0 or full scale.

    Positions are drawn on the unbinned grid. When the sensor bins, a dead
    pixel is one of four in its block, so the block mean moves a quarter of
    the way towards the stuck value.
    """
    flat = rng.choice(width * height, size=count, replace=False)
    stuck = np.where(rng.random(count) < 0.5, 0.0, full)
    rows, cols = flat // width, flat % width
    if not binned:
        frame[rows, cols] = stuck.astype(np.uint16)
        return
    rows, cols = rows // 2, cols // 2
    keep = (rows < frame.shape[0]) & (cols < frame.shape[1])
    rows, cols, stuck = rows[keep], cols[keep], stuck[keep]
    frame[rows, cols] = np.rint(0.75 * frame[rows, cols] + 0.25 * stuck).astype(np.uint16)
