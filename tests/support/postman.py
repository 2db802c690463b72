"""Run the vendor's Postman collections with a pinned newman against a test daemon.

The collections live beside the repository in shared/specs/postman and are not
runnable as published (placeholder credentials and ids, an empty upload path,
two event streams that never end). ``fill`` turns one into a runnable copy:
real credentials and base URL, real ids (literal, or captured from an earlier
response by a test script), a real file to upload, the streams left out,
deletes moved to the end, and a status assertion on every request. ``run``
installs newman from tests/postman (npm ci, once) and returns its JSON report.
"""
from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

ROOT = Path(__file__).resolve().parents[2]
# CI clones the repository with shared/ beside it, as on the development machines.
SPECS = ROOT.parent / "shared" / "specs" / "postman"
NPM_PROJECT = ROOT / "tests" / "postman"
NEWMAN_JS = NPM_PROJECT / "node_modules" / "newman" / "bin" / "newman.js"

MODALITY = "dsio-modality-v1.postman_collection.json"
FILTERS = "dsio-filters-v1.postman_collection.json"

# Strings the published collections use where a real value belongs; none may survive filling.
PLACEHOLDERS = ("<Basic Auth", "occaecat ad", "nostrud incid", "bc91c079-dabe-0170-1c5e-6ee92b3f4a35",
                "451f7e06-5827-4c99-b6fb-b9c330ca922c", "39db323b-198d-4219-b79e-ca918cde5be5")


# -- reading ------------------------------------------------------------------
def load(name: str) -> dict:
    """One of the vendor's collections, parsed; a clear failure when shared/ is missing."""
    path = SPECS / name
    if not path.is_file():
        pytest.fail(f"the vendor's Postman collection {path} is missing: the tests expect the "
                    f"shared/ folder beside the repository ({ROOT.parent}/shared), as CI clones it")
    return json.loads(path.read_text(encoding="utf-8"))


def requests_in(node: dict) -> Iterator[dict]:
    """The request items of a collection or folder, depth first, in run order."""
    for item in node.get("item", []):
        if "item" in item:
            yield from requests_in(item)
        else:
            yield item


def is_subscribe(item: dict) -> bool:
    """An event-stream request: newman would wait on it forever."""
    path = item["request"]["url"].get("path", [])
    return bool(path) and path[-1] == "subscribe"


def expected_status(item: dict) -> int:
    """The success status of the request's saved example (the spec's 2xx for it)."""
    codes = [r["code"] for r in item.get("response", []) if 200 <= r.get("code", 0) < 300]
    assert len(codes) == 1, f"{item['name']!r}: expected one 2xx example response, found {codes}"
    return codes[0]


def url_of(item: dict, base_url: str, values: dict[str, str]) -> str:
    """The URL a request goes to, its path variables and placeholder query values replaced."""
    url = item["request"]["url"]
    path = [quote(values[seg[1:]], safe="") if seg.startswith(":") else seg for seg in url.get("path", [])]
    query = [(q["key"], values.get(q["key"], q.get("value") or "")) for q in url.get("query", [])
             if not q.get("disabled")]
    return base_url + "/" + "/".join(path) + ("?" + urlencode(query) if query else "")


