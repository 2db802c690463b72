"""The DICOM dataset builder: Part-10 round trip, the IOD's required attributes, UIDs, display choices."""
from __future__ import annotations

import re
import uuid
from datetime import timedelta, timezone

import numpy as np
import pydicom
import pytest

from sensord.daemon.forward.platforms import dicom, dicom_anatomy
from sensord.filters.lut import Lut, lut_map
from sensord.filters.pixel_hash import pixel_hash
from tests.support import images
from tests.support.delivery import make_delivery

UTC = timezone.utc

# Type 1 and 2 attributes of the modules of the Digital Intra-Oral X-Ray Image
# IOD, For Presentation (PS3.3 A.28.3), that apply to a single-frame image
# with no MPPS reference: SOP Common, Patient, General Study, General Series,
# DX Series, Intra-oral Series, General Equipment, General Image, Image Pixel,
# DX Anatomy Imaged, DX Image, DX Detector, Intra-oral Image, VOI LUT,
# Acquisition Context. 1C entries are listed where their condition holds.
TYPE_1 = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "Modality", "SeriesInstanceUID",
          "PresentationIntentType", "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns",
          "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelData", "ImageLaterality",
          "AnatomicRegionSequence", "ImageType", "PixelIntensityRelationship",
          "PixelIntensityRelationshipSign", "RescaleIntercept", "RescaleSlope", "RescaleType",
          "PresentationLUTShape", "LossyImageCompression", "BurnedInAnnotation", "ImagerPixelSpacing",
          "PositionerType", "WindowCenter", "WindowWidth",
          "PatientOrientation",              # 1C: no View Code Sequence is sent
          "PrimaryAnatomicStructureSequence",  # 1C: no Anatomic Region Modifier Sequence is sent
          "SpecificCharacterSet"]            # 1C: patient names may be any script
TYPE_2 = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber", "Manufacturer",
          "InstanceNumber", "ContentDate", "ContentTime", "DetectorType", "AcquisitionContextSequence"]


def build(tmp_path, *, context=None, info=None, pixels=None, image_id=None, **kwargs):
    item = make_delivery(tmp_path, context=context, image_id=image_id)
    image_info = {**item.image_info, **(info or {})}
    if pixels is None:
        pixels = images.decode(item.png_path.read_bytes())
    kwargs.setdefault("tz", UTC)
    ds = dicom.build_dataset(pixels, image_info, item.context, image_id=item.image_id, **kwargs)
    return item, pixels, ds


def missing_attributes(ds: pydicom.Dataset) -> list[str]:
    missing = [k for k in TYPE_1 if k not in ds or ds[k].value in (None, "", [], b"")]
    missing += [k for k in TYPE_2 if k not in ds]
    return missing


def test_part10_round_trip_keeps_pixels_and_tags(tmp_path):
    item, pixels, ds = build(tmp_path, institution="Clinic Nord", station="OP-2")
    data = dicom.to_bytes(ds)
    assert data[128:132] == b"DICM"
    back, back_pixels = dicom.read_pixels(data)
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back_pixels.dtype == np.uint16 and np.array_equal(back_pixels, pixels)
    assert pixel_hash(back_pixels, alg="MD5") == item.image_info["pixelHash"]
    expected = {
        "SOPClassUID": "1.2.840.10008.5.1.4.1.1.1.3", "Modality": "IO",
        "PresentationIntentType": "FOR PRESENTATION", "SpecificCharacterSet": "ISO_IR 192",
        "PatientID": "P-0001", "PatientName": "Doe^Jane", "PatientBirthDate": "19800402", "PatientSex": "F",
        "StudyDate": "20261123", "StudyDescription": "Bitewing", "ImageLaterality": "L",
        "Rows": 120, "Columns": 160, "BitsAllocated": 16, "BitsStored": 12, "HighBit": 11,
        "PixelRepresentation": 0, "SamplesPerPixel": 1, "Manufacturer": "Simradix",
        "ManufacturerModelName": "Simradix Supreme 2", "DeviceSerialNumber": "SU2-1",
        "InstitutionName": "Clinic Nord", "StationName": "OP-2", "PositionerType": "NONE",
        "ContentDate": "20261123", "ContentTime": "101500.000000",
        "AcquisitionDateTime": "20261123101500.000000+0000", "TimezoneOffsetFromUTC": "+0000",
        "SOPInstanceUID": f"2.25.{uuid.UUID(item.image_id).int}",
    }
    assert {k: back[k].value for k in expected} == expected
    assert list(back.SoftwareVersions) == ["2.4.1", "3.2.1", dicom.SOFTWARE]
    assert [float(v) for v in back.PixelSpacing] == [0.015, 0.015] == [float(v) for v in back.ImagerPixelSpacing]
    assert list(back.ImageType) == ["ORIGINAL", "PRIMARY", ""]


