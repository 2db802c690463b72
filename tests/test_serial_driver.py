"""SerialDriver against the sensor emulator, through a real pseudo-terminal."""
import os
import time
import uuid

import numpy as np
import pytest

from sensord.drivers import open_driver
from sensord.drivers import serial_messages as sm
from sensord.drivers.base import DriverError, StateEvent
from sensord.drivers.serial_device import parse_url
from sensord.drivers.serial_port import SerialDriver, list_ports
from tests.support.sensor_emulator import SensorEmulator
from tests.support.serial_rig import FAST, Recorder

GARBAGE = b"\x00\xff\xA5\xA5\x5A\x01\x85\x00garbage\xA5"


@pytest.fixture
def emu(tmp_path):
    with SensorEmulator(str(tmp_path)) as e:
        yield e


@pytest.fixture
def rig(emu):
    rec = Recorder()
    drv = open_driver(emu.url, emit=rec, options=FAST)
    drv.start()
    yield emu, drv, rec
    drv.close()


def armed(rig, binning=False):
    emu, drv, rec = rig
    dev = rec.device("added")
    rec.state("Initializing")                    # appeared, idle (sim:// does the same)
    drv.arm(dev.device.device_id, binning=binning)
    rec.state("Ready")
    return dev.device


def test_identify_reports_added_device_and_sensor(rig):
    emu, drv, rec = rig
    dev = rec.device("added").device
    assert dev.interface_type == "serial"
    assert (dev.model_name, dev.serial_number, dev.version) == ("Emu Serial Interface", "EMU-0001", "1.7")
    assert dev.name == "Emu Serial Interface: EMU-0001"
    assert dev.battery_percent == 80.0
    s = dev.sensor
    assert (s.model_name, s.serial_number, s.brand, s.family, s.size) == ("Emu 2", "SN-4242", "Emulated", "Supreme", 2)
    assert (s.width, s.height, s.bits, s.supports_binning, s.version) == (64, 48, 12, True, "3.1.4")
    assert s.pixel_size_mm == pytest.approx(0.0185)
    assert drv.devices() == [dev]
    rec.state("Initializing", "idle")


def test_device_id_is_stable_across_driver_restarts(rig):
    emu, drv, rec = rig
    first = rec.device("added").device.device_id
    drv.close()
    again = Recorder()
    other = open_driver(emu.url, emit=again, options=FAST)
    other.start()
    try:
        assert again.device("added").device.device_id == first
        assert uuid.UUID(first).version == 5
    finally:
        other.close()


def test_arm_reports_ready_every_time_and_disarm_is_acknowledged(rig):
    emu, drv, rec = rig
    dev = armed(rig, binning=True)
    assert emu.requests(sm.Arm)[-1].binning is True
    drv.arm(dev.device_id)                       # already armed: Ready again, as sim:// does
    rec.state("Ready")
    drv.disarm(dev.device_id)                    # idle again: the idle report
    rec.state("Initializing", "idle")
    assert not emu.armed and emu.requests(sm.Disarm)


def test_exposure_yields_reading_then_the_exact_frame(rig):
    emu, drv, rec = rig
    dev = armed(rig)
    sent = emu.expose()
    rec.state("Reading")
    frame = rec.frame()
    assert frame.device_id == dev.device_id and frame.binned is False
    assert frame.pixels.dtype == np.uint16 and frame.pixels.shape == (48, 64)
    assert np.array_equal(frame.pixels, sent)
    assert 0 < frame.read_started <= frame.read_ended <= time.monotonic()


def test_binned_exposure(rig):
    emu, drv, rec = rig
    armed(rig, binning=True)
    sent = emu.expose()
    frame = rec.frame()
    assert frame.binned is True and frame.pixels.shape == (24, 32)
    assert np.array_equal(frame.pixels, sent)


def test_binning_ignored_on_a_sensor_without_it(tmp_path):
    rec = Recorder()
    with SensorEmulator(str(tmp_path), supports_binning=False) as emu:
        drv = open_driver(emu.url, emit=rec, options=FAST)
        drv.start()
        try:
            armed((emu, drv, rec), binning=True)
            assert emu.requests(sm.Arm)[-1].binning is False
            sent = emu.expose()
            frame = rec.frame()
            assert frame.binned is False and np.array_equal(frame.pixels, sent)
        finally:
            drv.close()


def test_realistic_frame_1200x854(tmp_path):
    rec = Recorder()
    with SensorEmulator(str(tmp_path), width=1200, height=854, chunk_size=sm.MAX_CHUNK_DATA) as emu:
        drv = open_driver(emu.url, emit=rec, options=FAST)
        drv.start()
        try:
            armed((emu, drv, rec))
            sent = emu.expose()
            frame = rec.frame(timeout=15)
            assert frame.pixels.shape == (854, 1200)
            assert np.array_equal(frame.pixels, sent)
        finally:
            drv.close()


