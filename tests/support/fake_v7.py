"""A fake V7 Darwin (API v2 item registration and uploads) for the adapter's tests.

Serve ``FakeV7(...).app`` with ``tests.support.loopback.serving``; the adapter's
``url`` is ``{base}/api/v2``. What it keeps to, from V7's public docs and
client (darwin-py):

- ``Authorization: ApiKey <key>`` on every API call, else 401; an unknown
  team, dataset or storage is 404.
- ``register_existing`` and ``register_upload`` validate the payload as a
  whole (400 naming the field); then each item either registers or is
  *blocked* (answer 200, ``blocked_items`` with a ``reason`` per slot).
  Names are unique per dataset folder: a second one is ``ALREADY_EXISTS``.
- ``register_existing`` needs the storage key to exist in the bucket (a
  folder here); read-only storage also needs ``storage_thumbnail_key`` (an
  existing object), ``width`` and ``height``.
- ``register_upload`` answers an ``upload_id`` per slot; ``GET
  …/uploads/{id}/sign`` answers an ``upload_url`` on this server, signed by a
  token in its query (a PUT without it is 403, like S3); ``confirm`` before
  the bytes arrived is 400. A second confirm of a finished upload answers
  200 again (assumed: V7 does not document it). A confirmed item is
  ``processing``; the next listing shows it ``new`` (processing is quick).
- The item listing as darwin-py calls it: ``GET /api/datasets`` (no team)
  lists the datasets with their numeric ``id``; ``GET …/items`` filters by
  ``dataset_ids[]`` and ``item_names[]``, pages by ``page[size]`` and
  ``page[from]`` (answer ``page.next``); an ``uploading`` item shows its
  pending ``uploads`` (not under ``slots``). ``DELETE …/items`` with JSON
  ``filters`` {``item_ids``, ``dataset_ids``} deletes items and their uploads.

Fault knobs act on the next requests whose path contains ``on``:
``fail(n, status)``, ``throttle(n, retry_after)``, ``slow(n, seconds)``
(sleep, then answer) and ``lose(n, seconds)`` (do the work, then sleep
before answering, so the client times out after the change was made).
``block_next(reason)`` blocks the next registered item with that reason.
"""
from __future__ import annotations

import itertools
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, jsonify, request

API = "/api/v2/teams/<team>/items"


@dataclass
class Fault:
    kind: str              # fail | slow | lose
    count: int
    on: str
    status: int = 500
    seconds: float = 0.0
    retry_after: str | None = None


@dataclass
class Storage:
    folder: Path
    readonly: bool = False


