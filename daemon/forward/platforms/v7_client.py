"""V7 Darwin: the HTTP client, its errors, and the item and dataset lookup.

``DarwinClient`` sends our API key with every call to the team's items API
and maps each answer to the outbox's errors (``base.check_response``; an
answer that is not JSON is retryable); ``registration_outcome`` reads a
register_* answer for our one item. The lookup is darwin-py's listing: the
dataset's numeric id from ``GET /api/datasets`` (asked once), then
``GET …/items?dataset_ids[]=…&item_names[]=…`` page by page;
``listed_complete`` is the one test of a delivered item. Separate from the
adapter (``v7``) and the direct upload (``v7_upload``), which both use
it, because this is how Darwin is spoken to, whatever a delivery does.
"""
from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

from .base import PermanentError, RetryableError, check_response, transport

if TYPE_CHECKING:
    import requests

ALREADY_EXISTS = "ALREADY_EXISTS"
SLOT = "0"                      # single-image items have one slot; V7's docs name it "0"
UPLOADING, FAILED = "uploading", "error"      # item statuses: not complete; V7 failed it
MAX_PAGES = 100


def registration_outcome(body, *, name: str, path: str, what: str) -> dict | None:
    """Read a register_* answer for our one item.

    Returns the registered item, None when it was refused only because it is
    already there, and raises PermanentError for any other refusal (every
    blocked item and its slots' reasons named) or an answer without it.
    """
    if not isinstance(body, dict) or not isinstance(body.get("items", []), list) \
            or not isinstance(body.get("blocked_items", []), list):
        raise PermanentError(f"{what}: unexpected answer {str(body)[:200]}")
    items, blocked = body.get("items", []), body.get("blocked_items", [])
    if blocked:
        described, only_exists = [], True
        for entry in blocked:
            entry = entry if isinstance(entry, dict) else {}
            slots = [s for s in entry.get("slots") or [] if isinstance(s, dict)]
            reasons = [(s.get("slot_name", "?"), s.get("reason") or "no reason") for s in slots] \
                or [("-", entry.get("reason") or "no reason")]
            mine = entry.get("name") == name and (entry.get("path") or "/") == path
            only_exists &= mine and all(str(r).upper() == ALREADY_EXISTS for _, r in reasons)
            described.append(f"{entry.get('name')!r} at {entry.get('path')!r}: "
                             + ", ".join(f"slot {s} {r}" for s, r in reasons))
        if only_exists:
            return None
        raise PermanentError(f"{what}: {len(blocked)} item(s) blocked: " + "; ".join(described))
    for item in items:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    raise PermanentError(f"{what}: the answer lists neither {name!r} nor a blocked item: {str(body)[:200]}")


class DarwinClient:
    """Calls to one team's Darwin API with a target's parsed options (``v7_options``)."""

    def __init__(self, opts: dict, http: requests.Session):
        self.opts = opts
        self.http = http
        self._dataset_id: Any = None        # the dataset's numeric id, for the item listing
        self._lock = threading.Lock()

    def api(self, method: str, endpoint: str, what: str, **kwargs):
        url = f"{self.opts['url']}/teams/{self.opts['team_slug']}/items/{endpoint}".rstrip("/")
        return self.call(method, url, what, **kwargs)

    def call(self, method: str, url: str, what: str, **kwargs):
        headers = {"Authorization": f"ApiKey {self.opts['api_key']}", "Accept": "application/json"}
        response = transport(lambda: self.http.request(method, url, headers=headers,
                                                       timeout=self.opts["timeout"], **kwargs), what)
        check_response(response, what)
        try:
            return response.json()
        except ValueError:
            raise RetryableError(f"{what}: HTTP {response.status_code} answer is not JSON: "
                                 f"{response.text[:200]!r}") from None

    def listed_complete(self, name: str, path: str, receipt: dict) -> dict:
        """The receipt once the listing shows the item complete; else the outbox's error."""
        found = self.find(name, path)
        status = found.get("status") if found else None
        if found is None:
            raise RetryableError(f"v7: {name} at {path} is registered but not listed (yet)")
        if status == FAILED:
            raise PermanentError(f"v7: Darwin failed item {found.get('id')} ({name} at {path}): status error")
        if status == UPLOADING:
            raise RetryableError(f"v7: {name} at {path} is still uploading")
        return {**receipt, "item_id": found.get("id"), "status": status}

    def dataset_numeric_id(self) -> Any:
        with self._lock:
            if self._dataset_id is not None:
                return self._dataset_id
        root = re.sub(r"/v2$", "", self.opts["url"])
        what = "v7 list datasets"
        body = self.call("GET", f"{root}/datasets", what)
        for dataset in body if isinstance(body, list) else []:
            if isinstance(dataset, dict) and dataset.get("slug") == self.opts["dataset_slug"]:
                with self._lock:
                    self._dataset_id = dataset.get("id")
                return dataset.get("id")
        raise PermanentError(f"{what}: no dataset {self.opts['dataset_slug']!r} in the team")

    def find(self, name: str, path: str) -> dict | None:
        """The dataset's item ``name`` at ``path`` as the listing shows it, or None."""
        params: dict[str, Any] = {"dataset_ids[]": [self.dataset_numeric_id()], "item_names[]": [name],
                                  "page[size]": 500}
        what = f"v7 list items {name}"
        for _ in range(MAX_PAGES):
            body = self.api("GET", "", what, params=params)
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise RetryableError(f"{what}: unexpected answer {str(body)[:200]}")
            for found in body["items"]:
                if isinstance(found, dict) and found.get("name") == name and (found.get("path") or "/") == path:
                    return found
            following = (body.get("page") or {}).get("next")
            if not following:
                return None
            params["page[from]"] = following
        raise RetryableError(f"{what}: more than {MAX_PAGES} pages")

    def delete(self, found: dict) -> None:
        what = f"v7 delete item {found.get('id')}"
        self.api("DELETE", "", what, json={"filters": {"item_ids": [found.get("id")],
                                                        "dataset_ids": [self.dataset_numeric_id()]}})
