"""Filter request bodies as both SDK generations write them (dsio.filter_params)."""
from __future__ import annotations

import pytest

from sensord.daemon.dsio.filter_params import FilterRequest, parse_request
from sensord.filters.lut import Lut
from tests.support import images

BETA_LUT = {"Gamma": 2.3, "Slope": 65535.0, "Offset": 0.0, "TotalGrays": 4096, "MinimumGray": 3612,
            "MaximumGray": 418}
ZERO_LUT = {"Gamma": 0.0, "Slope": 0.0, "Offset": 0.0, "TotalGrays": 0, "MinimumGray": 0, "MaximumGray": 0}


def lut_of(info: dict) -> Lut:
    return Lut.from_info({k[0].lower() + k[1:]: v for k, v in info.items()})


@pytest.mark.parametrize("name,body,options", [
    ("select", {"EnhancementMode": 3}, {"mode": "edgePro"}),
    ("supreme", {"Task": 4, "Sharpness": 70.0}, {"task": "hygiene", "sharpness": 70.0}),
    ("ae", {"task": "restorative", "sharpness": 5}, {"task": "restorative", "sharpness": 5.0}),
])
def test_released_sdk_bodies(name, body, options):
    assert parse_request(name, body) == FilterRequest(options=options)


def test_beta_bodies_carry_a_map_and_the_binning():
    select = parse_request("select", {"EnhancementMode": 3, "LutInfo": BETA_LUT})
    assert select.options == {"mode": "edgePro"} and select.lut == lut_of(BETA_LUT)
    supreme = parse_request("supreme", {"Task": 0, "BinningMode": 1, "Sharpness": 70, "LutInfo": BETA_LUT})
    assert supreme.options == {"task": "general", "sharpness": 70.0}
    assert supreme.binning == "Binned2x2" and supreme.lut == lut_of(BETA_LUT)
    assert parse_request("supreme", {"Task": 0, "BinningMode": 0, "Sharpness": 1}).binning == "Unbinned"
    ae = parse_request("ae", {"Task": 0, "Sharpness": 70, "LutInfo": None})
    assert ae.lut is None and ae.options == {"task": "general", "sharpness": 70.0}


@pytest.mark.parametrize("body", [None, {}, {"lutInfo": None}, ZERO_LUT, {"LutInfo": ZERO_LUT}])
def test_unmap_without_a_map_in_the_body(body):
    assert parse_request("unmap", body) == FilterRequest()


@pytest.mark.parametrize("body", [BETA_LUT, {"LutInfo": BETA_LUT}, {"lutInfo": images.LUT_INFO}])
def test_unmap_with_a_map_in_the_body(body):
    assert parse_request("unmap", body).lut == Lut.from_info(images.LUT_INFO) == lut_of(BETA_LUT)


@pytest.mark.parametrize("name,body,words", [
    ("select", {"EnhancementMode": 3, "BinningMode": 0}, "unknown parameter 'BinningMode'"),
    ("ae", {"Task": 0, "Sharpness": 1, "BinningMode": 1}, "unknown parameter 'BinningMode'"),
    ("select", {"EnhancementMode": 3, "Colour": 1}, "unknown parameter 'Colour'"),
    ("unmap", {"Gamma": 2.3, "Colour": 1}, "unknown parameter 'Colour'"),
    ("unmap", {"Gamma": 2.3}, "slope is required"),
    ("supreme", {"Task": 0, "Sharpness": 1, "BinningMode": 2}, "binningMode"),
    ("select", {"EnhancementMode": 0, "LutInfo": {**BETA_LUT, "TotalGrays": 1}}, "lutInfo"),
    ("select", [3], "JSON object"),
])
def test_bad_bodies_say_what_is_wrong(name, body, words):
    with pytest.raises(ValueError, match=words):
        parse_request(name, body)
