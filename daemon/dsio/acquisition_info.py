"""AcquisitionInfo and AcquisitionSessionInfo bodies, checked and canonical.

As for ImageInfo, keys match without regard to case and enums may come as
names or numbers. A null rotation or binning keeps the current value, as the
spec says for updates.
"""
from __future__ import annotations

from typing import Any

from .imageinfo import parse_binning

ROTATIONS = (0, 90, 180, 270)
DEFAULT_INFO = {"enable": False, "rotation": 0, "binning": "Unbinned", "applyLut": True, "context": {}}


def _keyed(body: Any, known: tuple[str, ...], what: str) -> dict:
    if not isinstance(body, dict):
        raise ValueError(f"{what} must be a JSON object")
    by_lower = {k.lower(): k for k in known}
    return {by_lower.get(str(k).lower(), k): v for k, v in body.items()}


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false, got {value!r}")
    return value


def _context(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object")
    return value


def parse_acquisition_info(body: Any, current: dict | None) -> dict:
    """The AcquisitionInfo that results from applying ``body`` over ``current``."""
    info = dict(current or DEFAULT_INFO)
    given = _keyed(body, tuple(DEFAULT_INFO), "AcquisitionInfo")
    if given.get("enable") is not None:
        info["enable"] = _bool(given["enable"], "enable")
    rotation = given.get("rotation")
    if rotation is not None:
        if isinstance(rotation, bool) or not isinstance(rotation, (int, float)) or rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of 0, 90, 180, 270 (or null), got {rotation!r}")
        info["rotation"] = int(rotation)
    if given.get("binning") is not None:
        info["binning"] = parse_binning(given["binning"], "binning")
    if given.get("applyLut") is not None:
        info["applyLut"] = _bool(given["applyLut"], "applyLut")
    if "context" in given:
        info["context"] = _context(given["context"], "context")
    return info


def asked_binning(body: Any) -> str | None:
    """The binning ``body`` (an AcquisitionInfo) asks for; None when it leaves it out or null."""
    given = _keyed(body, tuple(DEFAULT_INFO), "AcquisitionInfo")
    return parse_binning(given.get("binning"), "binning")


def parse_session_info(body: Any, *, require_device: bool) -> dict:
    """AcquisitionSessionInfo: deviceId, clientName, context (only the keys given)."""
    given = _keyed(body, ("deviceId", "clientName", "context"), "AcquisitionSessionInfo")
    out: dict[str, Any] = {}
    device = given.get("deviceId")
    if device is not None:
        if not isinstance(device, str) or not device:
            raise ValueError("deviceId must be a non-empty string")
        out["deviceId"] = device
    elif require_device:
        raise ValueError("deviceId is required")
    if given.get("clientName") is not None:
        if not isinstance(given["clientName"], str):
            raise ValueError("clientName must be a string")
        out["clientName"] = given["clientName"]
    # A null context keeps the current one, as null does for rotation and
    # binning: the vendor's SDK always sends Context, null when left out.
    if given.get("context") is not None:
        out["context"] = _context(given["context"], "context")
    return out