def test_every_required_attribute_of_the_iod_is_there(tmp_path):
    _, _, ds = build(tmp_path, context={"patientOrientation": ["L", "F"]})
    assert missing_attributes(ds) == []
    assert ds.RescaleIntercept == 0 and ds.RescaleSlope == 1 and ds.RescaleType == "US"
    assert ds.LossyImageCompression == "00" and ds.BurnedInAnnotation == "NO"


def test_without_a_tooth_the_standards_whole_dentition_terms_are_sent_not_a_made_up_tooth(tmp_path):
    _, _, ds = build(tmp_path, context={"laterality": None, "tooth": None})
    assert missing_attributes(ds) == ["PrimaryAnatomicStructureSequence"]     # 1C: the modifier is sent instead
    region = ds.AnatomicRegionSequence[0]
    assert region.CodeMeaning == "Teeth, gums and supporting structures"
    assert [(m.CodeValue, m.CodingSchemeDesignator, m.CodeMeaning)
            for m in region.AnatomicRegionModifierSequence] == [("261665006", "SCT", "Unknown")]
    assert ds.ImageLaterality == "B" and list(ds.PatientOrientation) == ["L", "F"]
    assert "ImageComments" not in ds and ds.DetectorType == ""
    given = build(tmp_path, context={"laterality": "R", "tooth": None})[2]
    assert given.ImageLaterality == "R"


@pytest.mark.parametrize("tooth, rotation, orientation", [
    ("36", 0, ["P", "F"]), ("16", 0, ["A", "F"]), ("11,21", 0, ["L", "F"]), ("43", 0, ["L", "F"]),
    ("13,14", 0, ["AL", "F"]), ("23,24", 0, ["PL", "F"]), ("85", 0, ["A", "F"]), (None, 0, ["L", "F"]),
    ("36", 90, ["H", "P"]), ("36", 180, ["A", "H"]), ("36", 270, ["F", "A"]), ("13,14", 90, ["H", "AL"]),
])
def test_patient_orientation_follows_the_tooth_and_the_rotation(tmp_path, tooth, rotation, orientation):
    acquisition = {"enable": True, "rotation": rotation, "binning": "Unbinned", "applyLut": False}
    _, _, ds = build(tmp_path, context={"tooth": tooth, "laterality": None},
                     info={"acquisitionInfo": acquisition})
    assert list(ds.PatientOrientation) == orientation
    given = build(tmp_path, context={"tooth": tooth, "patientOrientation": ["R", "H"]},
                  info={"acquisitionInfo": acquisition})[2]
    assert list(given.PatientOrientation) == ["R", "H"]


def test_study_time_study_id_series_and_instance_numbers_are_stable_and_known(tmp_path):
    item, pixels, ds = build(tmp_path)
    assert (ds.StudyTime, ds.InstanceNumber, ds.SeriesNumber) == ("101500", 101500, 1)
    assert re.fullmatch(r"[0-9A-F]{16}", ds.StudyID)
    again = dicom.build_dataset(pixels, item.image_info, dict(item.context), image_id=item.image_id, tz=UTC)
    assert (again.StudyID, again.InstanceNumber) == (ds.StudyID, ds.InstanceNumber)
    other_study = build(tmp_path, context={"studyDate": "2026-11-24"})[2]
    assert other_study.StudyID != ds.StudyID and "IssuerOfPatientID" not in ds
    numbers = {spec: build(tmp_path, info={"filter": spec})[2].SeriesNumber
               for spec in ("unmap", "select:edgePro", "supreme:general:70", "ae:endodontic:12.5")}
    assert numbers == {"unmap": 2, "select:edgePro": 3, "supreme:general:70": 4, "ae:endodontic:12.5": 5}


def test_the_same_image_gives_the_same_bytes(tmp_path):
    item, pixels, first = build(tmp_path)
    second = dicom.build_dataset(pixels, item.image_info, dict(item.context), image_id=item.image_id, tz=UTC)
    assert dicom.to_bytes(first) == dicom.to_bytes(second)


