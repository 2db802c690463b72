"""Timestamps as the APIs send them: ISO 8601, UTC, milliseconds, 'Z'."""
from __future__ import annotations

from datetime import datetime, timezone


def iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
