"""Commands that talk to the running daemon over its authenticated API:

    sensord expose|plug|unplug|plug-sensor|unplug-sensor|battery DEVICE
    sensord outbox [list [--state S] | retry ID | drop ID]
    sensord devices | status

They log in as an operator (daemon/api/roles.py): sensord's own API and the
outbox are refused (403) to a client. The user is --user, else $SENSORD_USER,
else "admin"; the password is $SENSORD_PASSWORD, else the one the daemon
wrote to <state_dir>/admin-password at first start (the state folder the
--config names). That "admin" is an operator when the daemon made it; a
configured user must be listed as "operator" under [auth.roles].
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import requests

from sensord.daemon import settings as settings_mod
from sensord.daemon.api.auth import DEFAULT_USER, PASSWORD_FILE

from .health import probe_host

ACTIONS = ("expose", "plug", "unplug", "plug-sensor", "unplug-sensor", "battery")


def _common(p) -> None:
    p.add_argument("--config", help="the daemon's TOML settings (for its address and state folder)")
    p.add_argument("--url", help="daemon base URL (default: from the settings)")
    p.add_argument("--user", default=os.environ.get("SENSORD_USER", DEFAULT_USER),
                   help="an operator (default: $SENSORD_USER, else admin); password: $SENSORD_PASSWORD, "
                        "else <state_dir>/admin-password")


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
    p = sub.add_parser("devices", help="the running daemon's devices and their state")
    _common(p)
    p.set_defaults(func=devices)
    p = sub.add_parser("status", help="the running daemon: devices, sessions, outbox")
    _common(p)
    p.set_defaults(func=status)
    p = sub.add_parser("outbox", help="list, retry or drop forwarding entries of the running daemon")
    p.add_argument("verb", nargs="?", default="list", choices=("list", "retry", "drop"))
    p.add_argument("entry", nargs="?", type=int, help="entry id (retry, drop)")
    p.add_argument("--state", choices=("pending", "delivered", "dead"))
    _common(p)
    p.set_defaults(func=outbox)


def _client(args):
    settings = settings_mod.load(args.config)
    scheme = "https" if settings.server.tls_cert else "http"
    host = probe_host(settings.server.host)
    base = (args.url or f"{scheme}://{host}:{settings.server.port}").rstrip("/")
    http = requests.Session()
    http.auth = (args.user, _password(settings))
    if scheme == "https" and not args.url:
        # Our own daemon on loopback: trust its (typically self-signed) certificate.
        # requests lets $REQUESTS_CA_BUNDLE override a session's verify, so the
        # environment is not consulted (nor its proxies: this is loopback).
        http.verify = settings.server.tls_cert
        http.trust_env = False
    return base, http


def _message(response) -> str:
    try:
        return response.json()["message"]
    except (ValueError, KeyError, TypeError):
        return response.text


def _failed(what: str, response) -> int:
    print(f"sensord: {what} failed ({response.status_code}): {_message(response)}", file=sys.stderr)
    return 1


MODALITY = "/api/dsio/modality/v1"


def _get(http, url):
    response = http.get(url, timeout=30)
    if response.status_code in (401, 403, 429):
        # Reached, but refused (wrong password, not an operator, locked out): say which.
        raise SystemExit(f"sensord: {url} refused ({response.status_code}): {_message(response)}")
    response.raise_for_status()
    return response.json()


def _device_lines(listed: list) -> list[str]:
    lines = []
    for d in listed:
        battery = f"  battery {d['battery']['percentRemaining']:.0f}%" if d.get("battery") else ""
        sensor = "" if d["hasSensor"] else "  (no sensor)"
        lines.append(f"{d['deviceId']}  {d['status']:<11} {d['name']}{sensor}{battery}")
    return lines or ["no devices"]


def devices(args) -> int:
    base, http = _client(args)
    try:
        listed = _get(http, base + MODALITY + "/devices")
    except requests.RequestException as err:
        print(f"sensord: cannot read devices from {base}: {err}", file=sys.stderr)
        return 1
    print("\n".join(_device_lines(listed)))
    return 0


def status(args) -> int:
    base, http = _client(args)
    try:
        listed = _get(http, base + MODALITY + "/devices")
        sessions = _get(http, base + MODALITY + "/acquisition")
        states = [_get(http, f"{base}{MODALITY}/acquisition/{s['sessionId']}/status") for s in sessions]
        box = _get(http, base + "/api/sensord/v1/outbox?state=dead")
    except requests.RequestException as err:
        print(f"sensord: cannot reach the daemon at {base}: {err}", file=sys.stderr)
        return 1
    print(f"sensord at {base}")
    print(f"devices ({len(listed)}):")
    print("\n".join("  " + line for line in _device_lines(listed)))
    print(f"sessions ({len(sessions)}):")
    for s, st in zip(sessions, states):
        print(f"  {s['sessionId']}  {st['state']:<17} images {st['totalImages']:<3} "
              f"device {s['deviceId']}  {s['clientName']}")
    counts = box["counts"]
    print("outbox: " + ("  ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty"))
    for e in box["entries"][:5]:
        print(f"  dead {e['id']} to {e['target']}: {e['lastError']}")
    return 0


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
