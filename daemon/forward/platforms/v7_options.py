"""V7 Darwin: the target's options, and the dataset folder they put an image in.

``parse_options`` checks a v7 target's options and fills in the defaults
(a ValueError names the offending key); ``item_path`` fills the ``path``
template from a delivery's context. Separate from the adapter (``v7``)
because this is the target's configuration and what it asks of a context,
all refused before any request goes out to Darwin.
"""
from __future__ import annotations

import os
import re
import string
from pathlib import Path

from .base import PermanentError

DEFAULT_URL = "https://darwin.v7labs.com/api/v2"
DEFAULT_PATH = "/sensord/{patientId}"

_COMMON = {"url", "team_slug", "api_key", "dataset_slug", "mode", "path", "timeout"}
_EXTERNAL = {"storage_name", "storage_folder", "storage_prefix", "readonly"}


def _text(options: dict, key: str, default: str | None = None) -> str:
    value = options.get(key, default)
    if value is None:
        raise ValueError(f"v7: option {key!r} is required")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"v7: option {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _path_fields(template: str) -> list[str]:
    """The context keys a ``path`` template uses; ValueError (naming ``path``) if it is not one."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"v7: option 'path' is not a valid template ({err}): {template!r}") from None
    fields = []
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(f"v7: option 'path' may only use plain {{contextKey}} fields, got {{{field}}}"
                             f" in {template!r}")
        fields.append(field)
    return fields


def parse_options(options: dict) -> dict:
    """Check the target's options and fill in defaults; ValueError names the offending key."""
    mode = _text(options, "mode")
    if mode not in ("external", "direct"):
        raise ValueError(f"v7: option 'mode' must be 'external' or 'direct', got {mode!r}")
    allowed = _COMMON | (_EXTERNAL if mode == "external" else set())
    for key in options:
        if key not in allowed:
            where = " (external mode only)" if key in _EXTERNAL else ""
            raise ValueError(f"v7: unknown option {key!r}{where}; known: {', '.join(sorted(allowed))}")
    url = _text(options, "url", DEFAULT_URL).rstrip("/")
    if not re.match(r"https?://[^/\s]+", url):
        raise ValueError(f"v7: option 'url' must be an http(s) URL, got {url!r}")
    timeout = options.get("timeout", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise ValueError(f"v7: option 'timeout' must be a number of seconds in (0, 3600], got {timeout!r}")
    path = _text(options, "path", DEFAULT_PATH)
    opts = {"url": url, "mode": mode, "timeout": float(timeout), "path": path,
            "path_fields": _path_fields(path)}
    for key in ("team_slug", "api_key", "dataset_slug"):
        opts[key] = slug = _text(options, key)
        if key != "api_key" and "/" in slug:
            raise ValueError(f"v7: option {key!r} must be a slug without '/', got {slug!r}")
    if mode == "external":
        opts["storage_name"] = _text(options, "storage_name")
        folder = _text(options, "storage_folder")
        if not os.path.isabs(folder):
            raise ValueError(f"v7: option 'storage_folder' must be an absolute path, got {folder!r}")
        opts["storage_folder"] = Path(folder)
        prefix = options.get("storage_prefix", "sensord")
        parts = prefix.strip("/").split("/") if isinstance(prefix, str) and prefix.strip("/") else []
        if not isinstance(prefix, str) or "\\" in prefix or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"v7: option 'storage_prefix' must be a relative key prefix like 'sensord/xrays', "
                             f"got {prefix!r}")
        opts["storage_prefix"] = prefix.strip("/")
        readonly = options.get("readonly", False)
        if not isinstance(readonly, bool):
            raise ValueError(f"v7: option 'readonly' must be true or false, got {readonly!r}")
        opts["readonly"] = readonly
    return opts



def item_path(template: str, fields: list[str], context: dict) -> str:
    """The dataset folder for an image: ``template`` filled from ``context``.

    A value's own slashes become ``_`` (one patient, one folder); the result
    starts with ``/`` and has no empty segments.
    """
    values = {}
    for field in fields:
        value = context.get(field)
        if value is None or not str(value).strip():
            raise PermanentError(f"v7: the context has no {field!r}, which the 'path' option needs")
        text = re.sub(r"[/\\]", "_", str(value).strip())
        values[field] = "_" if text in (".", "..") else text
    segments = [s for s in template.format(**values).split("/") if s]
    return "/" + "/".join(segments)
