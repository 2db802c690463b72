"""The filter spec: which version of an image is forwarded, named by one short text.

Forward rules (``filter`` of ``[[forward.rules]]``) and ``POST
/api/sensord/v1/forward`` (its ``filter`` field) use the same grammar::

    raw                      the acquired PNG as it is
    unmap                    the linear grays: the image's LUT undone
    select:MODE              the Select filter, MODE as SelectFilter.enhancementMode
    supreme:TASK:SHARPNESS   the Supreme filter, SHARPNESS from 0 to 100
    ae:TASK:SHARPNESS        the AE filter, likewise

`parse` reads it once, checking modes, tasks and sharpness by the Filters
API's own rules (`dsio.filter_params`), so a rule that the API would refuse
is refused at start or reload, not at the first delivery. ``str()`` of the
result is the canonical text the outbox stores: one spelling per filter,
so "select:edgepro" and "select:edgePro" name the same entry and the same
derived image id.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from sensord.daemon.dsio import filter_params

GRAMMAR = "raw, unmap, select:MODE, supreme:TASK:SHARPNESS or ae:TASK:SHARPNESS"
_PARAMETERS = {"raw": (), "unmap": (), "select": ("mode",), "supreme": ("task", "sharpness"),
               "ae": ("task", "sharpness")}


@dataclass(frozen=True)
class FilterSpec:
    """A parsed filter spec; make one with `parse`.

    Attributes
    ----------
    name : {"raw", "unmap", "select", "supreme", "ae"}
    mode : str or None
        The select mode, spelt as the spec spells it ("edgePro").
    task : str or None
        The supreme or ae task ("general").
    sharpness : float or None
        The supreme or ae sharpness, 0 to 100.
    """

    name: str
    mode: str | None = None
    task: str | None = None
    sharpness: float | None = None

    def __post_init__(self):
        # Exactly the parameters of this filter, so that str() always reads back as this spec.
        wanted = _PARAMETERS.get(self.name)
        given = tuple(f for f in ("mode", "task", "sharpness") if getattr(self, f) is not None)
        if wanted is None or given != wanted:
            raise ValueError(f"not a filter spec: {self!r}")

    @property
    def is_raw(self) -> bool:
        return self.name == "raw"

    def kwargs(self) -> dict:
        """Keyword arguments for the filters function of the same name."""
        if self.name == "select":
            return {"mode": self.mode}
        if self.name in ("supreme", "ae"):
            return {"task": self.task, "sharpness": self.sharpness}
        return {}

    def __str__(self) -> str:
        if self.name == "select":
            return f"select:{self.mode}"
        if self.sharpness is not None:      # supreme or ae
            return f"{self.name}:{self.task}:{_number(self.sharpness)}"
        return self.name


def parse(text) -> FilterSpec:
    """Read a filter spec; ValueError names the spec and what is wrong with it.

    Names, modes and tasks are matched without regard to case and spaces
    around the parts are ignored, as the Filters API is liberal in the same
    way; the result is canonical.
    """
    if not isinstance(text, str):
        raise ValueError(f"filter must be a string ({GRAMMAR}), got {text!r}")
    name, *args = (part.strip() for part in text.split(":"))
    name = name.lower()
    if name not in _PARAMETERS or len(_PARAMETERS[name]) != len(args):
        raise ValueError(f"filter {text!r}: expected {GRAMMAR}")
    try:
        if name == "select":
            return FilterSpec(name, mode=filter_params.select({"enhancementMode": args[0]})["mode"])
        if name in ("supreme", "ae"):
            params = getattr(filter_params, name)({"task": args[0], "sharpness": _sharpness(args[1])})
            return FilterSpec(name, task=params["task"], sharpness=params["sharpness"])
    except ValueError as err:
        raise ValueError(f"filter {text!r}: {err}") from None
    return FilterSpec(name)


def _sharpness(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"sharpness must be a number from 0 to 100, got {text!r}") from None


def _number(value: float) -> str:
    # "70", not "70.0", for whole numbers; otherwise the shortest text that reads back the same.
    return str(int(value)) if math.isfinite(value) and value == int(value) else repr(value)
