"""sensord.drivers.sim through open_driver: devices, states, frames, hot-plug, battery.

Every wait is on the event queue with a timeout; absence of an event is
shown by a later event that the driver must deliver after it.
"""
from __future__ import annotations

import queue
import threading
import time
import uuid

import numpy as np
import pytest

from sensord.drivers import open_driver
from sensord.drivers.base import DeviceEvent, DriverError, FrameEvent, StateEvent

FAST = {"time_scale": 0.01}
TIMEOUT = 5.0


class Recorder:
    """The driver's emit: queues events; ``wait`` pops until one matches."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self.seen: list = []

    def __call__(self, event):
        self.queue.put(event)

    def wait(self, match, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no matching event in {timeout} s; last seen: {self.seen[-6:]}")
            self.seen.append(event)
            if match(event):
                return event

    def mark(self) -> int:
        return len(self.seen)

    def states(self, device_id, since=0):
        return [e.state for e in self.seen[since:]
                if isinstance(e, StateEvent) and e.device_id == device_id]

    def trail(self, device_id, since=0):
        """What one device did, as in drivers/sim_device.py's table: states, actions, 'frame'."""
        return [e.state if isinstance(e, StateEvent) else e.action if isinstance(e, DeviceEvent)
                else "frame" for e in self.seen[since:] if _id(e) == device_id]

    def of(self, kind, device_id, since=0):
        return [e for e in self.seen[since:] if isinstance(e, kind) and _id(e) == device_id]


def _id(event):
    return event.device.device_id if isinstance(event, DeviceEvent) else event.device_id


def state(device_id, name):
    return lambda e: isinstance(e, StateEvent) and e.device_id == device_id and e.state == name


def frame(device_id):
    return lambda e: isinstance(e, FrameEvent) and e.device_id == device_id


def device_event(action, device_id):
    return lambda e: isinstance(e, DeviceEvent) and e.action == action and e.device.device_id == device_id


@pytest.fixture
def sim(request):
    """A started driver: ``sim(url, **options)`` -> (driver, recorder, {model key: id})."""
    opened = []

    def make(url="sim://", **options):
        rec = Recorder()
        driver = open_driver(url, emit=rec, options={**FAST, **options})
        opened.append(driver)
        driver.start()
        ids = {spec.key: dev.device_id for spec, dev in zip(driver.config.devices, driver.devices())}
        return driver, rec, ids

    yield make
    for driver in opened:
        driver.close()


def ready(driver, rec, device_id, binning=False):
    driver.arm(device_id, binning=binning)
    rec.wait(state(device_id, "Ready"))


def test_enumerates_realistic_devices(sim):
    driver, rec, ids = sim()
    devices = driver.devices()
    assert len(devices) == 3 and len({d.device_id for d in devices}) == 3
    for dev in devices:
        uuid.UUID(dev.device_id)
        assert dev.sensor is not None and dev.sensor.serial_number in dev.name
        assert dev.sensor.brand == "Simradix" and dev.serial_number and dev.version
        assert (dev.battery_percent is not None) == (dev.interface_type == "network")
    big = next(d for d in devices if d.device_id == ids["supreme2"])
    assert (big.sensor.width, big.sensor.height, big.sensor.size, big.sensor.family) == (2400, 1708, 2, "Supreme")
    assert big.interface_type == "usb" and big.sensor.supports_binning
    # start(): added, then Initializing, for each device.
    for dev_id in ids.values():
        rec.wait(state(dev_id, "Initializing"))
        assert rec.of(DeviceEvent, dev_id)[0].action == "added"


def test_ids_are_stable_across_restarts(sim):
    first, _, ids1 = sim("sim://?devices=2")
    first.close()
    _, _, ids2 = sim("sim://?devices=2")
    assert ids1 == ids2


def test_arm_reports_initializing_then_ready(sim):
    driver, rec, ids = sim()
    dev = ids["supreme2"]
    mark = rec.mark()
    driver.arm(dev)
    rec.wait(state(dev, "Ready"))
    after = rec.states(dev, mark)
    assert after[0] == "Initializing" and after[-1] == "Ready"
    # Arming again while Ready just confirms it.
    mark = rec.mark()
    driver.arm(dev)
    rec.wait(state(dev, "Ready"))
    assert rec.states(dev, mark) == ["Ready"]


def test_expose_reads_a_frame_of_the_sensor_size_once_per_arm(sim):
    driver, rec, ids = sim()
    dev = ids["supreme2"]
    ready(driver, rec, dev)
    mark = rec.mark()
    before = time.monotonic()
    driver.expose(dev, dose=1.0)
    ev = rec.wait(frame(dev))
    assert rec.trail(dev, mark) == ["Reading", "frame"]
    assert ev.pixels.shape == (1708, 2400) and ev.pixels.dtype == np.uint16 and not ev.binned
    assert int(ev.pixels.max()) <= 2 ** 14 - 1 and ev.pixels.mean() > 1000
    assert before <= ev.read_started <= ev.read_ended <= time.monotonic()
    with pytest.raises(DriverError, match="not armed"):
        driver.expose(dev)


