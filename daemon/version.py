"""sensord's version as installed (the wheel's metadata), for the status page and /metrics."""
from __future__ import annotations

import importlib.metadata


def _version() -> str:
    try:
        return importlib.metadata.version("sensord")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version()
