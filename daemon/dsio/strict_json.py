"""The one reader of JSON that arrives in a request: strict where ``json.loads`` is lax.

Python's json module takes more than JSON, and more than any client of ours
sends. Each of these is refused here with a `JsonRefused` (a ValueError)
whose message says what was wrong, so the API answers 400 instead of
storing it or failing later with a 500:

- nesting deeper than `MAX_DEPTH`: the C scanner recurses once per level
  and a few thousand ``[`` raise RecursionError; a real ImageInfo nests
  four levels (imageInfo, acquisitionInfo, context, a client's own object);
- an integer of more than `MAX_INT_DIGITS` digits: converting thousands of
  digits is slow (and Python refuses past 4300), and numbers that large
  overflow wherever they meet numpy, SQLite or a .NET client;
- a non-integer number longer than `MAX_NUMBER_CHARS` characters, or one
  out of a double's range (``1e400`` would read as infinity);
- ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON at all;
- an object that names a key twice, where json.loads keeps the last one
  silently. Our readers match keys without regard to case (Newtonsoft
  writes PascalCase), so "lutInfo" and "LutInfo" in one object count as
  the same key too: otherwise which one wins is an accident.

The bytes are decoded as UTF-8 (a BOM is allowed: .NET writes one) before
anything else; the size of the input is bounded by the caller (the API
checks it against ``images.max_info_kb`` before the body is read whole).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

# Four levels is what a real ImageInfo uses; eight times that leaves a
# client's own context plenty of room and still bounds the scanner's recursion.
MAX_DEPTH = 32
# Every 64-bit integer, signed or unsigned, has at most 20 digits.
MAX_INT_DIGITS = 20
# A double written to round-trip needs about 24 characters ("-1.2345678901234567E-308");
# .NET's decimal written with all 28 places after the point needs about 31.
MAX_NUMBER_CHARS = 40

# A JSON string literal (escapes included), so brackets inside strings are not counted.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


class JsonRefused(ValueError):
    """The text is not JSON we accept; the message says what and where."""


def _depth_within(text: str, what: str) -> None:
    # Count brackets outside strings before the scanner recurses into them.
    # An unterminated string leaves its brackets counted: the text is not
    # JSON anyway, and counting more only refuses sooner.
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub('""', text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise JsonRefused(f"{what} nests deeper than {MAX_DEPTH} levels")
        else:
            depth -= 1


def _reader(what: str) -> json.JSONDecoder:
    def integer(literal: str) -> int:
        digits = len(literal.lstrip("-"))
        if digits > MAX_INT_DIGITS:
            raise JsonRefused(f"{what} has an integer of {digits} digits "
                              f"(at most {MAX_INT_DIGITS}): {literal[:24]}...")
        return int(literal)

    def number(literal: str) -> float:
        if len(literal) > MAX_NUMBER_CHARS:
            raise JsonRefused(f"{what} has a number written in {len(literal)} characters "
                              f"(at most {MAX_NUMBER_CHARS}): {literal[:24]}...")
        value = float(literal)
        if not math.isfinite(value):
            raise JsonRefused(f"{what} has a number out of range: {literal}")
        return value

    def constant(name: str) -> Any:
        raise JsonRefused(f"{what} has {name}, which is not JSON (numbers must be finite)")

    def obj(pairs: list[tuple[str, Any]]) -> dict:
        out: dict[str, Any] = {}
        seen: dict[str, str] = {}
        for key, value in pairs:
            folded = key.lower()
            if folded in seen:
                if seen[folded] == key:
                    raise JsonRefused(f"{what} has the key {key!r} twice in one object")
                raise JsonRefused(f"{what} has the keys {seen[folded]!r} and {key!r} in one object: "
                                  "keys match without regard to case, so they name the same field")
            seen[folded] = key
            out[key] = value
        return out

    return json.JSONDecoder(parse_int=integer, parse_float=number, parse_constant=constant,
                            object_pairs_hook=obj)


def loads(data: bytes | str, *, what: str = "the body") -> Any:
    """Parse ``data`` as JSON under the rules above; JsonRefused says why not.

    ``what`` names the input in messages ("the body", "imageInfo").
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise JsonRefused(f"{what} is not UTF-8 text: {err}") from None
    _depth_within(data, what)
    try:
        return _reader(what).decode(data)
    except json.JSONDecodeError as err:
        raise JsonRefused(f"{what} is not valid JSON: {err}") from None
    except RecursionError:      # a stack smaller than the bound assumes; refuse all the same
        raise JsonRefused(f"{what} nests too deeply") from None
