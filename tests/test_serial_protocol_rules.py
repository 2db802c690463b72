"""The rules of SERIAL_PROTOCOL.md, one sequence each: what the device does
(the emulator on a real pseudo-terminal) and exactly which states the driver
reports for it. ``IDLE`` is the idle report of drivers/base.py: the device
holds no arm and can take one now."""
import contextlib
import uuid

import numpy as np
import pytest

from sensord.drivers import open_driver
from sensord.drivers.base import IDLE_DETAIL, DriverError
from tests.support.sensor_emulator import SensorEmulator
from tests.support.serial_rig import FAST, Recorder

IDLE = ("Initializing", IDLE_DETAIL)
WARMING = ("Initializing", "")
READY = ("Ready", "")
READING = ("Reading", "")


@contextlib.contextmanager
def driven(emu):
    """The driver on ``emu``'s port, up and identified; yields (driver, recorder, device)."""
    rec = Recorder()
    drv = open_driver(emu.url, emit=rec, options=FAST)
    drv.start()
    try:
        yield drv, rec, rec.device("added").device
    finally:
        drv.close()


@pytest.fixture
def emu(tmp_path):
    with SensorEmulator(str(tmp_path)) as e:
        yield e


@pytest.fixture
def idle(emu):
    """A driver whose device reported idle: (emu, driver, recorder, device)."""
    with driven(emu) as (drv, rec, dev):
        assert rec.state(*IDLE).is_idle
        yield emu, drv, rec, dev


def arm(drv, rec, dev):
    drv.arm(dev.device_id)
    rec.state(*READY)


def sequence(rec, mark, last):
    """Wait for the state ``last``, let the line settle, and return every state since ``mark``."""
    rec.state(*last)
    rec.settle()
    return rec.states_since(mark)


def test_arm_refused_busy_while_warming_up_then_the_idle_report(emu):
    emu.begin_warm_up()
    with driven(emu) as (drv, rec, dev):
        rec.state(*WARMING)
        with pytest.raises(DriverError, match="arm refused: BUSY"):
            drv.arm(dev.device_id)
        rec.settle()
        assert rec.states_since(0) == [WARMING]          # the refusal itself reports nothing
        emu.end_warm_up()                                # unsolicited STATUS IDLE
        assert sequence(rec, 0, IDLE) == [WARMING, IDLE]
        arm(drv, rec, dev)


def test_recalibration_drops_the_arm(idle):
    emu, drv, rec, dev = idle
    arm(drv, rec, dev)
    mark = len(rec.seen)
    emu.begin_warm_up()
    rec.state(*WARMING)
    emu.end_warm_up()
    assert sequence(rec, mark, IDLE) == [WARMING, IDLE]
    assert not emu.armed
    arm(drv, rec, dev)


@pytest.mark.parametrize("recalibrate", [False, True], ids=["idle", "via-initializing"])
def test_fault_drops_the_arm_and_its_end_is_reported(idle, recalibrate):
    emu, drv, rec, dev = idle
    arm(drv, rec, dev)
    mark = len(rec.seen)
    emu.set_fault("sensor too hot")
    rec.state("Error", "sensor reports an error")
    with pytest.raises(DriverError, match="SENSOR_FAULT"):
        drv.arm(dev.device_id)
    emu.clear_fault(recalibrate=recalibrate)
    if recalibrate:
        rec.state(*WARMING)
        emu.end_warm_up()
    assert sequence(rec, mark, IDLE) == [
        ("Error", "device error SENSOR_FAULT: sensor too hot"),
        ("Error", "sensor reports an error"),
        *([WARMING] if recalibrate else []),
        IDLE,
    ]
    arm(drv, rec, dev)


def test_sensor_reattached_warms_up_then_the_idle_report(idle):
    emu, drv, rec, dev = idle
    mark = len(rec.seen)
    emu.set_no_sensor()
    assert rec.device("changed").device.sensor is None
    rec.state("NoSensor")
    with pytest.raises(DriverError, match="NO_SENSOR"):
        drv.arm(dev.device_id)
    emu.set_sensor(warm_up=True)
    assert rec.device("changed").device.sensor is not None
    rec.state(*WARMING)
    with pytest.raises(DriverError, match="BUSY"):
        drv.arm(dev.device_id)
    emu.end_warm_up()
    assert sequence(rec, mark, IDLE) == [("NoSensor", ""), WARMING, IDLE]
    arm(drv, rec, dev)


