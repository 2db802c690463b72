"""Request bodies as JSON, whatever their declared type.

.NET's StringContent labels JSON text/plain unless told otherwise, so the
body is parsed as JSON regardless of Content-Type.
"""
from __future__ import annotations

import json

from flask import request

from .errors import ApiError


def json_body(*, optional: bool = False):
    raw = request.get_data(cache=False)
    if not raw.strip():
        if optional:
            return None
        raise ApiError(400, "a JSON body is required")
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, f"body is not valid JSON: {err}") from None
