"""The daemon with a serial sensor: the emulator on a real pseudo-terminal,
driven through the Modality API like any client would."""
from __future__ import annotations

import glob
import time
from urllib.parse import urlencode

import numpy as np
import pytest

from sensord.drivers import serial_messages as sm
from tests.support import images
from tests.support.modality import (
    API,
    arm_and_wait,
    create_session,
    devices,
    put_info,
    state_is,
    subscribe_status,
)
from tests.support.sensor_emulator import SensorEmulator
from tests.support.sse_client import EventStream

FAST = urlencode(dict(read_timeout=0.02, ack_timeout=0.5, identify_timeout=0.5, silence_timeout=0.5,
                      poll_interval=0.1, retry_interval=0.05, removal_grace=0.4, stall_timeout=0.1))


@pytest.fixture
def emu(tmp_path):
    with SensorEmulator(str(tmp_path), width=160, height=120) as emulator:
        yield emulator


def wait_for_device(srv, timeout=15.0):
    stream = EventStream(srv.http, srv.url(API + "/devices/subscribe"))
    try:
        if not devices(srv):
            stream.until(lambda e, d: d["action"] == "added", timeout)
    finally:
        stream.close()
    return devices(srv)[0]


def test_exposure_from_a_serial_sensor(serve, emu):
    srv = serve(drivers={"urls": [f"{emu.url}?{FAST}"]})
    dev = wait_for_device(srv)
    assert dev["serialNumber"] == emu.serial and dev["battery"]["percentRemaining"] == 80
    sid = create_session(srv, dev["deviceId"])["sessionId"]
    stream = subscribe_status(srv, sid)
    arm_and_wait(srv, sid, stream, applyLut=False)
    sent = emu.expose()
    seen = stream.until(state_is("NewImage"), timeout=10)
    assert [d["state"] for _, d in seen][-4:] == ["Reading", "Processing", "Storing", "NewImage"]
    info = srv.http.get(srv.url(f"{API}/acquisition/{sid}/images/{seen[-1][1]['lastImageId']}")).json()
    got = images.decode(srv.http.get(info["imageUrl"]).content)
    assert np.array_equal(got, sent)           # every pixel as the sensor sent it


