"""ImageInfo as clients send it, made canonical.

Clients differ: the vendor's .NET SDK serializes with Newtonsoft defaults
(PascalCase names, enums possibly as numbers, explicit nulls), browsers send
camelCase, the vendor's own examples write "Binned2X2". We accept all of
those, keep keys we do not know untouched, and always answer in the spec's
camelCase with the spec's enum spellings.
"""
from __future__ import annotations

import math
from typing import Any

from sensord.filters.lut import Lut

# Known names of the Modality API's ImageInfo (the Filters API uses a subset).
_IMAGE_KEYS = ("id", "createdOn", "width", "height", "bitsPerPixel", "bytesPerPixel",
               "pixelSizeX", "pixelSizeY", "previewUrl", "imageUrl", "pixelHash",
               "deviceInfo", "sensorInfo", "acquisitionInfo", "lutInfo", "exposureInfo")
_ACQ_KEYS = ("enable", "rotation", "binning", "applyLut", "context")
_LUT_FLOATS = ("gamma", "slope", "offset")
_LUT_INTS = ("totalGrays", "minimumGray", "maximumGray")
BINNINGS = ("Unbinned", "Binned2x2")


def _canonical_keys(obj: dict, known: tuple[str, ...]) -> dict:
    by_lower = {k.lower(): k for k in known}
    return {by_lower.get(k.lower(), k) if isinstance(k, str) else k: v for k, v in obj.items()}


def parse_binning(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{where} must be one of {', '.join(BINNINGS)}")
    if isinstance(value, int) and 0 <= value < len(BINNINGS):   # .NET enum as number
        return BINNINGS[value]
    if isinstance(value, str):
        for name in BINNINGS:
            if value.lower() == name.lower():
                return name
    raise ValueError(f"{where} must be one of {', '.join(BINNINGS)}, got {value!r}")


def _number(value: Any, where: str, *, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    if integer:
        if value != int(value):
            raise ValueError(f"{where} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def parse_lut_info(raw: Any, where: str = "imageInfo.lutInfo") -> dict | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object")
    lut = _canonical_keys(raw, _LUT_FLOATS + _LUT_INTS)
    for key in _LUT_FLOATS + _LUT_INTS:
        if lut.get(key) is None:
            raise ValueError(f"{where}.{key} is required")
        lut[key] = _number(lut[key], f"{where}.{key}", integer=key in _LUT_INTS)
    return lut


def parse_image_info(raw: Any) -> dict:
    """Validate and canonicalize an ImageInfo object; ValueError says what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("imageInfo must be a JSON object")
    info = _canonical_keys(raw, _IMAGE_KEYS)
    acq = info.get("acquisitionInfo")
    if acq is not None:
        if not isinstance(acq, dict):
            raise ValueError("imageInfo.acquisitionInfo must be an object")
        acq = _canonical_keys(acq, _ACQ_KEYS)
        if "binning" in acq:
            acq["binning"] = parse_binning(acq["binning"], "imageInfo.acquisitionInfo.binning")
        info["acquisitionInfo"] = acq
    if "lutInfo" in info:
        info["lutInfo"] = parse_lut_info(info["lutInfo"])
        lut_from_info(info)   # an unusable map is refused now, not at the first filter
    return info


def lut_from_info(info: dict) -> Lut | None:
    """The Lut an image (its ImageInfo) was mapped with; None when it was not mapped.

    The one reading of lutInfo: the Filters API, the forwarder, the DICOM
    builder and the V7 thumbnail all call this, so they agree on what "no
    map" is. An absent, null or empty lutInfo means none, and so does an
    all-zero one, which some clients send for an image without a map.
    Anything else must describe a usable map, or ValueError says why.
    """
    lut = info.get("lutInfo")
    if not lut:
        return None
    if isinstance(lut, dict) and all(lut.get(k) == 0 for k in _LUT_FLOATS + _LUT_INTS):
        return None
    try:
        return Lut.from_info(lut)
    except ValueError as err:
        raise ValueError(f"imageInfo.lutInfo cannot describe a map: {err}") from err
