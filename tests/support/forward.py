"""Forward targets as the tests configure them."""
from __future__ import annotations


def target(url, **extra):
    return {"name": "dm", "kind": "datamint", "url": url, "api_key": "key-1", "timeout": 2,
            "backoff_base": 0.2, "backoff_max": 0.5, **extra}
