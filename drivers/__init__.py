"""Sensor drivers, chosen by URL scheme as pyserial chooses ports.

``open_driver("sim://", emit=...)`` imports ``drivers.<module>`` for the
scheme and returns its ``Driver`` instance. An unknown scheme is a
ValueError that names it.
"""
from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from .base import Driver, Emit

# scheme -> module in this package that defines ``DRIVER_CLASS``
SCHEMES = {
    "sim": "sim",
    "serial": "serial_port",
}


def open_driver(url: str, *, emit: Emit, options: dict | None = None) -> Driver:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(SCHEMES))
        raise ValueError(f"unknown sensor driver scheme {scheme!r} in {url!r} (known: {known})")
    module = importlib.import_module(f".{SCHEMES[scheme]}", __name__)
    return module.DRIVER_CLASS(url, emit=emit, options=options)
