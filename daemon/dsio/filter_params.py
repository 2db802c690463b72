"""Filter request bodies (SelectFilter, SupremeFilter, AEFilter) checked and canonical.

Keys are matched without regard to case (Newtonsoft writes PascalCase) and
an enum may come as its name or, as Newtonsoft writes enums by default, as
its index. Unknown keys are refused so a misspelt option is never ignored.
"""
from __future__ import annotations

import math
from typing import Any

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
