"""Filter request bodies (SelectFilter, SupremeFilter, AEFilter, unmap) checked and canonical.

Keys are matched without regard to case (Newtonsoft writes PascalCase) and
an enum may come as its name or, as Newtonsoft writes enums by default, as
its index. Unknown keys are refused so a misspelt option is never ignored.

Clients of the vendor's beta SDK say more about the image in the body: a
``LutInfo`` in any filter body is the map to use, a ``BinningMode`` in a
Supreme body the binning the image was acquired with, and unmap's body is
the LutInfo itself. `parse_request` reads both generations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sensord.filters.lut import Lut

from .imageinfo import lut_from_info, parse_binning, parse_lut_info

SELECT_MODES = ("smooth", "edgeLow", "edgeHigh", "edgePro")
SUPREME_TASKS = ("general", "endodontic", "periodontic", "restorative", "hygiene")
AE_TASKS = ("general", "endodontic", "periodontic", "restorative")


def _keys(body: Any, allowed: tuple[str, ...], filter_name: str) -> dict:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValueError(f"the {filter_name} filter takes a JSON object")
    by_lower = {k.lower(): k for k in allowed}
    out = {}
    for key, value in body.items():
        canonical = by_lower.get(str(key).lower())
        if canonical is None:
            raise ValueError(f"unknown parameter {key!r} for the {filter_name} filter "
                             f"(known: {', '.join(allowed)})")
        out[canonical] = value
    return out


def _enum(value: Any, choices: tuple[str, ...], where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(choices):
        return choices[value]
    if isinstance(value, str):
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
    if value is None:
        raise ValueError(f"{where} is required (one of {', '.join(choices)})")
    raise ValueError(f"{where} must be one of {', '.join(choices)}, got {value!r}")


def _sharpness(value: Any) -> float:
    if value is None:
        raise ValueError("sharpness is required (0-100)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"sharpness must be a number from 0 to 100, got {value!r}")
    if not 0 <= value <= 100:
        raise ValueError(f"sharpness must be from 0 to 100, got {value}")
    return float(value)


def select(body: Any) -> dict:
    params = _keys(body, ("enhancementMode",), "select")
    return {"mode": _enum(params.get("enhancementMode"), SELECT_MODES, "enhancementMode")}


def supreme(body: Any) -> dict:
    params = _keys(body, ("task", "sharpness"), "supreme")
    return {"task": _enum(params.get("task"), SUPREME_TASKS, "task"),
            "sharpness": _sharpness(params.get("sharpness"))}


def ae(body: Any) -> dict:
    params = _keys(body, ("task", "sharpness"), "ae")
    return {"task": _enum(params.get("task"), AE_TASKS, "task"),
            "sharpness": _sharpness(params.get("sharpness"))}


@dataclass(frozen=True)
class FilterRequest:
    """One filter call as the body asks for it.

    ``options`` are the filter function's keyword arguments. ``lut`` is a
    map the body gave (None: the body gave none, so the image's own map
    applies); ``binning`` the binning the body says the image has (None:
    the image's ImageInfo says).
    """

    options: dict = field(default_factory=dict)
    lut: Lut | None = None
    binning: str | None = None


_OPTIONS = {"select": select, "supreme": supreme, "ae": ae}
_LUT_KEYS = ("gamma", "slope", "offset", "totalgrays", "minimumgray", "maximumgray")


def _body_lut(raw: Any, where: str) -> Lut | None:
    # null, or the all-zero LutInfo a .NET client sends for "no map": none given.
    return lut_from_info({"lutInfo": parse_lut_info(raw, where)})


def parse_request(name: str, body: Any) -> FilterRequest:
    """Read the body of a call to filter ``name`` ("unmap", "select", "supreme", "ae").

    ValueError says what is wrong: an unknown key, a bad value, a LutInfo
    that cannot describe a map.
    """
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValueError(f"the {name} filter takes a JSON object")
    lowered = {str(k).lower(): k for k in body}
    if name == "unmap":
        if not body:
            return FilterRequest()
        if set(lowered) == {"lutinfo"}:
            return FilterRequest(lut=_body_lut(body[lowered["lutinfo"]], "lutInfo"))
        if set(lowered) <= set(_LUT_KEYS):       # the beta SDK posts the LutInfo itself
            return FilterRequest(lut=_body_lut(body, "the unmap body (a LutInfo)"))
        unknown = ", ".join(repr(lowered[k]) for k in sorted(set(lowered) - set(_LUT_KEYS) - {"lutinfo"}))
        raise ValueError(f"unknown parameter {unknown} for the unmap filter "
                         f"(it takes no body, or a LutInfo)")
    rest = {k: v for k, v in body.items() if str(k).lower() not in ("lutinfo", "binningmode")}
    if "binningmode" in lowered and name != "supreme":
        raise ValueError(f"unknown parameter {lowered['binningmode']!r} for the {name} filter")
    lut = _body_lut(body[lowered["lutinfo"]], "lutInfo") if "lutinfo" in lowered else None
    binning = parse_binning(body[lowered["binningmode"]], "binningMode") if "binningmode" in lowered else None
    return FilterRequest(options=_OPTIONS[name](rest), lut=lut, binning=binning)