@pytest.mark.parametrize("after_chunks", [None, 0, 2], ids=["before-exposure", "after-exposure", "mid-frame"])
def test_readout_aborted_rejects_the_frame_once(idle, after_chunks):
    emu, drv, rec, dev = idle
    arm(drv, rec, dev)
    mark = len(rec.seen)
    emu.abort_readout(after_chunks=after_chunks, text="sensor lost sync")
    assert sequence(rec, mark, IDLE) == [
        READING, ("Error", "frame rejected: readout aborted by the device: sensor lost sync"), IDLE]
    assert rec.frames_since(mark) == [] and drv.stats["frames_rejected"] == 1
    arm(drv, rec, dev)                                   # the arm was spent: a retake needs its own
    sent = emu.expose()
    assert np.array_equal(rec.frame().pixels, sent)


@pytest.mark.parametrize("value", [4096, 0xFFFF])
def test_a_sample_out_of_the_sensors_range_rejects_the_frame(idle, value):
    emu, drv, rec, dev = idle
    arm(drv, rec, dev)
    mark = len(rec.seen)
    pixels = emu.pixels_for(99, (emu.height, emu.width))
    pixels[5, 7] = value
    emu.expose(pixels=pixels)
    assert sequence(rec, mark, IDLE) == [
        READING,
        ("Error", f"frame rejected: 1 pixel value(s) at or above 2^12 = 4096, first {value} at row 5, column 7"),
        IDLE]
    assert rec.frames_since(mark) == []
    arm(drv, rec, dev)
    pixels[5, 7] = 4095                                  # the largest 12-bit value is fine
    sent = emu.expose(pixels=pixels)
    assert np.array_equal(rec.frame().pixels, sent)


def test_frame_ids_start_afresh_after_a_reboot(idle):
    emu, drv, rec, dev = idle
    arm(drv, rec, dev)
    first = emu.expose()
    assert np.array_equal(rec.frame().pixels, first) and emu.last_frame_id == 1
    rec.state(*IDLE)
    mark = len(rec.seen)
    emu.reboot()                                         # the port stays: no link loss
    rec.state(*WARMING)
    emu.end_warm_up()
    rec.state(*IDLE)
    arm(drv, rec, dev)
    again = emu.expose()
    assert np.array_equal(rec.frame().pixels, again) and emu.last_frame_id == 1
    assert sequence(rec, mark, IDLE) == [WARMING, IDLE, READY, READING, IDLE]


@pytest.mark.parametrize("echo", [False, True], ids=["tag-00", "request-tag"])
def test_status_after_an_ack_is_taken_with_either_tag(idle, echo):
    emu, drv, rec, dev = idle
    emu.echo_tag_on_status = echo
    mark = len(rec.seen)
    arm(drv, rec, dev)
    drv.arm(dev.device_id)                               # already armed: Ready again
    rec.state(*READY)
    drv.disarm(dev.device_id)
    assert sequence(rec, mark, IDLE) == [READY, READY, IDLE]


def test_an_acknowledged_arm_gets_no_second_idle_report(idle):
    # A device that acknowledges ARM but stays IDLE breaks the protocol; the
    # driver must still not tell the daemon "idle, arm me" again (a loop).
    emu, drv, rec, dev = idle
    emu.ack_arm_but_stay_idle = True
    mark = len(rec.seen)
    drv.arm(dev.device_id)
    drv.arm(dev.device_id)
    rec.settle()
    assert rec.states_since(mark) == []


def test_a_chunk_may_end_inside_a_pixel(tmp_path):
    with SensorEmulator(str(tmp_path), chunk_size=1001) as emu, driven(emu) as (drv, rec, dev):
        rec.state(*IDLE)
        arm(drv, rec, dev)
        sent = emu.expose()
        assert np.array_equal(rec.frame().pixels, sent)


def test_low_battery_keeps_the_arm_and_captures_nothing(idle):
    emu, drv, rec, dev = idle
    arm(drv, rec, dev)
    mark = len(rec.seen)
    emu.set_battery(5)
    rec.state("LowBattery", "battery 5%")
    with pytest.raises(RuntimeError):
        emu.expose()                                     # the device reads nothing out while low
    emu.set_battery(60)
    assert sequence(rec, mark, READY) == [("LowBattery", "battery 5%"), READY]
    sent = emu.expose()                                  # the arm held through it
    assert np.array_equal(rec.frame().pixels, sent)


def test_device_id_is_the_documented_uuid5(idle):
    emu, drv, rec, dev = idle
    namespace = uuid.UUID("96c4ae08-1951-5252-8d7b-0e7c68fd5480")
    assert dev.device_id == str(uuid.uuid5(namespace, f"{emu.path}|{emu.serial}"))