class FakeV7:
    def __init__(self, *, api_key="key-1", team="clinic", datasets=("xrays",), storages=None):
        self.api_key, self.team = api_key, team
        self.datasets: dict[str, dict] = {slug: {} for slug in datasets}   # slug -> {(path, name): item}
        self.dataset_ids = {slug: 100 + i for i, slug in enumerate(datasets)}
        self.storages: dict[str, Storage] = dict(storages or {})
        self.uploads: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.faults: list[Fault] = []
        self.blocks: list[str] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.app = self._make_app()

    # -- knobs ------------------------------------------------------------
    def fail(self, n=1, status=500, on=""):
        self.faults.append(Fault("fail", n, on, status=status))

    def throttle(self, n=1, retry_after="5", on=""):
        self.faults.append(Fault("fail", n, on, status=429, retry_after=str(retry_after)))

    def slow(self, n=1, seconds=1.0, on=""):
        self.faults.append(Fault("slow", n, on, seconds=seconds))

    def lose(self, n=1, seconds=1.0, on=""):
        self.faults.append(Fault("lose", n, on, seconds=seconds))

    def block_next(self, reason):
        self.blocks.append(reason)

    # -- inspection -------------------------------------------------------
    def items(self, dataset="xrays") -> list[dict]:
        return list(self.datasets[dataset].values())

    def calls(self, fragment="") -> list[dict]:
        return [r for r in self.requests if fragment in r["path"]]

    # -- the app ----------------------------------------------------------
    def _take_fault(self, kind_filter) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.count > 0 and fault.kind in kind_filter and fault.on in request.path:
                    fault.count -= 1
                    return fault
        return None

    def _make_app(self) -> Flask:
        app = Flask("fake_v7")

        @app.before_request
        def record_and_inject():
            self.requests.append({"method": request.method, "path": request.path,
                                  "authorization": request.headers.get("Authorization"),
                                  "json": request.get_json(silent=True)})
            fault = self._take_fault(("fail", "slow"))
            if fault and fault.kind == "slow":
                time.sleep(fault.seconds)
            elif fault:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return jsonify(errors={"message": f"injected HTTP {fault.status}"}), fault.status, headers
            if request.path.startswith("/api/"):
                if request.headers.get("Authorization") != f"ApiKey {self.api_key}":
                    return _error(401, "UNAUTHORIZED", "invalid or missing API key")
                if request.view_args and request.view_args.get("team") != self.team:
                    return _error(404, "NOT_FOUND", "team not found")
            return None

        @app.after_request
        def lose_answer(response):
            fault = self._take_fault(("lose",))
            if fault:
                time.sleep(fault.seconds)   # the work is done; the client gives up waiting
            return response

        @app.post(f"{API}/register_existing")
        def register_existing(team):
            body = request.get_json(silent=True)
            dataset, problem = self._dataset_of(body)
            if problem:
                return problem
            storage = self.storages.get(body.get("storage_slug"))
            if storage is None:
                return _error(404, "NOT_FOUND", f"storage {body.get('storage_slug')!r} not found")
            for i, item in enumerate(body["items"]):
                for j, slot in enumerate(item["slots"]):
                    where = f"items[{i}].slots[{j}]"
                    for field in ("storage_key", "file_name"):
                        if not isinstance(slot.get(field), str) or not slot[field]:
                            return _error(400, "VALIDATION", f"{where}.{field} is required")
                    if not (storage.folder / slot["storage_key"]).is_file():
                        return _error(400, "VALIDATION", f"{where}.storage_key {slot['storage_key']!r} "
                                                         "is not in the storage")
                    if storage.readonly:
                        for field in ("storage_thumbnail_key", "width", "height"):
                            if not slot.get(field):
                                return _error(400, "VALIDATION", f"{where}.{field} is required for "
                                                                 "read-only storage")
                        if not (storage.folder / slot["storage_thumbnail_key"]).is_file():
                            return _error(400, "VALIDATION", f"{where}.storage_thumbnail_key is not in "
                                                             "the storage")
            return self._register(dataset, body["items"], status="new")

        @app.post(f"{API}/register_upload")
        def register_upload(team):
            body = request.get_json(silent=True)
            dataset, problem = self._dataset_of(body)
            if problem:
                return problem
            for i, item in enumerate(body["items"]):
                for j, slot in enumerate(item["slots"]):
                    for field in ("file_name", "slot_name"):
                        if not isinstance(slot.get(field), str) or not slot[field]:
                            return _error(400, "VALIDATION", f"items[{i}].slots[{j}].{field} is required")
            return self._register(dataset, body["items"], status="uploading")

        @app.get(f"{API}/uploads/<upload_id>/sign")
        def sign(team, upload_id):
            upload = self.uploads.get(upload_id)
            if upload is None:
                return _error(404, "NOT_FOUND", "upload not found")
            token = secrets.token_hex(8)
            upload["tokens"].add(token)
            return jsonify(upload_url=f"{request.host_url}storage/{upload_id}?X-Amz-Signature={token}")

        @app.put("/storage/<upload_id>")
        def put_object(upload_id):
            upload = self.uploads.get(upload_id)
            if upload is None or request.args.get("X-Amz-Signature") not in upload["tokens"]:
                return ("<Error><Code>AccessDenied</Code><Message>signature does not match</Message></Error>",
                        403, {"Content-Type": "application/xml"})
            upload["data"] = request.get_data()
            return "", 200

        @app.post(f"{API}/uploads/<upload_id>/confirm")
        def confirm(team, upload_id):
            upload = self.uploads.get(upload_id)
            if upload is None:
                return _error(404, "NOT_FOUND", "upload not found")
            if upload["data"] is None:
                return _error(400, "UPLOAD_NOT_FOUND", "nothing was uploaded for this upload id")
            item = upload["item"]
            if item["status"] == "uploading":
                item["status"], item["data"] = "processing", upload["data"]
            upload["confirmed"] = True
            return jsonify({})

        @app.get("/api/datasets")
        def list_datasets():
            return jsonify([{"id": self.dataset_ids[slug], "slug": slug, "name": slug} for slug in self.datasets])

        @app.get(API)
        def list_items(team):
            by_id = {v: k for k, v in self.dataset_ids.items()}
            wanted = [by_id.get(int(i)) if i.isdigit() else None for i in request.args.getlist("dataset_ids[]")]
            names = set(request.args.getlist("item_names[]"))
            size = int(request.args.get("page[size]", 500))
            start = int(request.args.get("page[from]", 0))
            with self._lock:
                found = [(slug, item) for slug in wanted if slug for item in self.datasets[slug].values()
                         if not names or item["name"] in names]
                page = found[start:start + size]
                listed = [self._listing(slug, item) for slug, item in page]
                for _, item in page:
                    if item["status"] == "processing":
                        item["status"] = "new"
            following = str(start + size) if start + size < len(found) else None
            return jsonify(items=listed, page={"count": len(found), "next": following, "previous": None})

        @app.delete(API)
        def delete_items(team):
            filters = (request.get_json(silent=True) or {}).get("filters") or {}
            ids, datasets = set(filters.get("item_ids") or []), filters.get("dataset_ids") or []
            if not ids or not datasets:
                return _error(400, "VALIDATION", "filters.item_ids and filters.dataset_ids are required")
            by_id = {v: k for k, v in self.dataset_ids.items()}
            with self._lock:
                for number in datasets:
                    dataset = self.datasets.get(by_id.get(number, ""), {})
                    for key in [k for k, item in dataset.items() if item["id"] in ids]:
                        del dataset[key]
                for upload_id in [u for u, up in self.uploads.items() if up["item"]["id"] in ids]:
                    del self.uploads[upload_id]
            return jsonify({})

        return app

    def _listing(self, slug: str, item: dict) -> dict:
        listed = {"id": item["id"], "name": item["name"], "path": item["path"], "status": item["status"],
                  "dataset_id": self.dataset_ids[slug],
                  "slots": [{k: v for k, v in s.items() if k != "upload_id"} for s in item["slots"]]}
        if item["status"] == "uploading":
            listed["uploads"] = [{"id": s["upload_id"], "slot_name": s["slot_name"], "file_name": s["file_name"]}
                                 for s in item["slots"] if s.get("upload_id") in self.uploads]
        return listed

    def _dataset_of(self, body):
        if not isinstance(body, dict) or not isinstance(body.get("items"), list) or not body["items"]:
            return None, _error(400, "VALIDATION", "items must be a non-empty list")
        for i, item in enumerate(body["items"]):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                return None, _error(400, "VALIDATION", f"items[{i}].name is required")
            if not isinstance(item.get("slots"), list) or not item["slots"]:
                return None, _error(400, "VALIDATION", f"items[{i}].slots must be a non-empty list")
        if body.get("dataset_slug") not in self.datasets:
            return None, _error(404, "NOT_FOUND", f"dataset {body.get('dataset_slug')!r} not found")
        return self.datasets[body["dataset_slug"]], None

    def _register(self, dataset: dict, items: list, *, status: str):
        registered, blocked = [], []
        with self._lock:
            for item in items:
                path = item.get("path") or "/"
                key = (path, item["name"])
                reason = self.blocks.pop(0) if self.blocks else (ALREADY if key in dataset else None)
                if reason:
                    blocked.append({"id": dataset[key]["id"] if key in dataset else None, "name": item["name"],
                                    "path": path, "slots": [{**s, "reason": reason} for s in item["slots"]]})
                    continue
                record = {"id": str(uuid.UUID(int=next(self._ids))), "name": item["name"], "path": path,
                          "status": status, "slots": [dict(s) for s in item["slots"]], "data": None}
                if status == "uploading":
                    for slot in record["slots"]:
                        slot["upload_id"] = upload_id = str(uuid.uuid4())
                        self.uploads[upload_id] = {"item": record, "data": None, "tokens": set(),
                                                   "confirmed": False}
                dataset[key] = record
                registered.append({k: v for k, v in record.items() if k != "data"})
        return jsonify(items=registered, blocked_items=blocked)


ALREADY = "ALREADY_EXISTS"


def _error(status: int, code: str, message: str):
    return jsonify(errors={"code": code, "message": message}), status