def test_garbage_between_messages_still_yields_the_frame(rig):
    emu, drv, rec = rig
    armed(rig)
    emu.inject_garbage(GARBAGE * 3)
    sent = emu.expose(interleave=GARBAGE)
    assert np.array_equal(rec.frame().pixels, sent)
    assert drv.decoder_counters()["garbage_bytes"] >= 4 * len(GARBAGE)


@pytest.mark.parametrize("damage,detail", [
    (lambda emu: emu.corrupt_next_chunk(), "missing chunk"),
    (lambda emu: emu.corrupt_next_chunk(recompute_crc=True), "frame CRC mismatch"),
    (lambda emu: emu.drop_bytes_in_next_frame(7), "missing chunk"),
], ids=["flipped-bit", "memory-error", "dropped-bytes"])
def test_damaged_frame_reports_error_and_no_frame(rig, damage, detail):
    emu, drv, rec = rig
    dev = armed(rig)
    mark = len(rec.seen)
    damage(emu)
    emu.expose()
    rec.state("Reading")
    err = rec.state("Error", "frame rejected")
    assert detail in err.detail
    drv.arm(dev.device_id)                       # one exposure per arm: re-arm for the retake
    rec.state("Ready")
    assert rec.frames_since(mark) == []
    assert drv.stats["frames_rejected"] == 1
    sent = emu.expose()
    assert np.array_equal(rec.frame().pixels, sent)


@pytest.mark.parametrize("lost,detail", [("frame_end", "end lost"), ("exposure", "start was lost")])
def test_lost_frame_boundary_reports_error(rig, lost, detail):
    emu, drv, rec = rig
    dev = armed(rig)
    mark = len(rec.seen)
    emu.lose_in_next_frame(lost)
    emu.expose()
    assert detail in rec.state("Error", "frame rejected").detail
    drv.arm(dev.device_id)
    rec.state("Ready")
    assert rec.frames_since(mark) == []
    sent = emu.expose()
    assert np.array_equal(rec.frame().pixels, sent)


def test_unsolicited_device_error(rig):
    emu, drv, rec = rig
    rec.device("added")
    rec.state("Initializing")
    emu.report_error(sm.ErrorCode.SENSOR_FAULT, "sensor too hot")
    assert rec.state("Error").detail == "device error SENSOR_FAULT: sensor too hot"
    rec.state("Initializing", "idle")            # the status that follows clears it


def test_other_interface_on_the_same_port(rig):
    emu, drv, rec = rig
    old = rec.device("added").device
    emu.pull_cable(vanish=True)
    rec.state("NoHardware")
    emu.serial = "EMU-0002"
    emu.replug()
    assert rec.device("removed").device == old
    new = rec.device("added").device
    assert new.serial_number == "EMU-0002" and new.device_id != old.device_id
    assert drv.devices() == [new]


@pytest.mark.parametrize("vanish", [True, False], ids=["usb-unplugged", "rs232-silent"])
def test_cable_pulled_mid_frame_then_recovery(rig, vanish):
    emu, drv, rec = rig
    dev = armed(rig)
    mark = len(rec.seen)
    emu.pull_cable_mid_frame(vanish=vanish)
    rec.state("Reading")
    lost = rec.state("NoHardware")
    if not vanish:
        assert "while reading a frame" in lost.detail
    assert rec.frames_since(mark) == []
    with pytest.raises(DriverError):
        drv.arm(dev.device_id)
    emu.replug()
    assert rec.device("changed").device.device_id == dev.device_id
    rec.state("Initializing", "idle")            # its readout ended the arm
    assert rec.frames_since(mark) == []          # the half frame never comes out
    drv.arm(dev.device_id)
    rec.state("Ready")
    sent = emu.expose()
    assert np.array_equal(rec.frame().pixels, sent)


def test_idle_cable_pull_is_noticed_by_the_keepalive(rig):
    emu, drv, rec = rig
    rec.device("added")
    emu.pull_cable(vanish=False)
    assert "from the device" in rec.state("NoHardware").detail
    emu.replug()
    rec.device("changed")
    rec.state("Initializing", "idle")


def test_port_gone_longer_than_grace_is_removed_then_added(rig):
    emu, drv, rec = rig
    dev = rec.device("added").device
    emu.pull_cable(vanish=True)
    rec.state("NoHardware")
    assert rec.device("removed").device == dev
    assert drv.devices() == []
    with pytest.raises(DriverError):
        drv.arm(dev.device_id)
    emu.replug()
    assert rec.device("added").device.device_id == dev.device_id
    rec.state("Initializing")
    assert drv.devices()[0].device_id == dev.device_id


def test_no_sensor_then_sensor_back(rig):
    emu, drv, rec = rig
    dev = rec.device("added").device
    emu.set_no_sensor()
    assert rec.device("changed").device.sensor is None
    rec.state("NoSensor")
    with pytest.raises(DriverError, match="NO_SENSOR"):
        drv.arm(dev.device_id)
    emu.set_sensor()
    assert rec.device("changed").device.sensor.serial_number == "SN-4242"
    rec.state("Initializing", "idle")


