"""Headers on every response that tell a browser how little to allow.

The status page (``/`` and ``/assets/``) is the one HTML the daemon serves;
its script and style are files of its own (no inline script, no inline
style), and it fetches, streams and shows images only from the daemon. So
one policy serves every response: nothing but the daemon itself as a source,
no framing (clickjacking the page), no referrer leaking a session or image
id to anywhere, no guessing a content type other than the one sent (a JSON
error echoing a client's text must never run as HTML or script), and no
resource of ours embedded by another origin's page.
"""
from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",                      # frame-ancestors for browsers before CSP 2
    "Cross-Origin-Resource-Policy": "same-origin",  # no <img>/<script> of ours in another origin's page
}


def install(app: Flask) -> None:
    @app.after_request
    def _add_headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response