def test_several_drivers_at_once(serve, emu):
    srv = serve(drivers={"urls": ["sim://?models=select0&time_scale=0.01", f"{emu.url}?{FAST}"]})
    deadline = time.monotonic() + 15
    while len(devices(srv)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(d["interfaceType"] for d in devices(srv)) == ["serial", "usb"]


def test_cable_pulled_mid_frame_stores_nothing_and_recovers(serve, emu):
    srv = serve(drivers={"urls": [f"{emu.url}?{FAST}"]})
    dev = wait_for_device(srv)["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    stream = subscribe_status(srv, sid)
    arm_and_wait(srv, sid, stream, applyLut=False)
    emu.pull_cable_mid_frame()
    stream.until(state_is("NoHardware"), timeout=10)
    emu.replug()
    stream.until(lambda e, d: d["ready"], timeout=10)           # re-armed after the replug
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()
    assert status["totalImages"] == 0 and list((srv.daemon.image_folder.root).glob("*/*.png")) == []
    emu.expose()
    stream.until(state_is("NewImage"), timeout=10)


def test_corrupted_chunk_loses_the_frame_not_the_session(serve, emu):
    srv = serve(drivers={"urls": [f"{emu.url}?{FAST}"]})
    dev = wait_for_device(srv)["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    stream = subscribe_status(srv, sid)
    arm_and_wait(srv, sid, stream, applyLut=False)
    emu.corrupt_next_chunk()
    emu.expose()
    stream.until(state_is("Error"), timeout=10)
    assert srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()["totalImages"] == 0
    arm_and_wait(srv, sid, stream, applyLut=False)              # a retake works
    emu.expose()
    stream.until(state_is("NewImage"), timeout=10)


# Issue #11: three sequences in which a sensor built to SERIAL_PROTOCOL.md left
# the session in Initializing. Each ends with an exposure that reaches NewImage.

def arms_refused_after(emu, before: int, timeout: float = 10.0) -> None:
    """Wait until the device has answered one more ARM than ``before`` (refused here)."""
    deadline = time.monotonic() + timeout
    while len(emu.requests(sm.Arm)) <= before:
        assert time.monotonic() < deadline, "the daemon never tried to arm"
        time.sleep(0.02)


def pending_session(srv, emu):
    """A session on the emulator's device, with its status stream."""
    dev = wait_for_device(srv)["deviceId"]
    sid = create_session(srv, dev)["sessionId"]
    return sid, subscribe_status(srv, sid)


def enable(srv, sid):
    response = put_info(srv, sid, enable=True, applyLut=False)
    assert response.status_code == 200, response.text


def expose_to_new_image(srv, sid, emu, stream):
    stream.until(lambda e, d: d["ready"], timeout=10)           # armed once the device could take it
    sent = emu.expose()
    seen = stream.until(state_is("NewImage"), timeout=10)
    assert srv.http.get(srv.url(f"{API}/acquisition/{sid}/status")).json()["totalImages"] == 1
    image = srv.http.get(srv.url(f"{API}/acquisition/{sid}/images/{seen[-1][1]['lastImageId']}")).json()
    assert np.array_equal(images.decode(srv.http.get(image["imageUrl"]).content), sent)


def test_arm_refused_busy_during_warm_up_is_retried_when_the_device_is_idle(serve, emu):
    emu.begin_warm_up()                          # powered up, still warming
    srv = serve(drivers={"urls": [f"{emu.url}?{FAST}"]})
    sid, stream = pending_session(srv, emu)
    enable(srv, sid)                             # ARM answered BUSY: pending
    assert len(emu.requests(sm.Arm)) == 1 and not emu.armed
    stream.until(state_is("Initializing"), timeout=10)
    emu.end_warm_up()                            # unsolicited STATUS IDLE
    expose_to_new_image(srv, sid, emu, stream)


@pytest.mark.parametrize("when", ["pending", "ready"])
def test_fault_that_clears_leads_to_an_exposure(serve, emu, when):
    srv = serve(drivers={"urls": [f"{emu.url}?{FAST}"]})
    sid, stream = pending_session(srv, emu)
    if when == "ready":                          # armed, then the fault drops the arm
        arm_and_wait(srv, sid, stream, applyLut=False)
        emu.set_fault("sensor too hot")
        stream.until(state_is("Error"), timeout=10)
    else:                                        # AcquisitionInfo given during the fault
        emu.set_fault("sensor too hot")
        stream.until(state_is("Error"), timeout=10)
        before = len(emu.requests(sm.Arm))
        enable(srv, sid)
        arms_refused_after(emu, before)          # SENSOR_FAULT
    before = len(emu.requests(sm.Arm))
    emu.clear_fault(recalibrate=True)            # ERROR -> INITIALIZING -> IDLE
    stream.until(state_is("Initializing"), timeout=10)
    if when == "pending":
        arms_refused_after(emu, before)          # BUSY while it recalibrates
    emu.end_warm_up()
    expose_to_new_image(srv, sid, emu, stream)


def test_sensor_reattached_while_pending_leads_to_an_exposure(serve, emu):
    srv = serve(drivers={"urls": [f"{emu.url}?{FAST}"]})
    sid, stream = pending_session(srv, emu)
    emu.set_no_sensor()
    stream.until(state_is("NoSensor"), timeout=10)
    enable(srv, sid)                             # ARM answered NO_SENSOR: pending
    before = len(emu.requests(sm.Arm))
    emu.set_sensor(warm_up=True)                 # NO_SENSOR -> INITIALIZING -> IDLE
    stream.until(state_is("Initializing"), timeout=10)
    arms_refused_after(emu, before)              # BUSY while it warms up
    emu.end_warm_up()
    expose_to_new_image(srv, sid, emu, stream)


def test_ports_that_appear_become_devices(serve, tmp_path):
    srv = serve(drivers={"urls": [], "serial_ports": str(tmp_path / "ttyEMU*"), "poll_seconds": 1})
    assert devices(srv) == []
    stream = EventStream(srv.http, srv.url(API + "/devices/subscribe"))
    with SensorEmulator(str(tmp_path)) as emulator:
        assert glob.glob(str(tmp_path / "ttyEMU*"))
        event = stream.until(lambda e, d: d["action"] == "added", timeout=10)[-1][1]
        assert event["deviceInfo"]["serialNumber"] == emulator.serial
    stream.close()


def test_unknown_driver_scheme_stops_the_start(tmp_path):
    from sensord.daemon.settings import SettingsError
    from tests.support.server import make_settings

    with pytest.raises(SettingsError, match="usb"):
        make_settings(tmp_path, drivers={"urls": ["usb://whatever"]})
