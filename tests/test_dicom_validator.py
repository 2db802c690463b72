"""Every kind of object sensord builds passes dciodvfy, the standard's own IOD validator, with no error or warning.

The objects are built as `platforms.dicomweb` builds them: the acquired image
(LUT-mapped, or linear when acquired without the map) and each filtered copy
the forwarder makes (`forward.delivery.filtered_image`: select, supreme, ae,
unmap), with and without teeth in the context, with and without a patient id,
at each sensor rotation. dciodvfy's whole output is shown on failure.
"""
from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timezone

import pytest

from sensord.daemon.forward import deidentify
from sensord.daemon.forward.delivery import filtered_image
from sensord.daemon.forward.filter_spec import parse
from sensord.daemon.forward.platforms import dicom, dicom_deid
from sensord.filters.lut import Lut, lut_map
from sensord.filters.pixel_hash import pixel_hash
from tests.support import images
from tests.support.delivery import make_delivery
from tests.support.dicom3tools import dciodvfy, problems, validate  # noqa: F401  (a fixture)

pytestmark = pytest.mark.process

KINDS = ["raw mapped", "raw linear", "select:edgePro", "supreme:general:70", "ae:endodontic:12.5", "unmap"]
CONTEXTS = {
    "teeth": {"tooth": "36", "laterality": "L"},
    "front teeth": {"tooth": "11,21", "laterality": None},
    "no teeth": {"tooth": None, "laterality": None},
}
KEY = b"0123456789abcdef0123456789abcdef"
# A patient described with every identifier the context can carry into the instance.
IDENTIFIED = {"patientId": "P-0001", "patientName": "Doe^Jane", "birthDate": "1980-04-02", "sex": "F",
              "referringPhysician": "Smith^Ann", "accessionNumber": "ACC-778812",
              "studyDescription": "Bitewing for Jane Doe", "studyDate": "2026-11-23", "tooth": "36",
              "laterality": "L"}


def build_object(tmp_path, kind: str, context: dict, rotation: int, dates: str | None = None):
    """The Part-10 bytes of one object, made as the DICOMweb adapter makes it (de-identified
    with ``deidentify_dates = dates`` when ``dates`` is given, as for ``deidentify = true``)."""
    item = make_delivery(tmp_path, context=context)
    info = {**item.image_info, "acquisitionInfo": {**item.image_info["acquisitionInfo"], "rotation": rotation}}
    pixels = images.raw_image(120, 160)
    if kind != "raw linear":                      # acquired with the display map, as by default
        pixels = lut_map(pixels, lut=Lut.from_info(images.LUT_INFO))
        info["lutInfo"] = dict(images.LUT_INFO)
        info["pixelHash"] = pixel_hash(pixels, alg="MD5")
        item.png_path.write_bytes(images.png16(pixels))
    image_id = item.image_id
    if not kind.startswith("raw"):
        png, info = filtered_image(item.png_path, info, parse(kind))
        pixels = images.decode(png)
        image_id = str(uuid.uuid5(uuid.UUID(item.image_id), kind))
    context = item.context
    if dates is not None:                         # what the forwarder hands a deidentifying target
        item = deidentify.Deidentifier(KEY, dates).apply(replace(item, image_info=info))
        context, info = item.context, item.image_info
    ds = dicom.build_dataset(pixels, info, context, image_id=image_id, tz=timezone.utc,
                             institution="Clinic Nord", station="OP-2")
    if dates is not None:
        dicom_deid.apply_profile(ds, dates=dates, pseudonym=context.get("patientId"))
    return ds, dicom.to_bytes(ds)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("patient", ["patient id", "no patient id"])
@pytest.mark.parametrize("teeth", list(CONTEXTS))
@pytest.mark.parametrize("kind", KINDS)
def test_dciodvfy_finds_no_error_and_no_warning(tmp_path, dciodvfy, kind, teeth, patient, rotation):  # noqa: F811
    context = {**CONTEXTS[teeth], **({} if patient == "patient id" else {"patientId": None})}
    ds, data = build_object(tmp_path, kind, context, rotation)
    path = tmp_path / "object.dcm"
    path.write_bytes(data)
    output = validate(dciodvfy, path)
    assert problems(output) == [], f"dciodvfy {kind}, {teeth}, {patient}, rotation {rotation}:\n{output}"
    assert "IntraoralImageForPresentation" in output
    assert len(ds.PatientOrientation) == 2 and ds.ImageLaterality in ("R", "L", "B")


@pytest.mark.parametrize("dates", deidentify.DATE_POLICIES)
@pytest.mark.parametrize("patient", ["identified", "no patient id"])
@pytest.mark.parametrize("kind", KINDS)
def test_dciodvfy_finds_no_error_and_no_warning_in_deidentified_copies(tmp_path, dciodvfy, kind, patient,  # noqa: F811
                                                                      dates):
    context = dict(IDENTIFIED) if patient == "identified" else {**CONTEXTS["teeth"], "patientId": None}
    ds, data = build_object(tmp_path, kind, context, 0, dates=dates)
    path = tmp_path / "object.dcm"
    path.write_bytes(data)
    output = validate(dciodvfy, path)
    assert problems(output) == [], f"dciodvfy de-identified ({dates}) {kind}, {patient}:\n{output}"
    assert "IntraoralImageForPresentation" in output
    assert ds.PatientIdentityRemoved == "YES" and b"Doe" not in data and b"P-0001" not in data
