"""Commands that talk to the running daemon over its authenticated API:

    sensord expose|plug|unplug|plug-sensor|unplug-sensor|battery DEVICE
    sensord outbox [list [--state S] | retry ID | drop ID]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import requests

from . import settings as settings_mod
from .auth import DEFAULT_USER, PASSWORD_FILE

ACTIONS = ("expose", "plug", "unplug", "plug-sensor", "unplug-sensor", "battery")


def _common(p) -> None:
    p.add_argument("--config", help="the daemon's TOML settings (for its address and state folder)")
    p.add_argument("--url", help="daemon base URL (default: from the settings)")
    p.add_argument("--user", default=os.environ.get("SENSORD_USER", DEFAULT_USER))


def add_parsers(sub) -> None:
    for action in ACTIONS:
        p = sub.add_parser(action, help=f"{action} a simulated device of the running daemon")
        p.add_argument("device", help="device id (or a unique start of it)")
        if action == "battery":
            p.add_argument("percent", type=float)
        if action == "expose":
            p.add_argument("--dose", type=float, default=1.0, help="X-ray dose, 1.0 = well exposed")
        _common(p)
        p.set_defaults(func=run, action=action)
    p = sub.add_parser("outbox", help="list, retry or drop forwarding entries of the running daemon")
    p.add_argument("verb", nargs="?", default="list", choices=("list", "retry", "drop"))
    p.add_argument("entry", nargs="?", type=int, help="entry id (retry, drop)")
    p.add_argument("--state", choices=("pending", "delivered", "dead"))
    _common(p)
    p.set_defaults(func=outbox)


def _client(args):
    settings = settings_mod.load(args.config)
    base = (args.url or f"http://{settings.server.host}:{settings.server.port}").rstrip("/")
    http = requests.Session()
    http.auth = (args.user, _password(settings))
    return base, http


def _failed(what: str, response) -> int:
    try:
        message = response.json()["message"]
    except ValueError:
        message = response.text
    print(f"sensord: {what} failed ({response.status_code}): {message}", file=sys.stderr)
    return 1


def outbox(args) -> int:
    base, http = _client(args)
    url = f"{base}/api/sensord/v1/outbox"
    try:
        if args.verb == "list":
            response = http.get(url, params={"state": args.state} if args.state else None, timeout=30)
        elif args.entry is None:
            print(f"sensord: outbox {args.verb} needs an entry id", file=sys.stderr)
            return 2
        elif args.verb == "retry":
            response = http.post(f"{url}/{args.entry}/retry", timeout=30)
        else:
            response = http.delete(f"{url}/{args.entry}", timeout=30)
    except requests.RequestException as err:
        print(f"sensord: cannot reach the daemon at {base}: {err}", file=sys.stderr)
        return 1
    if not response.ok:
        return _failed(f"outbox {args.verb}", response)
    if args.verb == "drop":
        print(f"dropped entry {args.entry}")
    elif args.verb == "retry":
        print(f"entry {args.entry} is pending again")
    else:
        body = response.json()
        print("  ".join(f"{k}: {v}" for k, v in sorted(body["counts"].items())) or "the outbox is empty")
        for e in body["entries"]:
            error = f"  {e['lastError']}" if e["lastError"] and e["state"] != "delivered" else ""
            print(f"{e['id']:>6}  {e['state']:<9} {e['target']:<12} {e['filter']:<20} "
                  f"attempts {e['attempts']:<3} {e['imageId']}{error}")
    return 0


def _password(settings) -> str:
    if os.environ.get("SENSORD_PASSWORD"):
        return os.environ["SENSORD_PASSWORD"]
    path = Path(settings.store.state_dir) / PASSWORD_FILE
    try:
        return path.read_text().strip()
    except OSError:
        raise SystemExit(f"sensord: set SENSORD_PASSWORD (no readable {path})") from None


def run(args) -> int:
    base, http = _client(args)
    device = args.device
    try:
        listed = http.get(f"{base}/api/dsio/modality/v1/devices", timeout=10)
        if listed.ok:
            matches = [d["deviceId"] for d in listed.json() if d["deviceId"].startswith(device)]
            if len(matches) == 1:
                device = matches[0]
        body = {"dose": args.dose} if args.action == "expose" else \
            {"percent": args.percent} if args.action == "battery" else None
        response = http.post(f"{base}/api/sensord/v1/devices/{device}/{args.action}", json=body, timeout=30)
    except requests.RequestException as err:
        print(f"sensord: cannot reach the daemon at {base}: {err}", file=sys.stderr)
        return 1
    if not response.ok:
        return _failed(args.action, response)
    print(f"{args.action}: done on {device}")
    return 0