def test_uids_are_valid_and_group_a_visit(tmp_path):
    a = build(tmp_path)[2]
    b = build(tmp_path)[2]                                             # another image, same visit
    other_day = build(tmp_path, context={"studyDate": "2026-11-24"})[2]
    other_patient = build(tmp_path, context={"patientId": "P-0002"})[2]
    for ds in (a, b, other_day, other_patient):
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
            assert len(uid) <= 64 and re.fullmatch(r"2\.25\.[1-9][0-9]*", uid)
            assert dicom.is_valid_uid(uid)
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert (a.StudyInstanceUID, a.SeriesInstanceUID) == (b.StudyInstanceUID, b.SeriesInstanceUID)
    assert len({a.StudyInstanceUID, other_day.StudyInstanceUID, other_patient.StudyInstanceUID}) == 3
    accession = build(tmp_path, context={"accessionNumber": "ACC-7"})[2]
    assert accession.StudyInstanceUID != a.StudyInstanceUID and accession.AccessionNumber == "ACC-7"


def test_a_given_study_uid_is_used_and_a_bad_one_refused(tmp_path):
    assert build(tmp_path, context={"studyInstanceUid": "1.2.3.4"})[2].StudyInstanceUID == "1.2.3.4"
    with pytest.raises(ValueError, match="studyInstanceUid"):
        build(tmp_path, context={"studyInstanceUid": "1.2.03.x"})


def test_without_a_patient_id_each_image_is_its_own_study(tmp_path):
    a = build(tmp_path, context={"patientId": None})[2]
    b = build(tmp_path, context={"patientId": None})[2]
    assert a.StudyInstanceUID != b.StudyInstanceUID
    # A Patient ID of sensord's own, derived from the study, so no DICOMDIR key is missing and the
    # image is never filed under another patient's id; the issuer says whose id it is.
    assert re.fullmatch(r"sensord-[0-9a-f]{16}", a.PatientID) and a.PatientID != b.PatientID
    assert a.IssuerOfPatientID == "sensord"


def test_a_mapped_image_is_monochrome2_over_the_whole_16_bit_range(tmp_path):
    lut = Lut.from_info(images.LUT_INFO)
    raw = images.raw_image(120, 160)
    mapped = lut_map(raw, lut=lut)
    _, _, ds = build(tmp_path, info={"lutInfo": dict(images.LUT_INFO)}, pixels=mapped)
    assert (ds.PhotometricInterpretation, ds.PresentationLUTShape) == ("MONOCHROME2", "IDENTITY")
    assert (ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign) == ("LOG", -1)
    assert (ds.BitsStored, ds.HighBit) == (16, 15)
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (32768.0, 65536.0)
    # Dense tissue (low raw grays) is bright: high stored values under MONOCHROME2.
    assert mapped[raw == raw.min()].min() > mapped[raw == raw.max()].max()


def test_linear_grays_are_monochrome1_and_never_rewritten(tmp_path):
    raw = images.raw_image(120, 160)
    _, _, ds = build(tmp_path, info={"lutInfo": None}, pixels=raw)
    assert (ds.PhotometricInterpretation, ds.PresentationLUTShape) == ("MONOCHROME1", "INVERSE")
    assert (ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign) == ("LIN", 1)
    low, high = int(raw.min()), int(raw.max())
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (low + (high - low + 1) / 2, high - low + 1)
    assert np.array_equal(dicom.read_pixels(dicom.to_bytes(ds))[1], raw)


def test_an_all_zero_lut_info_is_an_unmapped_image(tmp_path):
    raw = images.raw_image(120, 160)
    image_id = str(uuid.uuid4())
    _, _, zero = build(tmp_path, info={"lutInfo": dict(images.ZERO_LUT_INFO)}, pixels=raw, image_id=image_id)
    _, _, none = build(tmp_path, info={"lutInfo": None}, pixels=raw, image_id=image_id)
    assert (zero.PhotometricInterpretation, zero.PixelIntensityRelationship) == ("MONOCHROME1", "LIN")
    assert dicom.to_bytes(zero) == dicom.to_bytes(none)


def test_a_map_that_does_not_invert_keeps_the_intensity_sign(tmp_path):
    rising = {**images.LUT_INFO, "minimumGray": 418, "maximumGray": 3612}
    mapped = lut_map(images.raw_image(120, 160), lut=Lut.from_info(rising))
    _, _, ds = build(tmp_path, info={"lutInfo": rising}, pixels=mapped)
    assert (ds.PhotometricInterpretation, ds.PixelIntensityRelationshipSign) == ("MONOCHROME2", 1)


def test_bits_stored_grows_when_the_grays_do_not_fit(tmp_path):
    pixels = np.full((4, 5), 5000, np.uint16)
    assert build(tmp_path, pixels=pixels)[2].BitsStored == 16          # bitsPerPixel says 12