def test_binning_when_the_sensor_supports_it(sim):
    driver, rec, ids = sim()
    for key, shape, binned in (("supreme2", (854, 1200), True), ("select0", (924, 1230), False)):
        dev = ids[key]
        ready(driver, rec, dev, binning=True)
        driver.expose(dev)
        ev = rec.wait(frame(dev))
        assert (ev.pixels.shape, ev.binned) == (shape, binned)


def test_unarmed_devices_stay_idle(sim):
    driver, rec, ids = sim()
    dev, idle = ids["supreme2"], ids["velocity1w"]
    ready(driver, rec, dev)
    driver.expose(dev)
    rec.wait(frame(dev))   # later than the others' start-up, which is now over
    # Warmed up and unarmed: the idle report after the start-up's Initializing.
    assert [(e.state, e.detail) for e in rec.of(StateEvent, idle)] == [("Initializing", ""),
                                                                       ("Initializing", "idle")]
    with pytest.raises(DriverError, match="not armed"):
        driver.expose(idle)
    # After the frame, the exposed device is idle too until re-armed.
    driver.arm(dev)
    rec.wait(state(dev, "Ready"))


def test_expose_refused_while_initializing():
    rec = Recorder()
    driver = open_driver("sim://?models=select0", emit=rec, options={"time_scale": 1.0})
    try:
        driver.start()
        [dev] = [d.device_id for d in driver.devices()]
        driver.arm(dev)
        with pytest.raises(DriverError, match="initializing"):
            driver.expose(dev)
    finally:
        driver.close()


def test_frames_are_deterministic_by_seed_and_keep_dead_pixels_in_place(sim):
    driver, rec, ids = sim("sim://?models=velocity0&dead_pixels=40")
    dev = ids["velocity0"]
    frames = []
    for seed in (5, 5, None):
        ready(driver, rec, dev)
        driver.expose(dev, seed=seed)
        frames.append(rec.wait(frame(dev)).pixels)
    assert np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[0], frames[2])
    # Nothing saturates at dose 1: pixels at full scale are the sensor's stuck ones.
    hot = [set(zip(*np.nonzero(f == 4095))) for f in frames]
    assert hot[0] and hot[0] == hot[2]


def test_unplug_and_replug_sensor(sim):
    driver, rec, ids = sim()
    dev = ids["supreme2"]
    ready(driver, rec, dev)
    mark = rec.mark()
    driver.unplug_sensor(dev)
    changed = rec.wait(device_event("changed", dev))
    rec.wait(state(dev, "NoSensor"))
    assert changed.device.sensor is None and "no sensor" in changed.device.name
    assert next(d for d in driver.devices() if d.device_id == dev).sensor is None
    with pytest.raises(DriverError, match="no sensor"):
        driver.expose(dev)
    with pytest.raises(DriverError, match="no sensor"):
        driver.arm(dev)
    rec.wait(state(dev, "NoSensor"))   # arm() reports why it cannot
    driver.plug_sensor(dev, model="select0")
    changed = rec.wait(device_event("changed", dev))
    assert changed.device.sensor.model_name == "Simradix Select 0"
    rec.wait(state(dev, "Ready"))      # still armed from before the swap
    assert rec.trail(dev, mark) == ["changed", "NoSensor", "NoSensor", "changed", "Initializing", "Ready"]
    driver.expose(dev)
    assert rec.wait(frame(dev)).pixels.shape == (924, 1230)


def test_unplug_device_mid_readout_discards_the_frame(sim):
    # time_scale 0.2: a readout of ~0.1 s, far longer than the unplug call.
    driver, rec, ids = sim("sim://?models=supreme2", time_scale=0.2)
    dev = ids["supreme2"]
    ready(driver, rec, dev)
    driver.expose(dev)
    driver.unplug_device(dev)
    rec.wait(device_event("removed", dev))
    assert rec.trail(dev)[-3:] == ["Reading", "NoHardware", "removed"]
    assert driver.devices() == []
    with pytest.raises(DriverError, match="not connected"):
        driver.arm(dev)
    replugged = time.monotonic()
    driver.plug_device(dev)
    rec.wait(device_event("added", dev))
    ready(driver, rec, dev)            # it came back unarmed, so arm again
    driver.expose(dev)
    ev = rec.wait(frame(dev))
    # The lost frame would have been due long before this one: it never came.
    assert rec.of(FrameEvent, dev) == [ev] and ev.read_started > replugged


