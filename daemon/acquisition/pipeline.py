"""Exposure pipeline: a verified driver frame -> everything stored and reported.

Pure computation: no disk, no HTTP, no session state. The caller writes the
bytes and fires the events.
"""

from __future__ import annotations

import math
import numbers
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from sensord import filters
from sensord.filters.exposure import exposure_info
from sensord.filters.pixel_hash import ALGORITHMS as HASH_ALGS
from sensord.filters.pixel_hash import pixel_hash
from sensord.filters.rotation import DEGREES
from sensord.filters.thumbnail import jpeg_preview

STAGES = ("binning", "rotation", "exposure", "lut", "hash", "preview", "png_encode")
JPEG_QUALITY = 85

# The PNG encode (20-40 ms for 2400x1708 with ISA-L; 100-170 ms with libpng
# before) is the largest stage and releases the GIL, so it runs on these
# workers while the calling thread rates the exposure, hashes and makes the
# preview. Two workers, one per core, so that two devices
# finishing together do not queue.
# Threads start on first use and are joined at interpreter exit.
_ENCODER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pipeline-png")

# Most memory `process` holds, in bytes per pixel of the frame: 8.1 measured
# at the peak (peak RSS, 4800x3416 frame rotated and LUT-mapped: the rotated
# and mapped copies, the PNG encoder's buffers) plus the frame itself.
FOOTPRINT_PER_PIXEL = 10


def footprint(frame) -> int:
    """Bytes to count against the pixel budget while ``frame`` is processed."""
    return FOOTPRINT_PER_PIXEL * int(frame.pixels.size)


@dataclass(frozen=True)
class Processed:
    """The result of `process` for one exposure.

    Attributes
    ----------
    pixels : (height, width) ndarray of uint16
        The final image, read-only.
    png : bytes
        16-bit grayscale PNG of `pixels` (what ``imageUrl`` serves).
    preview : bytes
        JPEG thumbnail.
    width, height : int
    binning : {"Unbinned", "Binned2x2"}
        The binning really done, by the sensor or here.
    lut_info : dict or None
        LutInfo with the spec's JSON names when a LUT was applied.
    pixel_hash : dict
        HashInfo, ``{"alg": "MD5" | "SHA256", "hash": hex digest}``.
    exposure_info : dict
        ExposureInfo (see `daemon.exposure.exposure_info`).
    timings : dict
        Stage name -> seconds, in pipeline order (`STAGES`); a skipped
        stage has its (tiny) cost of deciding so. The PNG encode overlaps
        hash and preview, so the sum exceeds the wall time.
    """

    pixels: np.ndarray
    png: bytes
    preview: bytes
    width: int
    height: int
    binning: str
    lut_info: dict | None
    pixel_hash: dict
    exposure_info: dict
    timings: dict


