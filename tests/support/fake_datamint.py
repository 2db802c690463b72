"""A fake Datamint API: resource upload and the resource query the Datamint client uses.

``POST /resources`` takes the multipart form the client sends and answers 201
``{"id"}``, 400 ``{"message"}`` for a malformed form, or 200 ``{"error"}`` when
told to refuse (``refuse_next``). ``GET /resources`` filters like a database
``ILIKE``: ``filename`` matches any resource whose name *contains* it, so a
client must compare names itself; the answer is
``{"data": [{"resources": [...], "totalCount": n}]}``. A missing ``apikey``
header is 401, an unknown key 403. ``faults`` (see fake_eyened.Faults) injects
failures, delays and lost responses.
"""
from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timezone

from flask import Flask, jsonify, request

from tests.support.fake_eyened import Faults


class FakeDatamint:
    """``resources`` (with their ``bytes``) and the call counters are public for the tests."""

    def __init__(self, *, api_keys=("key-1",)):
        self.api_keys = set(api_keys)
        self.resources: list[dict] = []
        self.upload_calls = 0
        self.lookup_calls = 0
        self.lookups: list[dict] = []
        self.faults = Faults()
        self._refusals: list[str] = []
        self._lock = threading.Lock()
        self.app = self._build()

    def refuse_next(self, error: str) -> None:
        """The next upload answers 200 ``{"error": error}`` and stores nothing."""
        with self._lock:
            self._refusals.append(error)

    def add(self, filename: str, **fields) -> dict:
        """A resource already on the platform (uploaded by someone else)."""
        record = {"id": str(uuid.uuid4()), "filename": filename, "source_filepath": filename,
                  "mimetype": "image/png", "upload_channel": None, "modality": None, "tags": [],
                  "status": "inbox", "published": False, "deleted": False, "metadata": {}, "bytes": b"",
                  "size": 0, "upload_mechanism": "web", "created_at": _now()}
        record.update(fields)
        with self._lock:
            self.resources.append(record)
        return record

    def _build(self) -> Flask:
        app = Flask("fake_datamint")
        self.faults.install(app)
        app.before_request(self._check_key)
        app.add_url_rule("/resources", "upload", self._upload, methods=["POST"])
        app.add_url_rule("/resources", "query", self._query, methods=["GET"])
        return app

    def _check_key(self):
        key = request.headers.get("apikey")
        if not key:
            return jsonify(message="Unauthorized: no apikey header", statusCode=401), 401
        if key not in self.api_keys:
            return jsonify(message="Forbidden: invalid api key", statusCode=403), 403
        return None

    def _upload(self):
        with self._lock:
            self.upload_calls += 1
        file = request.files.get("resource")
        form = request.form
        if file is None or not file.filename:
            return jsonify(message="resource: a file with a filename is required"), 400
        if form.get("source") != "api" or form.get("bypass_inbox") not in ("true", "false"):
            return jsonify(message="source must be 'api' and bypass_inbox 'true' or 'false'"), 400
        try:
            meta = json.loads(form["metadata"]) if "metadata" in form else {}
        except ValueError:
            return jsonify(message="metadata is not JSON"), 400
        data = file.read()
        published = form["bypass_inbox"] == "true"
        with self._lock:
            if self._refusals:
                return jsonify(error=self._refusals.pop(0))
            record = {"id": str(uuid.uuid4()), "filename": file.filename,
                      "source_filepath": form.get("source_filepath"), "mimetype": form.get("mimetype"),
                      "content_type": file.mimetype, "upload_channel": form.get("channel"),
                      "modality": form.get("modality"),
                      "tags": [t for t in form.get("tags", "").split(",") if t],
                      "status": "published" if published else "inbox", "published": published,
                      "deleted": False, "metadata": meta, "bytes": data, "size": len(data),
                      "upload_mechanism": "api", "created_at": _now()}
            self.resources.append(record)
        return jsonify(id=record["id"]), 201

    def _query(self):
        args = request.args
        with self._lock:
            self.lookup_calls += 1
            self.lookups.append(dict(args))
            found = [r for r in self.resources
                     if args.get("filename", "").lower() in r["filename"].lower()
                     and (not args.get("status") or r["status"] == args["status"])
                     and (not args.get("channel_name") or r["upload_channel"] == args["channel_name"])]
        offset, limit = int(args.get("offset", 0)), int(args.get("limit", 5000))
        page = [{k: v for k, v in r.items() if k != "bytes"} for r in found[offset:offset + limit]]
        return jsonify(data=[{"resources": page, "totalCount": len(found)}])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
