"""Commands that talk to the running daemon over its authenticated API:

    sensord expose|plug|unplug|plug-sensor|unplug-sensor|battery DEVICE
    sensord fault|clear-fault|recalibrate|busy-next-arm|restart DEVICE
    sensord outbox [list [--state S] | retry ID | drop ID | retry-mpps ID | drop-mpps ID]
    sensord devices | status

They log in as an operator (daemon/api/roles.py): sensord's own API and the
outbox are refused (403) to a client. Which daemon, and with which password,
cli_target.py decides from the same configuration the daemon reads; every
failure is one line on stderr (cli_http.py), never a traceback. A device is
named by its id or any unique start of it, unplugged devices included.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import traceback

from sensord.daemon import settings as settings_mod

from . import cli_target
from .cli_http import DaemonClient, message
from .cli_ids import unique
from .cli_target import CliError

# The simulator's controls (daemon/api/admin.py): action -> what it does.
ACTIONS = {
    "expose": "fire the X-ray tube at the device's armed sensor",
    "plug": "plug a device back in (it may have left the device list)",
    "unplug": "pull a device's cable",
    "plug-sensor": "attach a sensor to the device",
    "unplug-sensor": "pull the sensor out of the device",
    "battery": "set a wireless device's charge",
    "fault": "make the sensor fail (Error) until clear-fault",
    "clear-fault": "clear the sensor's fault",
    "recalibrate": "the sensor recalibrates (Initializing, the arm lost)",
    "busy-next-arm": "the next arms are refused BUSY",
    "restart": "restart the device's driver (its devices leave and come back)",
}

# The options each action passes in its JSON body (the admin endpoint's keys).
OPTIONS = {"expose": ("dose",), "battery": ("percent",), "fault": ("detail",),
           "busy-next-arm": ("count",), "plug-sensor": ("model",)}

ENVIRONMENT = """\
The state folder (for admin-password) is the first of: --state-dir; the
daemon's --state-dir in the ExecStart of the installed unit that serves this
--config, else the config's [store] state_dir; that unit's StateDirectory=
under /var/lib (/var/lib/sensord, the service's $STATE_DIRECTORY);
$STATE_DIRECTORY; ./state (where `sensord serve` run here keeps it).

environment:
  SENSORD_CONFIG    the daemon's settings file when --config is not given
  SENSORD_USER      the user to log in as when --user is not given (default: admin)
  SENSORD_PASSWORD  its password; default: <state folder>/admin-password, written by
                    the daemon at its first start when [auth.users] is empty
  STATE_DIRECTORY   the state folder when neither --state-dir, the config's
                    [store] state_dir nor an installed unit names one (default ./state)
  SENSORD_UNIT      the systemd unit that runs the daemon (default sensord.service):
                    when its ExecStart serves the same --config, the state folder is its
                    StateDirectory= under /var/lib (/var/lib/sensord), and a certificate
                    it hands over with LoadCredential= is read from the source file
  SENSORD_DEBUG     1: show the Python traceback of an unexpected error
"""


def _common(p) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ENVIRONMENT
    p.add_argument("--config", help="the daemon's TOML settings: its address, certificate and state folder "
                                    "(default: $SENSORD_CONFIG, else the embedded defaults)")
    p.add_argument("--state-dir", help="the daemon's state folder, for admin-password (default: see below)")
    p.add_argument("--url", help="daemon base URL (default: from the settings)")
    p.add_argument("--cacert", help="the certificate to trust for HTTPS (default: the config's tls_cert)")
    p.add_argument("--user", help="an operator to log in as (default: $SENSORD_USER, else admin); password: "
                                  "$SENSORD_PASSWORD, else <state folder>/admin-password")


def add_parsers(sub) -> None:
    for action, what in ACTIONS.items():
        p = sub.add_parser(action, help=f"{what} (simulated devices)", description=f"{what.capitalize()}: "
                           "a control of the simulated sensors (drivers/sim_controls.py), on the running daemon.")
        p.add_argument("device", help="device id, or a unique start of it")
        if action == "battery":
            p.add_argument("percent", type=float, help="charge in percent, 0-100")
        if action == "expose":
            p.add_argument("--dose", type=float, default=1.0, help="X-ray dose, 1.0 = well exposed")
        if action == "fault":
            p.add_argument("--detail", help="what failed (default: sensor fault)")
        if action == "busy-next-arm":
            p.add_argument("--count", type=int, help="how many arms to refuse (default 1)")
        if action == "plug-sensor":
            p.add_argument("--model", help="catalogue key of the sensor (default: the one unplugged)")
        _common(p)
        p.set_defaults(func=_guarded(run), action=action)
    p = sub.add_parser("devices", help="the running daemon's devices and their state",
                       description="The running daemon's devices, unplugged ones included.")
    _common(p)
    p.set_defaults(func=_guarded(devices))
    p = sub.add_parser("status", help="the running daemon: devices, sessions, outbox",
                       description="The running daemon's devices, sessions and outbox.")
    _common(p)
    p.set_defaults(func=_guarded(status))
    p = sub.add_parser("outbox", help="list, retry or drop forwarding entries of the running daemon",
                       description="The running daemon's outbox: list entries, retry a dead one, drop one; "
                                   "retry-mpps / drop-mpps do the same to an MPPS message (only a dead one "
                                   "is dropped; a dead N-CREATE takes its held N-SET with it).")
    p.add_argument("verb", nargs="?", default="list",
                   choices=("list", "retry", "drop", "retry-mpps", "drop-mpps"))
    p.add_argument("entry", nargs="?", type=int, help="entry or MPPS message id (retry, drop, *-mpps)")
    p.add_argument("--state", choices=("pending", "committing", "delivered", "dead"))
    _common(p)
    p.set_defaults(func=_guarded(outbox))


def _guarded(command):
    """Run ``command``; any failure is one line on stderr and a non-zero exit, never a traceback."""
    @functools.wraps(command)
    def run_command(args) -> int:
        try:
            return command(args)
        except CliError as err:
            print(f"sensord: {err}", file=sys.stderr)
            return err.code
        except settings_mod.SettingsError as err:
            print(f"sensord: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("sensord: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # The reader went away (| head): nothing more to say, and nothing at exit either.
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            return 1
        except Exception as err:
            if os.environ.get("SENSORD_DEBUG"):
                traceback.print_exc()
            print(f"sensord: unexpected error ({type(err).__name__}): {err} "
                  f"(SENSORD_DEBUG=1 shows where)", file=sys.stderr)
            return 1
    return run_command


def _client(args) -> DaemonClient:
    return DaemonClient(cli_target.find(args))


def _failed(what: str, response) -> int:
    print(f"sensord: {what} failed ({response.status_code}): {message(response)}", file=sys.stderr)
    return 1


MODALITY = "/api/dsio/modality/v1"
SENSORD = "/api/sensord/v1"


def _device_lines(listed: list) -> list[str]:
    lines = []
    for d in listed:
        has_battery = (d.get("battery") or {}).get("hasBattery")    # mains: hasBattery false
        battery = f"  battery {d['battery']['percentRemaining']:.0f}%" if has_battery else ""
        # A driver may say it in the name already (the simulator's "...: SERIAL (no sensor)").
        sensor = "" if d["hasSensor"] or "(no sensor)" in d["name"] else "  (no sensor)"
        status = d["status"] if d.get("connected", True) else "unplugged"
        lines.append(f"{d['deviceId']}  {status:<11} {d['name']}{sensor}{battery}")
    return lines or ["no devices"]


def _known_devices(daemon: DaemonClient) -> list[dict]:
    """Every device the daemon knows, unplugged ones too (``connected`` false)."""
    return daemon.get_json(SENSORD + "/devices")["devices"]


def devices(args) -> int:
    listed = _known_devices(_client(args))
    print("\n".join(_device_lines(listed)))
    return 0


def status(args) -> int:
    daemon = _client(args)
    listed = _known_devices(daemon)
    sessions = daemon.get_json(MODALITY + "/acquisition")
    states = {}
    for s in sessions:
        answer = daemon.request("GET", f"{MODALITY}/acquisition/{s['sessionId']}/status")
        if answer.ok:           # (a session deleted meanwhile is left out)
            states[s["sessionId"]] = daemon.json(answer)
    sessions = [s for s in sessions if s["sessionId"] in states]
    box = daemon.get_json(SENSORD + "/outbox", params={"state": "dead"})
    committing = daemon.get_json(SENSORD + "/outbox", params={"state": "committing"})
    print(f"sensord at {daemon.base}")
    print(f"devices ({len(listed)}):")
    print("\n".join("  " + line for line in _device_lines(listed)))
    print(f"sessions ({len(sessions)}):")
    for s in sessions:
        st = states[s["sessionId"]]
        print(f"  {s['sessionId']}  {st['state']:<17} images {st['totalImages']:<3} "
              f"device {s['deviceId']}  {s['clientName']}")
    counts = box["counts"]
    print("outbox: " + ("  ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty"))
    for e in box["entries"][:5]:
        print(f"  dead {e['id']} to {e['target']}: {e['lastError']}")
    for e in committing["entries"][:5]:
        print(f"  committing {e['id']} to {e['target']}: {_waiting(e)}")
    return 0


def _waiting(entry: dict) -> str:
    """How long a committing entry has waited for the archive's storage commitment, and how long it still may."""
    now = time.time()
    return (f"waiting {now - entry['updated']:.0f} s for storage commitment, "
            f"stored again if none in {max(0.0, entry['nextAttempt'] - now):.0f} s")


def outbox(args) -> int:
    if args.verb != "list" and args.entry is None:
        raise CliError(f"outbox {args.verb} needs an entry id", code=2)
    daemon = _client(args)
    path = SENSORD + "/outbox"
    if args.verb == "list":
        response = daemon.request("GET", path, params={"state": args.state} if args.state else None)
    elif args.verb.endswith("-mpps"):
        return _mpps_verb(daemon, args.verb, args.entry)
    elif args.verb == "retry":
        response = daemon.request("POST", f"{path}/{args.entry}/retry")
    else:
        response = daemon.request("DELETE", f"{path}/{args.entry}")
    if not response.ok:
        return _failed(f"outbox {args.verb}", response)
    if args.verb == "drop":
        print(f"dropped entry {args.entry}")
    elif args.verb == "retry":
        print(f"entry {args.entry} is pending again")
    else:
        body = daemon.json(response)
        print("  ".join(f"{k}: {v}" for k, v in sorted(body["counts"].items())) or "the outbox is empty")
        for e in body["entries"]:
            error = f"  {e['lastError']}" if e["lastError"] and e["state"] != "delivered" else ""
            if e["state"] == "committing":
                error = f"  {_waiting(e)}"
            print(f"{e['id']:>6}  {e['state']:<9} {e['target']:<12} {e['filter']:<20} "
                  f"attempts {e['attempts']:<3} {e['imageId']}{error}")
        print("\n".join(_mpps_lines(body.get("mpps") or {})))
    return 0


def _mpps_verb(daemon: DaemonClient, verb: str, message_id: int) -> int:
    path = f"{SENSORD}/outbox/mpps/{message_id}"
    if verb == "retry-mpps":
        response = daemon.request("POST", path + "/retry")
    else:
        response = daemon.request("DELETE", path)
    if not response.ok:
        return _failed(f"outbox {verb}", response)
    if verb == "retry-mpps":
        print(f"MPPS message {message_id} is pending again")
    else:
        print(daemon.json(response)["message"])
    return 0


def _mpps_lines(mpps: dict) -> list[str]:
    """MPPS messages that wait (pending, or held behind a dead create) or are dead; none when all went."""
    if not mpps.get("configured"):
        return []
    counts = "  ".join(f"{k}: {v}" for k, v in sorted(mpps["counts"].items())) or "none queued"
    lines = [f"MPPS  {counts}"]
    for m in mpps["messages"]:
        if m["state"] == "delivered":
            continue
        state = "held" if m["held"] else m["state"]
        error = f"  {m['lastError']}" if m["lastError"] else ""
        lines.append(f"{m['id']:>6}  {state:<9} N-{m['kind'].upper():<7} {m['ppsStatus']:<13} "
                     f"attempts {m['attempts']:<3} session {m['sessionId']}{error}")
    return lines


def run(args) -> int:
    daemon = _client(args)
    # Resolved against every device the daemon knows: `plug` names one that has left the device list.
    known = _known_devices(daemon)
    device = unique(args.device, {d["deviceId"]: d["name"] for d in known}, "device")
    given = {key: getattr(args, key) for key in OPTIONS.get(args.action, ())}
    body = {key: value for key, value in given.items() if value is not None} or None
    response = daemon.request("POST", f"{SENSORD}/devices/{device}/{args.action}", json=body)
    if not response.ok:
        return _failed(args.action, response)
    print(f"{args.action}: done on {device}")
    return 0