def process(frame, sensor, *, rotation: int = 0, binning: bool = False, apply_lut: bool = True,
            hash_alg: str = "MD5", gamma: float = 2.3, png_compression: int = 1,
            preview_max: int = 256) -> Processed:
    """Bin, rotate, rate, map, hash, thumbnail and encode one exposure.

    Parameters
    ----------
    frame : drivers.base.FrameEvent
        ``pixels`` (2-D uint16, sensor orientation) and ``binned`` (the
        sensor already binned 2x2).
    sensor : drivers.base.Sensor
        Supplies ``bits`` and ``supports_binning``.
    rotation : {0, 90, 180, 270}, optional
        Clockwise, as AcquisitionInfo.rotation.
    binning : bool, optional
        Binned2x2 requested. Done here only if the sensor supports binning
        and did not already bin the frame.
    apply_lut : bool, optional
        Map through a LUT chosen from the image's histogram
        (`filters.lut_from_histogram`, total grays ``2**sensor.bits``).
    hash_alg : {"MD5", "SHA256"}, optional
    gamma : float, optional
        Gamma of the LUT, finite and > 0.
    png_compression : int, optional
        zlib level 0 to 9 (see `filters.png.encode_gray16`).
    preview_max : int, optional
        Longest side of the preview, >= 1; smaller images are not enlarged.

    Returns
    -------
    Processed

    Raises
    ------
    ValueError
        For an argument outside the values above, before any work is done.

    Notes
    -----
    Stages, in order: binning, rotation, exposure quality (on the raw,
    unmapped signal), LUT, pixel hash, preview, PNG encode.

    The pixel hash is `filters.pixel_hash.pixel_hash` of ``pixels``: MD5
    or SHA256 of their row-major little-endian uint16 bytes, what a client
    hashes after decoding the PNG at ``imageUrl``.

    The preview is `filters.thumbnail.jpeg_preview` of ``pixels`` in a
    `preview_max` square box (so `preview_max` on the longest side),
    windowed with the LUT when one was applied.

    Once the pixels are final the PNG encode starts on a worker thread
    while this one rates the exposure (still on the raw grays), hashes and
    makes the preview; hashlib and the encoder (numpy, ISA-L) release the
    GIL (``python -m bench pipeline`` measures what that saves).
    """
    degrees = _check_args(rotation, hash_alg, gamma, png_compression, preview_max)
    bits = int(sensor.bits)
    timings = {}
    clock = time.perf_counter

    t = clock()
    raw = frame.pixels
    if frame.binned:
        binned = True
    elif binning and sensor.supports_binning:
        raw, binned = filters.bin2x2(raw), True
    else:
        binned = False
    timings["binning"] = clock() - t

    t = clock()
    if degrees:
        raw = filters.rotate(raw, degrees=degrees)
    timings["rotation"] = clock() - t

    t = clock()
    lut = None
    pixels = raw
    if apply_lut:
        lut = filters.lut_from_histogram(raw, gamma=gamma, total_grays=2**bits)
        pixels = filters.lut_map(raw, lut=lut)
    # Own the final array (no stage copied it when nothing was done), so
    # nobody can change it while it is hashed and encoded below.
    if np.may_share_memory(pixels, frame.pixels):
        pixels = pixels.copy()
    pixels = np.ascontiguousarray(pixels, dtype=np.uint16)
    pixels.setflags(write=False)
    timings["lut"] = clock() - t

    encoding = _ENCODER.submit(_timed, filters.encode_gray16, pixels, compression=png_compression)

    # Measured on `raw` as its stage order says, but run while the PNG
    # encodes: nothing downstream needs it, so it stays off the critical path.
    t = clock()
    exposure = exposure_info(raw, bits=bits)
    timings["exposure"] = clock() - t

    t = clock()
    hash_info = pixel_hash(pixels, alg=hash_alg)
    timings["hash"] = clock() - t

    t = clock()
    preview = jpeg_preview(pixels, lut=lut, box=(preview_max, preview_max), quality=JPEG_QUALITY)
    timings["preview"] = clock() - t

    png, timings["png_encode"] = encoding.result()
    height, width = pixels.shape
    return Processed(
        pixels=pixels, png=png, preview=preview, width=width, height=height,
        binning="Binned2x2" if binned else "Unbinned",
        lut_info=lut.to_info() if lut is not None else None,
        pixel_hash=hash_info,
        exposure_info=exposure, timings={name: timings[name] for name in STAGES},
    )


def _timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), seconds)``, timed in the worker thread."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def _check_args(rotation, hash_alg, gamma, png_compression, preview_max) -> int:
    """Validate the options up front, so a bad one costs no work; return the rotation."""
    if isinstance(rotation, bool) or not isinstance(rotation, numbers.Real) or rotation not in DEGREES:
        raise ValueError(f"rotation must be one of 0, 90, 180, 270 (clockwise), got {rotation!r}")
    if not isinstance(hash_alg, str) or hash_alg not in HASH_ALGS:
        raise ValueError(f"hash_alg must be one of {', '.join(HASH_ALGS)}, got {hash_alg!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) \
            or not math.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    if not _is_int(png_compression) or not 0 <= png_compression <= 9:
        raise ValueError(f"png_compression must be an integer from 0 to 9, got {png_compression!r}")
    if not _is_int(preview_max) or preview_max < 1:
        raise ValueError(f"preview_max must be an integer >= 1, got {preview_max!r}")
    return DEGREES[DEGREES.index(rotation)]     # as an int, whatever Real it was given as


def _is_int(value) -> bool:
    # bool is an int to Python, never to a client.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
