"""filters.footprint: each estimate holds against the memory the code really takes.

The pixel budget trusts these numbers, so they are measured: peak resident
memory (VmHWM) in a fresh Python process, reset before each call, freed
memory handed back to the system in between (malloc_trim), on a 512x512
and a 2048x2048 image. A change that makes a filter hungrier fails here,
not in production.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sensord.filters import footprint

_MEASURE = r"""
import ctypes, gc, json, sys
import cv2
import numpy as np
from sensord import filters
from sensord.filters import codecs, png
from sensord.filters.lut import Lut
from tests.support.memory import peak_bytes, reset_peak

side = int(sys.argv[1])
lut = Lut(gamma=2.3, slope=65535.0, offset=0.0, total_grays=4096, minimum_gray=3612, maximum_gray=418)
image = filters.lut_map(np.random.default_rng(0).integers(0, 4096, (side, side), dtype=np.uint16), lut=lut)
up_filtered = png.encode_gray16(image, compression=1)        # Up rows: unfiltered by numpy
paeth_filtered = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH])[1].tobytes()
cases = {
    "decode up": lambda: png.decode_gray16(up_filtered, max_width=side, max_height=side),
    "decode paeth": lambda: png.decode_gray16(paeth_filtered, max_width=side, max_height=side),
    "unmap": lambda: filters.lut_unmap(image, lut=lut),
    "select": lambda: filters.select(image, lut=lut, mode="edgePro"),
    "supreme": lambda: filters.supreme(image, lut=lut, task="periodontic", sharpness=70.0),
    "ae": lambda: filters.ae(image, lut=lut, task="general", sharpness=70.0),
}
for media_type in codecs.MEDIA_TYPES:
    cases[media_type] = lambda m=media_type: codecs.encode(image, media_type=m, lut=lut)
trim = ctypes.CDLL("libc.so.6").malloc_trim
for fn in cases.values():          # first use: tables, imports, thread pools
    fn()
found = {}
for name, fn in cases.items():
    gc.collect()
    trim(0)
    before = reset_peak()
    result = fn()
    found[name] = peak_bytes() - before
    del result
print(json.dumps(found))
"""


def _measure(side: int) -> dict:
    run = subprocess.run([sys.executable, "-c", _MEASURE, str(side)], capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(run.stdout.splitlines()[-1])


@pytest.fixture(scope="module", params=[512, 2048], ids=lambda side: f"{side}px")
def measured(request) -> tuple[int, dict]:
    """(side, call name -> peak bytes it added)."""
    return request.param, _measure(request.param)


@pytest.mark.parametrize("case", ["decode up", "decode paeth"])
def test_decode(measured, case):
    side, found = measured
    assert found[case] <= footprint.decode_bytes(side, side), found


@pytest.mark.parametrize("name", sorted(footprint.FILTER_PER_PIXEL))
def test_filters(measured, name):
    side, found = measured
    estimate = footprint.FILTER_PER_PIXEL[name] * side * side + footprint.FIXED_BYTES
    assert found[name] <= estimate, found
    assert found[name] >= footprint.FILTER_PER_PIXEL[name] * side * side / 2, f"{name}: a gross overestimate {found}"


@pytest.mark.parametrize("media_type", ["image/png", "image/tiff", "image/jpeg", "image/gif"])
def test_encoders(measured, media_type):
    side, found = measured
    assert found[media_type] <= footprint.ENCODE_PER_PIXEL * side * side + footprint.FIXED_BYTES, found


def test_a_filter_call_counts_input_working_copies_and_encoding():
    fixed = footprint.FIXED_BYTES
    assert footprint.filter_call_bytes("select", 100, 10) == 1000 * (2 + 17) + fixed
    assert footprint.filter_call_bytes("unmap", 100, 10) == 1000 * (2 + 2 + 7) + fixed
    with pytest.raises(ValueError, match="blur"):
        footprint.filter_call_bytes("blur", 1, 1)
