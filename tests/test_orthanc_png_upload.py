"""A PNG that Orthanc made is taken as it is.

Orthanc 1.10 ends its /image-uint16 PNGs with two IEND chunks. A clinic tool
that takes pixels out of its archive and hands them to the Filters API must
not be refused for that; the pixels stored are Orthanc's, bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

from sensord.filters import png
from tests.support import images
from tests.support.orthanc import archive, dicom_file, orthanc  # noqa: F401  (fixtures)

pytestmark = pytest.mark.process


def test_an_orthanc_png_is_accepted_with_its_pixels(serve, archive):  # noqa: F811
    pixels = images.raw_image(48, 64, seed=3)
    with archive.rest() as rest:
        stored = rest.post(f"{archive.base}/instances", data=dicom_file(pixels),
                           headers={"Content-Type": "application/dicom"}, timeout=10)
        assert stored.ok, stored.text
        theirs = rest.get(f"{archive.base}/instances/{stored.json()['ID']}/image-uint16",
                          headers={"Accept": "image/png"}, timeout=10).content
    assert theirs.count(b"IEND") == 2 and theirs[:8] == png.SIGNATURE

    srv = serve()
    created = srv.http.post(srv.url("/api/dsio/filters/v1/images"),
                            files=images.upload_files(images.image_info(), theirs))
    assert created.status_code == 201, created.text
    back = srv.http.get(srv.url(f"/api/dsio/filters/v1/images/{created.json()['id']}/media"))
    assert back.status_code == 200
    assert np.array_equal(png.decode_gray16(back.content, max_width=4096, max_height=4096), pixels)
