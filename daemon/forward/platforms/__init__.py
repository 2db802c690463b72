"""Platform adapters that forward images to central platforms, chosen by kind.

``open_adapter(kind, name=..., options=..., http=...)`` imports
``daemon.platforms.<module>`` for the kind and returns its ``ADAPTER_CLASS``
instance. An unknown kind is a ValueError that names it.
"""
from __future__ import annotations

import importlib

from .base import Adapter, AwaitingConfirmation, Delivery, PermanentError, RetryableError

KINDS = {
    "eyened": "eyened",
    "v7": "v7",
    "datamint": "datamint",
    "dicomweb": "dicomweb",
    "dimse": "dimse",
}


def open_adapter(kind: str, *, name: str, options: dict, http=None, **station) -> Adapter:
    """``station``: keyword arguments for the adapter beyond its options (the DICOM
    station's ``ae_title`` and ``timeout`` for kind "dimse")."""
    if kind not in KINDS:
        raise ValueError(f"unknown platform kind {kind!r} for target {name!r} (known: {', '.join(KINDS)})")
    module = importlib.import_module(f".{KINDS[kind]}", __name__)
    return module.ADAPTER_CLASS(name=name, options=options, http=http, **station)