@pytest.mark.parametrize("tooth, meanings, region, laterality", [
    ("11", ["Permanent maxillary right central incisor tooth"], "Maxilla", "R"),
    ("48", ["Mandibular right third molar tooth"], "Mandible", "R"),
    (32, ["Mandibular left lateral tooth"], "Mandible", "L"),
    ("55", ["Deciduous maxillary right second molar tooth"], "Maxilla", "R"),
    ("35, 36", ["Mandibular left second premolar tooth", "Mandibular left first molar tooth"], "Mandible", "L"),
    (["16", "26"], ["Permanent maxillary right first molar tooth", "Permanent maxillary left first molar tooth"],
     "Maxilla", "B"),
    ("13 43", ["Permanent maxillary right canine tooth", "Mandibular right canine tooth"],
     "Teeth, gums and supporting structures", "R"),
])
def test_teeth_are_coded_in_the_standard_context_groups(tmp_path, tooth, meanings, region, laterality):
    _, _, ds = build(tmp_path, context={"tooth": tooth, "laterality": None})
    assert [item.CodeMeaning for item in ds.PrimaryAnatomicStructureSequence] == meanings
    assert {item.CodingSchemeDesignator for item in ds.PrimaryAnatomicStructureSequence} == {"SCT"}
    assert ds.AnatomicRegionSequence[0].CodeMeaning == region
    assert ds.ImageLaterality == laterality


def test_the_tooth_table_covers_both_dentitions_once():
    assert len(dicom_anatomy.TOOTH_CODES) == 32 + 20
    assert len({code.value for code in dicom_anatomy.TOOTH_CODES.values()}) == 52
    assert all(q in "1234" for q, p in dicom_anatomy.TOOTH_CODES if p in "678")


def test_an_uncoded_tooth_is_kept_as_a_comment_only(tmp_path):
    _, _, ds = build(tmp_path, context={"tooth": "#19", "laterality": "right"})
    assert "PrimaryAnatomicStructureSequence" not in ds
    assert ds.ImageComments == "Tooth: #19" and ds.ImageLaterality == "R"


def test_times_are_written_in_the_given_zone(tmp_path):
    _, _, ds = build(tmp_path, tz=timezone(timedelta(hours=1)), context={"studyDate": None, "studyTime": "09:05"})
    assert (ds.ContentDate, ds.ContentTime, ds.TimezoneOffsetFromUTC) == ("20261123", "111500.000000", "+0100")
    assert (ds.StudyDate, ds.StudyTime) == ("20261123", "0905")


def test_a_filtered_copy_is_a_derived_image_in_its_own_series(tmp_path):
    original = str(uuid.uuid4())
    copies = {spec: str(uuid.uuid5(uuid.UUID(original), spec)) for spec in ("select:edgePro", "unmap")}
    _, _, orig = build(tmp_path, image_id=original, info={"id": original})
    derived = {spec: build(tmp_path, image_id=copy, info={"id": original, "filter": spec})[2]
               for spec, copy in copies.items()}
    for spec, ds in derived.items():
        assert list(ds.ImageType)[:2] == ["DERIVED", "PRIMARY"] and spec in ds.DerivationDescription
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == orig.SOPInstanceUID
        assert ds.StudyInstanceUID == orig.StudyInstanceUID
    assert len({orig.SeriesInstanceUID, *(ds.SeriesInstanceUID for ds in derived.values())}) == 3
    assert (orig.SeriesNumber, orig.ImageType[0], "SourceImageSequence" in orig) == (1, "ORIGINAL", False)


@pytest.mark.parametrize("context, field", [
    ({"birthDate": "02/04/1980"}, "context.birthDate"),
    ({"studyDate": "2026-13-01"}, "context.studyDate"),
    ({"studyTime": "25:00"}, "context.studyTime"),
    ({"patientId": "x" * 65}, "PatientID"),
    ({"studyDescription": "left\\right"}, "StudyDescription"),
    ({"patientOrientation": "up"}, "patientOrientation"),
])
@pytest.mark.filterwarnings("ignore:The value length")     # pydicom's own warning, before ours
def test_values_that_cannot_be_written_truthfully_are_refused(tmp_path, context, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        build(tmp_path, context=context)


def test_non_ascii_names_survive(tmp_path):
    _, _, ds = build(tmp_path, context={"patientName": "Müller^Jürgen"})
    assert str(dicom.read_pixels(dicom.to_bytes(ds))[0].PatientName) == "Müller^Jürgen"
