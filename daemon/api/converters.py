"""URL converters for ids that must fit where they are looked up.

Flask's ``int`` converter takes any run of digits (Unicode ones too) and
makes a Python int of any size; the outbox keeps its entries in SQLite,
whose INTEGER is 64 bits, so an id of 2**63 raised OverflowError in the
query and the client got a 500. `RowId` takes only what can name a row:
ASCII digits, 1 to 2**63 - 1. Anything else matches no route, which is the
404 an unknown id gets anyway.
"""
from __future__ import annotations

from werkzeug.routing import IntegerConverter

# SQLite's largest INTEGER, and so its largest rowid.
MAX_ROW_ID = 2**63 - 1


class RowId(IntegerConverter):
    """``<row_id:name>``: a positive 64-bit row id, else 404."""

    regex = r"[0-9]{1,19}"

    def __init__(self, map, *args, **kwargs) -> None:
        super().__init__(map, min=1, max=MAX_ROW_ID)


def install(app) -> None:
    """Make ``row_id`` known to the app's routes (before the blueprints are registered)."""
    app.url_map.converters["row_id"] = RowId
