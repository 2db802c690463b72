"""A PNG that Orthanc made is taken as it is.

Orthanc 1.10 ends its /image-uint16 PNGs with two IEND chunks. A clinic tool
that takes pixels out of its archive and hands them to the Filters API must
not be refused for that; the pixels stored are Orthanc's, bit for bit.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from sensord.filters import png
from tests.support import images
from tests.support.orthanc import archive, orthanc  # noqa: F401  (fixtures)

pytestmark = pytest.mark.process

INTRAORAL = "1.2.840.10008.5.1.4.1.1.1.3"      # Digital Intra-Oral X-Ray, for presentation


def _dicom(pixels: np.ndarray) -> bytes:
    uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = INTRAORAL, uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = INTRAORAL, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = "PNG-1", "IO"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_an_orthanc_png_is_accepted_with_its_pixels(serve, archive):  # noqa: F811
    pixels = images.raw_image(48, 64, seed=3)
    with archive.rest() as rest:
        stored = rest.post(f"{archive.base}/instances", data=_dicom(pixels),
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
