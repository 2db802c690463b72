"""`sensord expose|plug|unplug|plug-sensor|unplug-sensor|battery DEVICE`:
drive a simulated sensor of the running daemon through its admin endpoint."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import requests

from . import settings as settings_mod
from .auth import DEFAULT_USER, PASSWORD_FILE

ACTIONS = ("expose", "plug", "unplug", "plug-sensor", "unplug-sensor", "battery")


def add_parsers(sub) -> None:
    for action in ACTIONS:
        p = sub.add_parser(action, help=f"{action} a simulated device of the running daemon")
        p.add_argument("device", help="device id (or a unique start of it)")
        if action == "battery":
            p.add_argument("percent", type=float)
        if action == "expose":
            p.add_argument("--dose", type=float, default=1.0, help="X-ray dose, 1.0 = well exposed")
        p.add_argument("--config", help="the daemon's TOML settings (for its address and state folder)")
        p.add_argument("--url", help="daemon base URL (default: from the settings)")
        p.add_argument("--user", default=os.environ.get("SENSORD_USER", DEFAULT_USER))
        p.set_defaults(func=run, action=action)


def _password(settings) -> str:
    if os.environ.get("SENSORD_PASSWORD"):
        return os.environ["SENSORD_PASSWORD"]
    path = Path(settings.store.state_dir) / PASSWORD_FILE
    try:
        return path.read_text().strip()
    except OSError:
        raise SystemExit(f"sensord: set SENSORD_PASSWORD (no readable {path})") from None


def run(args) -> int:
    settings = settings_mod.load(args.config)
    base = (args.url or f"http://{settings.server.host}:{settings.server.port}").rstrip("/")
    http = requests.Session()
    http.auth = (args.user, _password(settings))
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
        try:
            message = response.json()["message"]
        except ValueError:
            message = response.text
        print(f"sensord: {args.action} failed ({response.status_code}): {message}", file=sys.stderr)
        return 1
    print(f"{args.action}: done on {device}")
    return 0
