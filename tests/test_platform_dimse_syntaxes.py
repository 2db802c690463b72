"""The dimse room's pure parts: transfer syntaxes by name and encoding for them, what
statuses mean, and the storage commitment request and report datasets."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless

from sensord.daemon.dimse import statuses, syntaxes
from sensord.daemon.dimse import storage_commitment as sc
from sensord.daemon.forward.platforms import dicom
from tests.support import images
from tests.support.delivery import make_delivery


@pytest.fixture
def instance(tmp_path):
    item = make_delivery(tmp_path, height=48, width=64)
    pixels = images.decode(item.png_path.read_bytes())
    return dicom.build_dataset(pixels, item.image_info, item.context, image_id=item.image_id), pixels


@pytest.mark.parametrize("name", list(syntaxes.NAMES))
def test_encoding_keeps_the_instance_and_its_pixels(instance, name):
    ds, pixels = instance
    native = ds.PixelData
    encoded = syntaxes.encode(ds, name)
    assert encoded.SOPInstanceUID == ds.SOPInstanceUID == encoded.file_meta.MediaStorageSOPInstanceUID
    assert encoded.file_meta.TransferSyntaxUID == syntaxes.uid_of(name)
    assert np.array_equal(encoded.pixel_array, pixels)
    assert ds.PixelData == native and not hasattr(ds, "file_meta")    # the original is left as it was


def test_pydicom_compress_alone_would_change_the_uid(instance):
    """The trap syntaxes.encode avoids: compress() makes a new SOP Instance UID by default."""
    ds = copy.deepcopy(instance[0])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
    assert ds.SOPInstanceUID != instance[0].SOPInstanceUID


def test_jpeg_ls_is_smaller_than_native(instance):
    ds, _ = instance
    assert len(syntaxes.part10(syntaxes.encode(ds, "jpeg-ls-lossless"))) < \
        len(syntaxes.part10(syntaxes.encode(ds, "explicit-vr-little-endian")))


def test_an_unknown_name_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="jpeg-ls-lossless"):
        syntaxes.uid_of("jpeg-2000")
    assert syntaxes.name_of(JPEGLSLossless) == "jpeg-ls-lossless"


@pytest.mark.parametrize("code, meaning", [
    (0x0000, "success"), (0x0111, "success"), (0xB000, "warning"), (0xB007, "warning"), (0x0107, "warning"),
    (0xA700, "retry"), (0xA7FF, "retry"), (0x0110, "retry"), (0x0213, "retry"), (0xFE00, "retry"),
    (0xA900, "permanent"), (0xC000, "permanent"), (0xCFFF, "permanent"), (0x0122, "permanent"),
    (0x0124, "permanent"), (0x0112, "permanent"), (0x0123, "permanent"), (0x1234, "permanent"),
])
def test_statuses_mean_what_the_table_says(code, meaning):
    assert statuses.outcome(code).value == meaning
    assert statuses.describe(code) == f"0x{code:04X} ({meaning})"


def test_a_request_and_its_report():
    request = sc.request("2.25.5", [(dicom.SOP_CLASS, "1.2.3"), (dicom.SOP_CLASS, "1.2.4")])
    assert request.TransactionUID == "2.25.5"
    assert [r.ReferencedSOPInstanceUID for r in request.ReferencedSOPSequence] == ["1.2.3", "1.2.4"]
    info = Dataset()
    info.TransactionUID = "2.25.5"
    info.ReferencedSOPSequence = Sequence([request.ReferencedSOPSequence[0]])
    failed = copy.deepcopy(request.ReferencedSOPSequence[1])
    failed.FailureReason = 0x0112
    info.FailedSOPSequence = Sequence([failed])
    report = sc.parse_report(sc.EVENT_SOME_FAILED, info)
    assert (report.transaction, report.committed, report.failed) == ("2.25.5", {"1.2.3"}, {"1.2.4": 0x0112})
    assert "0x0112" in report.failure_text("1.2.4") and "no such instance" in report.failure_text("1.2.4")


@pytest.mark.parametrize("event_type, info", [(3, Dataset()), (1, None), (1, Dataset())])
def test_what_is_no_report_is_refused(event_type, info):
    with pytest.raises(ValueError):
        sc.parse_report(event_type, info)
