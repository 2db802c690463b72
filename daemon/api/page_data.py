"""JSON carried inside an HTML page, for the page's own script to read.

The status page and the image view are opened from URLs with credentials
in them, where Chromium refuses ``fetch()`` of relative URLs; so what they
show first comes with the page, as a ``<script type="application/json">``
data block. A browser never runs such a block (and the CSP forbids inline
script anyway); the script reads it with ``JSON.parse(textContent)``.

Its values come from clients (client names, contexts, device names), so the
JSON is written with ``<``, ``>`` and ``&`` as ``\\u`` escapes: no
``</script>`` or ``<!--`` can end the block or change how the HTML parser
reads it, and JSON.parse gives the characters back unchanged.
"""
from __future__ import annotations

import json

from flask import Response

_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}


def json_for_html(data) -> str:
    """``data`` as JSON that is safe as the text of a script data block
    (ASCII only, so U+2028 and U+2029 are escaped too)."""
    return json.dumps(data, separators=(",", ":")).translate(_ESCAPES)


def placeholder(element_id: str) -> str:
    """The empty data block a page file holds where its data goes."""
    return f'<script type="application/json" id="{element_id}">null</script>'


def fill(html: str, element_id: str, data) -> str:
    """``html`` with its placeholder for ``element_id`` holding ``data``."""
    empty = placeholder(element_id)
    if html.count(empty) != 1:
        raise RuntimeError(f"the page has no single data block {element_id!r}")
    return html.replace(empty, empty.replace(">null<", f">{json_for_html(data)}<"))


def page(html: str) -> Response:
    """An HTML answer that holds live data: not stored by the browser or a proxy."""
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response
