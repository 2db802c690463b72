"""sensord's own control endpoints: drive a simulated sensor like hardware.

`GET /api/sensord/v1/devices` lists every device seen, unplugged ones too.
`sensord expose DEVICE` and the tests use these to trigger an exposure,
unplug and replug a sensor or a device, drain the battery, and make the
sensor fail, recalibrate, refuse arms (BUSY) or its driver restart (see
drivers/sim_controls.py). Only drivers that offer the control (the simulator) accept
it; others answer 409. Operators only (api/roles.py).
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from sensord.daemon.acquisition.devices import device_json
from sensord.drivers.base import DriverError

from .body import json_body
from .errors import ApiError

bp = Blueprint("admin_api", __name__, url_prefix="/api/sensord/v1")

# action -> (driver method, JSON body keys passed as keyword arguments)
ACTIONS = {
    "expose": ("expose", ("dose", "seed")),
    "unplug-sensor": ("unplug_sensor", ("keep_arm",)),
    "plug-sensor": ("plug_sensor", ("model",)),
    "unplug": ("unplug_device", ()),
    "plug": ("plug_device", ()),
    "battery": ("set_battery", ("percent",)),
    "fault": ("set_fault", ("detail",)),
    "clear-fault": ("clear_fault", ()),
    "recalibrate": ("recalibrate", ()),
    "busy-next-arm": ("busy_next_arm", ("count",)),
    "restart": ("restart", ()),
}


@bp.get("/devices")
def known_devices():
    """Every device the daemon has seen, unplugged ones too (the Modality
    list drops them): what `sensord plug` resolves an id prefix against.
    ``controls``: the actions its driver takes."""
    listed = []
    for entry in current_app.extensions["sensord"].devices.known():
        controls = [a for a, (method, _) in ACTIONS.items() if hasattr(entry.driver, method)]
        listed.append({**device_json(entry), "connected": entry.present, "controls": controls})
    return jsonify({"devices": listed})


@bp.post("/devices/<device_id>/<action>")
def control(device_id: str, action: str):
    if action not in ACTIONS:
        raise ApiError(404, f"no device action {action!r} (known: {', '.join(ACTIONS)})")
    registry = current_app.extensions["sensord"].devices
    entry = registry.find(device_id)
    if entry is None:
        raise ApiError(404, f"no device {device_id!r}")
    method_name, keys = ACTIONS[action]
    method = getattr(entry.driver, method_name, None)
    if method is None:
        raise ApiError(409, f"device {device_id!r} ({entry.driver.url}) cannot {action}: "
                            f"only simulated devices take this control")
    body = json_body(optional=True) or {}
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    unknown = set(body) - set(keys)
    if unknown:
        raise ApiError(400, f"unknown parameter(s) {', '.join(sorted(unknown))} for {action}")
    try:
        method(device_id, **body)
    except DriverError as err:
        raise ApiError(409, f"{action} refused: {err}") from None
    except (TypeError, ValueError) as err:
        raise ApiError(400, f"{action}: {err}") from None
    registry.settle()   # the caller sees the state the action caused
    return jsonify({"deviceId": device_id, "action": action, "done": True})
