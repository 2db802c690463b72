"""Checking a target's options: shared by the adapters.

Each adapter declares ``OPTIONS = {key: (checker, default or REQUIRED)}``;
``parse`` refuses unknown and missing keys and bad values with a ValueError
that names the target, the kind and the key.
"""
from __future__ import annotations

REQUIRED = object()


def checker(test, wanted: str):
    """A checker: ValueError("must be <wanted>, got <value>") unless test(value)."""
    def check(value):
        if not test(value):
            raise ValueError(f"must be {wanted}, got {value!r}")
        return value
    return check


text = checker(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
boolean = checker(lambda v: isinstance(v, bool), "true or false")


def parse(kind: str, target: str, options: dict, spec: dict) -> dict:
    for key in options:
        if key not in spec:
            raise ValueError(f"target {target!r}: unknown option {key!r} for {kind} (known: {', '.join(spec)})")
    parsed = {}
    for key, (check, default) in spec.items():
        if key not in options:
            if default is REQUIRED:
                raise ValueError(f"target {target!r}: missing option {key!r} for {kind}")
            parsed[key] = default
            continue
        try:
            parsed[key] = check(options[key])
        except ValueError as err:
            raise ValueError(f"target {target!r}: option {key!r} for {kind} {err}") from None
    return parsed
