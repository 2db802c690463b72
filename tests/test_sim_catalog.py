"""sensord.drivers.sim_catalog: the sim:// URL grammar and the model catalogue."""
from __future__ import annotations

import uuid

import pytest

from sensord.drivers import sim_catalog as cat


def test_default_url_gives_three_devices_of_each_family():
    cfg = cat.parse_url("sim://")
    assert [d.key for d in cfg.devices] == ["supreme2", "velocity1w", "select0"]
    assert {d.sensor.family for d in cfg.devices} == {"Supreme", "Velocity", "Select"}
    assert {d.interface.interface_type for d in cfg.devices} == {"usb", "network"}
    assert (cfg.time_scale, cfg.dead_pixels, cfg.seed) == (1.0, 0, 0)


@pytest.mark.parametrize("n", [0, 1, 2, 12])
def test_devices_count_cycles_the_default_order_with_unique_serials(n):
    cfg = cat.parse_url(f"sim://?devices={n}")
    assert len(cfg.devices) == n
    assert len({d.serial for d in cfg.devices}) == n
    assert [d.key for d in cfg.devices[:2]] == list(cat.DEFAULT_ORDER[:min(n, 2)])


def test_models_list_repeats_get_their_own_serials():
    cfg = cat.parse_url("sim://?models=supreme2, velocity1w,supreme2")
    keys = [d.key for d in cfg.devices]
    assert keys == ["supreme2", "velocity1w", "supreme2"]
    assert cfg.devices[0].serial != cfg.devices[2].serial
    assert cfg.devices[1].interface.battery and not cfg.devices[0].interface.battery


def test_options_win_over_the_query():
    cfg = cat.parse_url("sim://?time_scale=0.5&seed=3&dead_pixels=7", {"time_scale": 0.01, "other": 1})
    assert (cfg.time_scale, cfg.seed, cfg.dead_pixels) == (0.01, 3, 7)


@pytest.mark.parametrize("url, word", [
    ("sim://?models=supreme3", "supreme3"),
    ("sim://?models=velocity1x", "velocity1x"),
    ("sim://?device=2", "device"),
    ("sim://?devices=2&models=select0", "not both"),
    ("sim://?devices=-1", "devices"),
    ("sim://?devices=two", "devices"),
    ("sim://?devices=99", "devices"),
    ("sim://?time_scale=-1", "time_scale"),
    ("sim://?time_scale=inf", "time_scale"),
    ("serial:///dev/ttyUSB0", "sim://"),
])
def test_bad_urls_are_value_errors_that_name_the_problem(url, word):
    with pytest.raises(ValueError, match=word):
        cat.parse_url(url)


def test_catalogue_sizes_are_realistic():
    for model in cat.SENSOR_MODELS.values():
        w_mm, h_mm = model.width * model.pixel_size_mm, model.height * model.pixel_size_mm
        # Active areas of intraoral sizes 0..2: roughly 24-36 mm by 18-26 mm, landscape.
        assert 18 <= w_mm <= 37 and 13 <= h_mm <= 26 and w_mm > h_mm
        assert 0.015 <= model.pixel_size_mm <= 0.02
        assert model.width % 2 == 0 and model.height % 2 == 0   # clean 2x2 binning
        assert model.bits in (12, 14)
    s2 = cat.SENSOR_MODELS["supreme2"]
    assert (s2.width, s2.height) == (2400, 1708)
    for family in ("supreme", "velocity", "select"):
        widths = [cat.SENSOR_MODELS[f"{family}{size}"].width for size in range(3)]
        assert widths == sorted(widths)
    assert not cat.SENSOR_MODELS["select1"].supports_binning
    assert cat.SENSOR_MODELS["velocity1"].supports_binning


def test_device_ids_are_uuid5_of_url_base_and_serial():
    a = cat.parse_url("sim://?devices=2")
    b = cat.parse_url("sim://?devices=3&time_scale=0.1")
    ids_a = [cat.device_id(a.base_url, d.serial) for d in a.devices]
    ids_b = [cat.device_id(b.base_url, d.serial) for d in b.devices]
    assert ids_a == ids_b[:2]            # adding a device renames no other
    assert uuid.UUID(ids_a[0]).version == 5
    other = cat.parse_url("sim://lab2?devices=2")
    assert cat.device_id(other.base_url, other.devices[0].serial) != ids_a[0]


def test_device_name_follows_the_sensor():
    spec = cat.device_spec("velocity1w")
    sensor = cat.make_sensor(spec.sensor, cat.sensor_serial(spec.sensor, spec.serial))
    with_sensor = cat.describe("sim://", spec, sensor, 50.0)
    without = cat.describe("sim://", spec, None, 50.0)
    assert with_sensor.name == f"Simradix Velocity 1: {sensor.serial_number}"
    assert "no sensor" in without.name and spec.serial in without.name
    assert with_sensor.device_id == without.device_id
    assert with_sensor.battery_percent == 50.0
    usb = cat.device_spec("select0")
    assert cat.describe("sim://", usb, None, 50.0).battery_percent is None


def test_readout_time_is_realistic():
    for key in ("supreme2", "select0", "velocity1"):
        spec = cat.device_spec(key)
        sensor = cat.make_sensor(spec.sensor, "x")
        t = cat.readout_seconds(spec.interface, sensor, binned=False)
        assert 0.25 <= t <= 0.9
        assert cat.readout_seconds(spec.interface, sensor, binned=True) < t
    wireless = cat.device_spec("supreme2w")
    sensor = cat.make_sensor(wireless.sensor, "x")
    assert cat.readout_seconds(wireless.interface, sensor, False) > \
        cat.readout_seconds(cat.INTERFACES["usb"], sensor, False)