# -- filling ------------------------------------------------------------------
@dataclass
class Filling:
    """What replaces the placeholders of one collection.

    ``values`` maps a path variable, query parameter or JSON body field name to
    its value ("{{var}}" for one captured during the run); ``per_request``
    overrides those for single requests. ``captures`` maps a request name to
    {variable: response JSON field} to set from its response. ``files`` maps a
    form field to the file to upload.
    """
    base_url: str
    user: str
    password: str
    values: dict[str, str] = field(default_factory=dict)
    per_request: dict[str, dict[str, str]] = field(default_factory=dict)
    captures: dict[str, dict[str, str]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def _basic(user: str, password: str) -> dict:
    return {"type": "basic", "basic": [{"key": "username", "value": user, "type": "string"},
                                       {"key": "password", "value": password, "type": "string"}]}


def _fill_request(item: dict, filling: Filling) -> None:
    name, request = item["name"], item["request"]
    values = {**filling.values, **filling.per_request.get(name, {})}
    url = request["url"]
    for var in url.get("variable", []):
        assert var["key"] in values, f"{name!r}: no value for path variable {var['key']!r}"
        var["value"] = values[var["key"]]
    for param in url.get("query", []):
        if param["key"] in values:
            param["value"] = values[param["key"]]
    # newman builds the URL from host/path/query; raw is kept in step for whoever reads the file.
    query = "&".join(f"{q['key']}={q.get('value') or ''}" for q in url.get("query", []))
    url["raw"] = "{{baseUrl}}/" + "/".join(url.get("path", [])) + (f"?{query}" if query else "")

    body = request.get("body")
    if body and body.get("mode") == "raw" and body.get("raw", "").strip():
        data = json.loads(body["raw"])
        if isinstance(data, dict):
            for key in data.keys() & values.keys():
                data[key] = values[key]
            body["raw"] = json.dumps(data, indent=4)
    if body and body.get("mode") == "formdata":
        for part in body["formdata"]:
            if part.get("type") == "file":
                assert part["key"] in filling.files, f"{name!r}: no file for form field {part['key']!r}"
                part["src"] = str(filling.files[part["key"]])
        # The collection's bare "Content-Type: multipart/form-data" stays: newman appends the boundary.

    status = expected_status(item)
    lines = [f"pm.test({json.dumps(f'{name} answers {status}')}, function () {{",
             f"    pm.response.to.have.status({status});",
             "});"]
    for var, json_field in filling.captures.get(name, {}).items():
        lines += [f"pm.test({json.dumps(f'{name} returns {json_field}')}, function () {{",
                  f"    const value = pm.response.json()[{json.dumps(json_field)}];",
                  "    pm.expect(value).to.be.a('string').and.not.empty;",
                  f"    pm.collectionVariables.set({json.dumps(var)}, value);",
                  "});"]
    item["event"] = [e for e in item.get("event", []) if e.get("listen") != "test"]
    item["event"].append({"listen": "test", "script": {"type": "text/javascript", "exec": lines}})


def _without(node: dict, drop) -> list[dict]:
    """Remove the request items ``drop`` selects from a collection or folder; return them in order."""
    dropped, kept = [], []
    for item in node.get("item", []):
        if "item" in item:
            dropped += _without(item, drop)
            kept.append(item)
        elif drop(item):
            dropped.append(item)
        else:
            kept.append(item)
    node["item"] = kept
    return dropped


def _replace_auth(node: dict, auth: dict) -> None:
    """Real credentials wherever basic auth appears: collection, folders, requests."""
    if node.get("auth", {}) and node["auth"].get("type") == "basic":
        node["auth"] = copy.deepcopy(auth)
    if "request" in node and isinstance(node["request"].get("auth"), dict) \
            and node["request"]["auth"].get("type") == "basic":
        node["request"]["auth"] = copy.deepcopy(auth)
    for item in node.get("item", []):
        _replace_auth(item, auth)


def fill(collection: dict, filling: Filling) -> dict:
    """A runnable copy of ``collection`` (the original is left as read)."""
    out = copy.deepcopy(collection)
    auth = _basic(filling.user, filling.password)
    out["auth"] = auth      # the Filters collection has none; the Modality one holds placeholders
    _replace_auth(out, auth)
    variables = [v for v in out.get("variable", []) if v["key"] != "baseUrl"]
    out["variable"] = [{"key": "baseUrl", "value": filling.base_url, "type": "string"}, *variables]

    _without(out, is_subscribe)
    # Deletes go last, at the top level after the folders, so nothing later needs what they removed.
    out["item"] += _without(out, lambda item: item["request"]["method"] == "DELETE")
    for item in requests_in(out):
        _fill_request(item, filling)

    sent = json.dumps([{k: v for k, v in item.items() if k != "response"} for item in requests_in(out)]
                      + [out["auth"], out["variable"]])
    left = [p for p in PLACEHOLDERS if p in sent]
    assert not left, f"placeholders left in the filled collection: {left}"
    return out


# -- newman ---------------------------------------------------------------------
def _pinned_version() -> str:
    return json.loads((NPM_PROJECT / "package.json").read_text())["dependencies"]["newman"]


def _installed() -> bool:
    # npm ci writes node_modules/.package-lock.json last: without it an install was cut short.
    marker = NPM_PROJECT / "node_modules" / ".package-lock.json"
    installed = NPM_PROJECT / "node_modules" / "newman" / "package.json"
    return (marker.is_file() and NEWMAN_JS.is_file() and installed.is_file()
            and json.loads(installed.read_text())["version"] == _pinned_version())


@contextlib.contextmanager
def _install_lock():
    # Outside the work tree (npm ci empties node_modules), one lock per checkout.
    digest = hashlib.sha256(str(NPM_PROJECT).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"sensord-newman-{digest}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def newman_command() -> list[str]:
    """The command that runs the pinned newman, installed with npm ci if it is not yet."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed to run the Postman collections with newman")
    with _install_lock():
        if not _installed():
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NPM_PROJECT,
                                  capture_output=True, text=True, timeout=900)
            if done.returncode != 0 or not _installed():
                pytest.fail(f"npm ci in {NPM_PROJECT} failed (exit {done.returncode}):\n{done.stderr}")
    return [node, str(NEWMAN_JS)]


@dataclass
class Run:
    """One newman run: its JSON report and what its CLI reporter printed."""
    report: dict
    output: str

    @property
    def stats(self) -> dict:
        return self.report["run"]["stats"]

    @property
    def executed(self) -> list[str]:
        return [e["item"]["name"] for e in self.report["run"]["executions"]]

    def failed(self) -> list[str]:
        """Each failed request or assertion, with the status the daemon answered and its body."""
        lines = []
        for execution in self.report["run"]["executions"]:
            response = execution.get("response") or {}
            errors = [a["error"]["message"] for a in execution.get("assertions", []) if a.get("error")]
            if execution.get("requestError"):
                errors.append(execution["requestError"].get("message", "request error"))
            if errors:
                request = execution["request"]
                body = bytes(response.get("stream", {}).get("data", [])[:400]).decode("utf-8", "replace")
                lines.append(f"{execution['item']['name']}: {request['method']} {_url_text(request['url'])}"
                             f" -> {response.get('code')} {body!r}: {'; '.join(errors)}")
        for failure in self.report["run"]["failures"]:
            if failure["error"].get("name") != "AssertionError":
                lines.append(f"{failure.get('source', {}).get('name')}: {failure['error'].get('message')}")
        return lines


def _url_text(url: dict) -> str:
    host = ".".join(url.get("host", []))
    port = f":{url['port']}" if url.get("port") else ""
    query = "&".join(f"{q['key']}={q.get('value', '')}" for q in url.get("query", []))
    return f"{url.get('protocol', 'http')}://{host}{port}/{'/'.join(url.get('path', []))}" + \
        (f"?{query}" if query else "")


def run(collection: dict, workdir: Path, name: str, timeout: float = 300) -> Run:
    """Run a filled collection with newman; fails the test if newman wrote no report."""
    source = workdir / f"{name}.postman_collection.json"
    source.write_text(json.dumps(collection, indent=2), encoding="utf-8")
    report = workdir / f"{name}.newman-report.json"
    report.unlink(missing_ok=True)      # only this run's report counts
    # No proxy for the loopback daemon; no colour codes in the output pytest shows on failure.
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
           "FORCE_COLOR": "0"}
    done = subprocess.run([*newman_command(), "run", str(source), "--reporters", "cli,json",
                           "--reporter-json-export", str(report), "--color", "off",
                           "--timeout-request", "30000", "--working-dir", str(workdir)],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    if not report.is_file():
        pytest.fail(f"newman wrote no report (exit {done.returncode}):\n{output}")
    return Run(json.loads(report.read_text(encoding="utf-8")), output)