def test_unplug_sensor_mid_readout_keeps_the_arm(sim):
    driver, rec, ids = sim("sim://?models=supreme1", time_scale=0.2)
    dev = ids["supreme1"]
    ready(driver, rec, dev)
    driver.expose(dev)
    driver.unplug_sensor(dev)
    rec.wait(state(dev, "NoSensor"))
    driver.plug_sensor(dev)
    assert rec.wait(device_event("changed", dev)).device.sensor.model_name == "Simradix Supreme 1"
    rec.wait(state(dev, "Ready"))      # the lost frame did not use up the arm
    driver.expose(dev)
    ev = rec.wait(frame(dev))
    assert rec.of(FrameEvent, dev) == [ev]
    assert rec.trail(dev)[-8:] == ["Reading", "changed", "NoSensor", "changed", "Initializing", "Ready",
                                   "Reading", "frame"]


def test_arm_during_readout_rearms_after_the_frame_and_disarm_idles(sim):
    driver, rec, ids = sim("sim://?models=velocity2", time_scale=0.2)
    dev = ids["velocity2"]
    ready(driver, rec, dev)
    driver.expose(dev)
    driver.arm(dev, binning=True)      # the next exposure's arm, given early
    rec.wait(frame(dev))
    rec.wait(state(dev, "Ready"))
    assert rec.trail(dev)[-5:] == ["Ready", "Reading", "frame", "Initializing", "Ready"]
    driver.disarm(dev)
    with pytest.raises(DriverError, match="not armed"):
        driver.expose(dev)


def test_battery_running_low_during_readout_lets_the_frame_finish(sim):
    driver, rec, ids = sim("sim://?models=velocity1w", time_scale=0.2)
    dev = ids["velocity1w"]
    ready(driver, rec, dev)
    driver.expose(dev)
    driver.set_battery(dev, 3)
    rec.wait(frame(dev))
    rec.wait(state(dev, "LowBattery"))
    assert rec.trail(dev)[-4:] == ["Reading", "changed", "frame", "LowBattery"]
    with pytest.raises(DriverError, match="battery"):
        driver.expose(dev)


def test_unplug_idle_device_reports_no_state(sim):
    driver, rec, ids = sim()
    dev = ids["select0"]
    # Idle: the start-up's warm-up over and reported (its Initializing, then the idle report).
    rec.wait(lambda e: state(dev, "Initializing")(e) and e.is_idle)
    mark = rec.mark()
    driver.unplug_device(dev)
    driver.plug_device(dev)
    rec.wait(state(dev, "Initializing"))
    kinds = [(type(e).__name__, getattr(e, "action", getattr(e, "state", None)))
             for e in rec.seen[mark:] if _id(e) == dev]
    assert kinds == [("DeviceEvent", "removed"), ("DeviceEvent", "added"), ("StateEvent", "Initializing")]
    with pytest.raises(DriverError, match="already connected"):
        driver.plug_device(dev)


def test_low_battery_refuses_exposures_until_recharged(sim):
    driver, rec, ids = sim()
    dev = ids["velocity1w"]
    ready(driver, rec, dev)
    driver.set_battery(dev, 5)
    assert rec.wait(device_event("changed", dev)).device.battery_percent == 5.0
    rec.wait(state(dev, "LowBattery"))
    with pytest.raises(DriverError, match="battery"):
        driver.expose(dev)
    mark = rec.mark()
    driver.set_battery(dev, 60)
    rec.wait(state(dev, "Ready"))
    assert rec.trail(dev, mark) == ["changed", "Initializing", "Ready"]
    driver.expose(dev)
    assert rec.wait(frame(dev)).pixels.shape == (1440, 2048)
    with pytest.raises(DriverError, match="not battery powered"):
        driver.set_battery(ids["supreme2"], 50)
    with pytest.raises(ValueError):
        driver.set_battery(dev, 150)


def test_unknown_device_is_a_driver_error(sim):
    driver, _, _ = sim()
    for call in (driver.arm, driver.disarm, driver.expose, driver.unplug_sensor,
                 driver.plug_sensor, driver.unplug_device, driver.plug_device):
        with pytest.raises(DriverError, match="unknown device"):
            call("no-such-device")


def test_a_failing_listener_does_not_stop_the_driver():
    rec, calls = Recorder(), []

    def emit(event):
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("listener bug")
        rec(event)

    driver = open_driver("sim://?models=select0", emit=emit, options=FAST)
    try:
        driver.start()
        dev = driver.devices()[0].device_id
        ready(driver, rec, dev)
        driver.expose(dev)
        rec.wait(frame(dev))
    finally:
        driver.close()


def test_close_twice_stops_the_thread():
    before = set(threading.enumerate())
    driver = open_driver("sim://", emit=Recorder(), options=FAST)
    driver.start()
    assert len(set(threading.enumerate()) - before) == 1
    dev = driver.devices()[0].device_id
    driver.close()
    driver.close()
    assert set(threading.enumerate()) - before == set()
    assert driver.devices() == []
    with pytest.raises(DriverError, match="closed"):
        driver.arm(dev)
    with pytest.raises(DriverError, match="closed"):
        driver.start()