def test_started_without_sensor(tmp_path):
    rec = Recorder()
    with SensorEmulator(str(tmp_path)) as emu:
        emu.sensor_present = False
        drv = open_driver(emu.url, emit=rec, options=FAST)
        drv.start()
        try:
            assert rec.device("added").device.sensor is None
            rec.state("NoSensor")
        finally:
            drv.close()


def test_low_battery(rig):
    emu, drv, rec = rig
    dev = rec.device("added").device
    rec.state("Initializing")
    emu.set_battery(5)
    assert rec.device("changed").device.battery_percent == 5.0
    assert rec.state("LowBattery").detail == "battery 5%"
    drv.arm(dev.device_id)                       # the arm is kept, as in sim://
    rec.state("LowBattery")
    emu.set_battery(60)
    assert rec.device("changed").device.battery_percent == 60.0
    rec.state("Ready")                           # charged again, still armed


def test_mains_powered_device_has_no_battery(tmp_path):
    rec = Recorder()
    with SensorEmulator(str(tmp_path), battery=None) as emu:
        drv = open_driver(emu.url, emit=rec, options=FAST)
        drv.start()
        try:
            assert rec.device("added").device.battery_percent is None
        finally:
            drv.close()


def test_arm_times_out_when_the_device_does_not_answer(rig):
    emu, drv, rec = rig
    dev = rec.device("added").device
    emu.set_answering(False)
    t0 = time.monotonic()
    with pytest.raises(DriverError, match="no acknowledgement|not connected|disconnected"):
        drv.arm(dev.device_id)
    assert time.monotonic() - t0 < FAST["ack_timeout"] + 0.5


def test_arm_unknown_device(rig):
    emu, drv, rec = rig
    rec.device("added")
    with pytest.raises(DriverError, match="unknown device"):
        drv.arm("nope")


def test_a_failing_emit_does_not_end_the_driver(emu):
    rec, raised = Recorder(), []

    def emit(event):
        rec(event)
        if isinstance(event, StateEvent) and not raised:
            raised.append(event)
            raise RuntimeError("bug in the daemon's callback")

    drv = open_driver(emu.url, emit=emit, options=FAST)
    drv.start()
    try:
        rec.state("Initializing")
        assert "driver error" in rec.state("NoHardware").detail
        rec.device("changed")                    # reconnected by the normal retry
        rec.state("Initializing")
    finally:
        drv.close()


def test_close_is_idempotent_and_releases_the_port(rig):
    emu, drv, rec = rig
    rec.device("added")
    drv.close()
    drv.close()
    assert not drv._thread.is_alive() and drv._port is None
    with pytest.raises(DriverError):
        drv.start()
    never_started = open_driver(emu.url, emit=rec, options=FAST)
    never_started.close()
    never_started.close()
    again = Recorder()
    other = open_driver(emu.url, emit=again, options=FAST)   # the exclusive lock is gone
    other.start()
    try:
        again.device("added")
    finally:
        other.close()


def test_start_before_the_port_exists(tmp_path):
    rec = Recorder()
    emu = SensorEmulator(str(tmp_path))
    drv = open_driver(emu.url, emit=rec, options=FAST)
    drv.start()                                  # no port yet: no device, no exception
    try:
        assert drv.devices() == []
        with emu:
            rec.device("added")
            rec.state("Initializing")
    finally:
        drv.close()


def test_open_driver_picks_the_scheme():
    drv = open_driver("serial:///dev/ttyUSB0", emit=lambda e: None)
    assert isinstance(drv, SerialDriver) and drv.path == "/dev/ttyUSB0"
    assert drv.cfg["baudrate"] == 921600
    with pytest.raises(ValueError, match="bogus"):
        open_driver("bogus://x", emit=lambda e: None)


def test_url_and_options():
    assert parse_url("serial:///dev/ttyS1?baudrate=115200") == ("/dev/ttyS1", {"baudrate": "115200"})
    drv = open_driver("serial:///dev/ttyS1?baudrate=115200", emit=lambda e: None,
                      options={"ack_timeout": 2})
    assert drv.cfg["baudrate"] == 115200 and drv.cfg["ack_timeout"] == 2.0
    with pytest.raises(ValueError, match="baud_rate"):
        open_driver("serial:///dev/ttyS1", emit=lambda e: None, options={"baud_rate": 1})
    with pytest.raises(ValueError, match="no port path"):
        open_driver("serial://", emit=lambda e: None)


def test_list_ports(emu, tmp_path):
    (tmp_path / "ttyFAKE").write_text("not a device")
    os.symlink(str(tmp_path / "missing"), tmp_path / "ttyDANGLING")
    assert list_ports(str(tmp_path / "tty*")) == [emu.path]
