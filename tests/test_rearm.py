"""Issue #11, the sensor never gets stuck: a session whose AcquisitionInfo
waits for its exposure is armed again whenever the device can take it.

Each test drives the simulated sensor (sim://) through the Modality API and
the admin controls, and ends with an exposure that reaches NewImage. The
first three are the sequences the issue found (on a serial sensor); the
others are the remaining ways a device loses or refuses an arm. The serial
driver's own versions are in test_api_serial.py.
"""
from __future__ import annotations

import logging
import queue
import time

import pytest

from sensord.drivers import open_driver
from sensord.drivers.base import IDLE_DETAIL, DeviceEvent, DriverError, StateEvent
from tests.support.loopback import wait_until
from tests.support.modality import (
    ADMIN,
    API,
    arm_and_wait,
    control,
    create_session,
    devices,
    put_info,
    state_is,
    subscribe_status,
)

# select0 on USB: ~0.3 s readout, ~0.6 s warm-up and ~0.3 s arm at time_scale 1.
FAST = "sim://?models=select0&seed=5&time_scale=0.05"
BUSY_FAST = FAST + "&busy_init=1"
TIMEOUT = 10


def ready(event, data) -> bool:
    return event == "message" and data["ready"]


def start(serve, url):
    """A daemon with one simulated device and a session on it: (srv, device id, session id, stream)."""
    srv = serve(drivers={"urls": [url]})
    dev = devices(srv)[0]["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    return srv, dev, sid, subscribe_status(srv, sid)


def ok(response):
    assert response.status_code == 200, response.text
    return response


def enable(srv, sid):
    ok(put_info(srv, sid, enable=True))


def expose_to_new_image(srv, sid, dev, stream, images=1):
    """Wait until armed and Ready, expose, see NewImage; the session then waits for new info."""
    stream.until(ready, timeout=TIMEOUT)
    ok(control(srv, dev, "expose"))
    seen = stream.until(state_is("NewImage"), timeout=TIMEOUT)
    assert [d["state"] for _, d in seen][-4:] == ["Reading", "Processing", "Storing", "NewImage"]
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert status["totalImages"] == images and status["state"] == "NoAcquisitionInfo"


def device_state(srv, dev) -> str | None:
    """The device's last sensor state as the status snapshot shows it (None: idle)."""
    [device] = [d for d in srv.http.get(srv.url(f"{ADMIN}/status")).json()["devices"] if d["deviceId"] == dev]
    return device["state"]


def refusals(caplog, word="BUSY") -> int:
    return sum(1 for r in caplog.records
               if r.name == "sensord.sessions" and "cannot arm" in r.getMessage() and word in r.getMessage())


# -- the three sequences of the issue ------------------------------------------

def test_info_given_while_warming_up_is_armed_once_the_device_is_idle(serve, caplog):
    caplog.set_level(logging.WARNING, logger="sensord.sessions")
    # time_scale 1: a 0.6 s warm-up, ample time for the PUT to land inside it.
    srv, dev, sid, stream = start(serve, "sim://?models=select0&seed=5&time_scale=1&busy_init=1")
    ok(control(srv, dev, "unplug"))
    ok(control(srv, dev, "plug"))                  # powers up: Initializing, ~0.6 s
    enable(srv, sid)                               # ARM answered BUSY
    assert refusals(caplog) == 1
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert (status["state"], status["ready"]) == ("Initializing", False)
    expose_to_new_image(srv, sid, dev, stream)     # idle report -> armed -> Ready


@pytest.mark.parametrize("url", [FAST, BUSY_FAST], ids=["sim", "busy_init"])
@pytest.mark.parametrize("when", ["armed", "pending"])
def test_a_device_fault_that_clears_arms_again(serve, caplog, url, when):
    caplog.set_level(logging.WARNING, logger="sensord.sessions")
    srv, dev, sid, stream = start(serve, url)
    if when == "armed":                            # Ready, then the fault takes the arm
        arm_and_wait(srv, sid, stream)
        ok(control(srv, dev, "fault", detail="sensor too hot"))
        stream.until(state_is("Error"), timeout=TIMEOUT)
    else:                                          # AcquisitionInfo given during the fault
        ok(control(srv, dev, "fault", detail="sensor too hot"))
        stream.until(state_is("Error"), timeout=TIMEOUT)
        enable(srv, sid)
        assert refusals(caplog, "fault") == 1      # tried once, refused
    assert srv.http.get(srv.url(f"{API}/devices/{dev}")).json()["status"] == "Error"
    assert control(srv, dev, "expose").status_code == 409
    ok(control(srv, dev, "clear-fault"))
    expose_to_new_image(srv, sid, dev, stream)


@pytest.mark.parametrize("url", [FAST, BUSY_FAST], ids=["sim", "busy_init"])
@pytest.mark.parametrize("model", ["select0", "select1"], ids=["same-sensor", "swapped"])
def test_a_sensor_reattached_while_info_is_pending_is_armed(serve, url, model):
    srv, dev, sid, stream = start(serve, url)
    arm_and_wait(srv, sid, stream)
    ok(control(srv, dev, "unplug-sensor", keep_arm=False))   # the device forgets its arm
    stream.until(state_is("NoSensor"), timeout=TIMEOUT)
    ok(control(srv, dev, "plug-sensor", model=model))
    expose_to_new_image(srv, sid, dev, stream)
    sensor = srv.http.get(srv.url(f"{API}/devices/{dev}/sensor")).json()
    assert sensor["modelName"] == f"Simradix Select {model[-1]}"


def test_info_given_without_a_sensor_is_armed_when_one_is_attached(serve):
    srv, dev, sid, stream = start(serve, BUSY_FAST)
    ok(control(srv, dev, "unplug-sensor"))
    stream.until(state_is("NoSensor"), timeout=TIMEOUT)
    enable(srv, sid)                               # refused: no sensor
    ok(control(srv, dev, "plug-sensor"))           # warm-up: BUSY, then idle
    expose_to_new_image(srv, sid, dev, stream)


# -- the other ways an arm is lost or refused -----------------------------------

@pytest.mark.parametrize("url", [FAST, BUSY_FAST], ids=["sim", "busy_init"])
def test_a_recalibration_mid_session_arms_again(serve, url):
    srv, dev, sid, stream = start(serve, url)
    arm_and_wait(srv, sid, stream)
    ok(control(srv, dev, "recalibrate"))           # Initializing, the arm lost, then idle
    stream.until(state_is("Initializing"), timeout=TIMEOUT)
    expose_to_new_image(srv, sid, dev, stream)


@pytest.mark.parametrize("url", [FAST, BUSY_FAST], ids=["sim", "busy_init"])
def test_a_driver_restart_arms_again(serve, url):
    srv, dev, sid, stream = start(serve, url)
    arm_and_wait(srv, sid, stream)
    ok(control(srv, dev, "restart"))               # removed, added: unarmed
    stream.until(state_is("NoHardware", "Initializing"), timeout=TIMEOUT)
    expose_to_new_image(srv, sid, dev, stream)
    assert srv.http.get(srv.url(f"{API}/devices/{dev}")).json()["status"] == "InUse"


def test_busy_several_times_in_a_row(serve, caplog):
    caplog.set_level(logging.WARNING, logger="sensord.sessions")
    srv, dev, sid, stream = start(serve, FAST)
    ok(control(srv, dev, "busy-next-arm", count=3))
    enable(srv, sid)
    expose_to_new_image(srv, sid, dev, stream)
    assert refusals(caplog) == 3


def test_busy_while_ready_for_new_info_arms_again(serve, caplog):
    caplog.set_level(logging.WARNING, logger="sensord.sessions")
    srv, dev, sid, stream = start(serve, FAST)
    arm_and_wait(srv, sid, stream)
    ok(control(srv, dev, "busy-next-arm"))
    enable(srv, sid)                               # new info: its own arm, refused once
    assert refusals(caplog) == 1
    expose_to_new_image(srv, sid, dev, stream)


def test_low_battery_and_unplug_still_arm_again(serve):
    srv, dev, sid, stream = start(serve, "sim://?models=velocity1w&seed=5&time_scale=0.05&busy_init=1")
    arm_and_wait(srv, sid, stream)
    ok(control(srv, dev, "battery", percent=5))
    stream.until(state_is("LowBattery"), timeout=TIMEOUT)
    ok(control(srv, dev, "battery", percent=80))
    stream.until(ready, timeout=TIMEOUT)
    ok(control(srv, dev, "unplug"))
    stream.until(state_is("NoHardware"), timeout=TIMEOUT)
    ok(control(srv, dev, "plug"))
    expose_to_new_image(srv, sid, dev, stream)


def test_one_exposure_per_acquisition_info_even_after_a_fault(serve):
    srv, dev, sid, stream = start(serve, FAST)
    enable(srv, sid)
    expose_to_new_image(srv, sid, dev, stream)
    # The info is used up: a fault and its recovery, a recalibration or a
    # restart must not arm the device again.
    for action in ("fault", "clear-fault", "recalibrate", "restart"):
        ok(control(srv, dev, action))
    # Every warm-up is over once the device no longer says Initializing (the restart's comes
    # last; each action's own states are in by its answer), and all it said has been handled.
    assert wait_until(lambda: device_state(srv, dev) != "Initializing", TIMEOUT)
    srv.daemon.devices.settle()
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert (status["state"], status["ready"]) == ("NoAcquisitionInfo", False)
    assert control(srv, dev, "expose").status_code == 409          # not armed
    enable(srv, sid)
    expose_to_new_image(srv, sid, dev, stream, images=2)


def test_admin_controls_of_the_new_actions(serve):
    srv, dev, _, _ = start(serve, FAST)
    assert control(srv, dev, "clear-fault").status_code == 409          # no fault
    assert control(srv, dev, "busy-next-arm", count=0).status_code == 400
    assert control(srv, dev, "fault", detail="").status_code == 400
    assert control(srv, dev, "unplug-sensor", keep_arm="no").status_code == 400
    ok(control(srv, dev, "fault"))
    assert control(srv, dev, "fault").status_code == 409                # already
    assert control(srv, dev, "recalibrate").status_code == 409          # not while faulty


# -- the simulator's side of the contract (drivers/base.py IDLE_DETAIL) ---------

def test_sim_reports_idle_after_a_refused_arm():
    events: queue.Queue = queue.Queue()
    # time_scale 1: a 0.6 s warm-up, not 30 ms, for the arm below to land inside it on a loaded machine.
    driver = open_driver("sim://?models=select0&seed=5&time_scale=1&busy_init=1", emit=events.put)
    try:
        driver.start()
        [dev] = [d.device_id for d in driver.devices()]
        with pytest.raises(DriverError, match="BUSY"):
            driver.arm(dev)                        # still warming up
        deadline = time.monotonic() + TIMEOUT
        trail = []
        while not trail or trail[-1] != ("Initializing", IDLE_DETAIL):
            event = events.get(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(event, StateEvent):
                trail.append((event.state, event.detail))
            else:
                assert isinstance(event, DeviceEvent) and event.action == "added"
        assert trail == [("Initializing", ""), ("Initializing", IDLE_DETAIL)]
        driver.arm(dev)                            # idle: taken
        while (event := events.get(timeout=TIMEOUT)).state != "Ready":
            assert event.state == "Initializing" and not event.is_idle
    finally:
        driver.close()
