"""One acquired image as a DICOM Digital Intra-Oral X-Ray Image, built with pydicom.

Pure: pixels, ImageInfo and context in, a ``pydicom.Dataset`` out (and
``to_bytes`` for the Part-10 file, explicit VR little endian). No I/O, no
clock: every value derives from the inputs, so each attempt at a delivery
sends the same bytes.

Choices (PS3.3 A.28.3, the modules of "Digital Intra-Oral X-Ray Image
Storage - For Presentation", SOP Class 1.2.840.10008.5.1.4.1.1.1.3):

- **For Presentation, always.** A LUT-mapped image is the display image. An
  unmapped one is the detector's linear signal; it is still sent For
  Presentation, described so a viewer shows it right (photometric
  interpretation below, and a window over its gray range), because archives
  and viewers in dental practices display For Presentation objects and often
  ignore For Processing ones. The pixels themselves are never changed: the
  archive keeps exactly the grays that were hashed (``pixelHash``).
- **Photometric interpretation follows what the grays mean, not a rewrite.**
  The display map (``lutInfo``) sends dense tissue to high values (the DSIO
  map inverts: Xmin > Xmax), so a mapped image is MONOCHROME2 (IDENTITY
  presentation LUT, Pixel Intensity Relationship Sign -1). Linear grays
  (no lutInfo: acquired without the map, or the ``unmap`` copy) rise with
  dose, so dense tissue has low values: MONOCHROME1 (INVERSE, sign +1).
  Inverting the pixels instead would make the archived grays differ from
  the hashed ones.
- **Pixel Intensity Relationship**: LIN for linear grays; LOG for mapped ones
  (the DX IOD allows only these two; the DSIO map is a non-linear, gamma
  curve, and LOG is the IOD's non-linear term).
- **Bits Stored**: ``bitsPerPixel`` for linear grays that fit in it; 16 for
  mapped images, whose map spans the 16-bit range.
- **Anatomy**: the tooth from the context in ISO 3950 (FDI) notation ("36",
  a list, or "35,36") becomes Primary Anatomic Structure Sequence items
  from CID 4018 (permanent) / 4019 (deciduous), SNOMED CT codes as pydicom
  ships them; the Anatomic Region Sequence (CID 4016) is Maxilla or
  Mandible when all teeth are in one jaw, else "Teeth, gums and supporting
  structures". Image Laterality comes from the context's laterality, else
  from the teeth's quadrants (R, L or B).
- **No tooth: the standard's whole-dentition terms, never a made-up tooth
  or side.** The Intra-oral Image module (PS3.3 C.8.11.9) makes Image
  Laterality type 1 (R, L or B, "both, i.e. midline") and needs either
  Primary Anatomic Structure Sequence (the teeth) or an Anatomic Region
  Modifier Sequence (CID 4017, nested in the region item). Without a coded
  tooth the region sent is CID 4016's "Teeth, gums and supporting
  structures" (the whole dentition), its laterality is B, the laterality of
  that bilateral region (the context's laterality wins when given), and the
  modifier is SNOMED CT 261665006 "Unknown" (the qualifier the standard uses
  throughout for a value not known; CID 4017 is a Defined group, so a code
  outside it is allowed), not one of CID 4017's tooth-type regions.
- **Patient Orientation** (PS3.3 C.7.6.1.1.1; type 1C in the DX Image
  module C.8.11.3 as no View Code Sequence is sent): the direction of the
  rows, then of the columns, for the image as dental viewers mount it:
  labial mounting (the ADA convention, PS3.17's dental views: the viewer
  faces the patient, crowns toward the occlusal plane, the patient's head
  up). The sensor's frame at ``acquisitionInfo.rotation`` 0 is taken as
  that upright view; the rotation (clockwise) turns it. Upright, the
  columns run toward the feet (F) for either jaw; the rows run toward the
  patient's left (L) for incisors and canines (seen from the front),
  anterior (A) for posterior teeth on the right and posterior (P) on the
  left (seen from the cheek, mesial toward the midline), AL / PL for a
  right / left image that spans both. Without a coded tooth, the whole
  dentition seen from the front: L\\F before rotation. The context's
  ``patientOrientation`` wins when given.
- **Unknown stays empty otherwise**: Detector Type (type 2) is empty, as
  ImageInfo does not say whether the sensor is a scintillator or a direct
  converter ("DIGITAL" is not one of the standard's terms).
- **Identifiers for a DICOMDIR** (PS3.3 F.5, the keys dciodvfy checks),
  stable, derived from what is known: Study Time is the context's
  ``studyTime``, else the acquisition time (``createdOn``), so it is the
  first image's time only when that image is the one the archive keeps;
  Study ID (SH, 16) the first 16 hex digits of uuid5(Study Instance UID);
  Series Number 1 for the acquired image, 2 unmap, 3 select, 4 supreme,
  5 ae (6 another filter), each in its own series; Instance Number the
  acquisition time of day as HHMMSS (images sort as taken; a filtered copy
  keeps its source's). Without a ``patientId``, Patient ID is
  ``sensord-`` + 16 hex digits of uuid5(Study Instance UID), with Issuer of
  Patient ID ``sensord``, so the image is never filed under another
  patient's id and the made-up id says whose it is; the de-identification
  profile replaces it like any other.
- **UIDs**, all ``2.25.<decimal of a UUID>`` (PS3.5 B.2), <= 44 characters:
  SOP Instance from ``image_id``; Study from the context's
  ``studyInstanceUid`` if given, else uuid5(patientId, studyDate,
  accessionNumber), so the images of one visit group (without a patientId,
  each image is its own study); Series from the study, the sensor's serial
  number and the filter (a filtered copy is a DERIVED image, in a series of
  its own, that references the acquired one).
- **Times**: ``createdOn`` (UTC) converted to ``tz`` (default: this
  machine's zone, the clinic's), with Timezone Offset From UTC.
"""
from __future__ import annotations

import io
import re
import uuid
from datetime import date, datetime, timezone, tzinfo

import numpy as np
import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VM
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import validate_value

from sensord.daemon.dsio.imageinfo import lut_from_info

SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.3"      # Digital Intra-Oral X-Ray Image Storage - For Presentation
NAMESPACE = uuid.UUID("9a5cabb1-f489-4c8e-a195-e3b30783b871")   # sensord's, for uuid5 UIDs
SOFTWARE = "sensord 0.1"
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"     # Modality Performed Procedure Step

# ISO 3950: quadrant -> (jaw, patient side, deciduous); position -> tooth words.
_QUADRANTS = {1: ("maxillary", "right", False), 2: ("maxillary", "left", False),
              3: ("mandibular", "left", False), 4: ("mandibular", "right", False),
              5: ("maxillary", "right", True), 6: ("maxillary", "left", True),
              7: ("mandibular", "left", True), 8: ("mandibular", "right", True)}
_PERMANENT = ("central incisor", "lateral", "canine", "first premolar", "second premolar",
              "first molar", "second molar", "third molar")
_DECIDUOUS = ("central incisor", "lateral incisor", "canine", "first molar", "second molar")


def _tooth_codes() -> dict[str, object]:
    """ISO 3950 tooth number -> pydicom Code, matched on the code meanings of CID 4018/4019."""
    table = {}
    for cid, deciduous in ((codes.cid4018, False), (codes.cid4019, True)):
        concepts = [getattr(cid, name) for name in cid.dir()]
        for quadrant, (jaw, side, baby) in _QUADRANTS.items():
            if baby != deciduous:
                continue
            for position, words in enumerate(_DECIDUOUS if baby else _PERMANENT, start=1):
                found = [c for c in concepts if f"{jaw} {side} {words}" in c.meaning.lower()]
                if len(found) == 1:
                    table[f"{quadrant}{position}"] = found[0]
    return table


TOOTH_CODES = _tooth_codes()


def uid_from_uuid(value: uuid.UUID) -> str:
    return f"2.25.{value.int}"


def instance_uid(image_id: str) -> str:
    try:
        return uid_from_uuid(uuid.UUID(image_id))
    except ValueError:
        return uid_from_uuid(uuid.uuid5(NAMESPACE, f"image\0{image_id}"))


def is_valid_uid(uid: str) -> bool:
    return (isinstance(uid, str) and 0 < len(uid) <= 64
            and re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*", uid) is not None)


def study_uid(context: dict, *, image_id: str, study_date: str) -> str:
    given = context.get("studyInstanceUid") or context.get("studyInstanceUID")
    if given:
        if not is_valid_uid(str(given)):
            raise ValueError(f"context.studyInstanceUid is not a valid UID: {given!r}")
        return str(given)
    patient = _text(context.get("patientId"))
    if not patient:
        return uid_from_uuid(uuid.uuid5(NAMESPACE, f"study-of-image\0{image_id}"))
    key = "\0".join(("study", patient, study_date, _text(context.get("accessionNumber"))))
    return uid_from_uuid(uuid.uuid5(NAMESPACE, key))


def series_uid(study: str, image_info: dict) -> str:
    serial = _text((image_info.get("sensorInfo") or {}).get("serialNumber"))
    return uid_from_uuid(uuid.uuid5(NAMESPACE, "\0".join(("series", study, serial, _filter(image_info)))))


def build_dataset(pixels: np.ndarray, image_info: dict, context: dict, *, image_id: str,
                  institution: str = "", station: str = "", tz: tzinfo | None = None) -> Dataset:
    """The DICOM dataset of one image (see the module docstring for the choices).

    Parameters
    ----------
    pixels : (rows, columns) ndarray of uint16
    image_info : dict
        The ImageInfo that describes `pixels` (createdOn, bitsPerPixel,
        pixelSizeX/Y, lutInfo, sensorInfo, deviceInfo, acquisitionInfo); for
        a filtered copy, as the forwarder makes it: ``filter`` names the
        filter, ``id`` stays the acquired image's, ``lutInfo`` is dropped by
        ``unmap``.
    context : dict
        patientId, patientName, birthDate, sex, studyDate, studyTime,
        studyDescription, accessionNumber, referringPhysician, laterality,
        tooth, studyInstanceUid, patientOrientation, requestedProcedureId,
        requestedProcedureDescription, scheduledProcedureStepId,
        scheduledProcedureStepDescription, performedProcedureStepUid; all
        optional.
    image_id : str
        Stable id of this image (a UUID): the SOP Instance UID derives from it.
    tz : tzinfo, optional
        Zone of the written dates and times; default: this machine's.

    Raises
    ------
    ValueError
        For a value that cannot be written truthfully (a date that is not a
        date, text too long for its VR...), naming the field.
    """
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise ValueError("pixels must be a 2-D uint16 array")
    lut = lut_from_info(image_info)
    created = _created(image_info.get("createdOn"), tz)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SOP_CLASS
    ds.SOPInstanceUID = instance_uid(image_id)
    ds.InstanceCreationDate, ds.InstanceCreationTime = created.strftime("%Y%m%d"), created.strftime("%H%M%S.%f")
    ds.TimezoneOffsetFromUTC = created.strftime("%z")
    _set_patient_and_study(ds, context, image_id=image_id, created=created)
    _set_series_and_equipment(ds, image_info, institution=institution, station=station)
    _set_request(ds, context)
    _set_performed_step(ds, context)
    _set_image(ds, image_info, context, image_id=image_id, created=created)
    _set_display(ds, pixels, lut)
    _set_pixels(ds, pixels, image_info, mapped=lut is not None)
    _set_detector(ds, image_info)
    _set_anatomy(ds, context)
    ds.AcquisitionContextSequence = Sequence()
    _validate(ds)
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """The Part-10 file of `ds`: preamble, file meta, explicit VR little endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = "SENSORD_0_1"
    ds.file_meta = meta
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def read_pixels(data: bytes) -> tuple[Dataset, np.ndarray]:
    """Parse a Part-10 file and decode its (single-frame, grayscale) pixels."""
    ds = pydicom.dcmread(io.BytesIO(data))
    return ds, np.asarray(ds.pixel_array)


# -- modules ----------------------------------------------------------------
def _set_patient_and_study(ds: Dataset, context: dict, *, image_id: str, created: datetime) -> None:
    """Patient and General Study modules."""
    ds.PatientName = _text(context.get("patientName"))
    ds.PatientID = _text(context.get("patientId"))
    ds.PatientBirthDate = _date(context.get("birthDate"), "context.birthDate")
    ds.PatientSex = _sex(context.get("sex"))
    ds.StudyDate = _date(context.get("studyDate"), "context.studyDate") or created.strftime("%Y%m%d")
    ds.StudyTime = _time(context.get("studyTime"), "context.studyTime") or created.strftime("%H%M%S")
    ds.StudyInstanceUID = study_uid(context, image_id=image_id, study_date=ds.StudyDate)
    if not ds.PatientID:                  # see the module docstring: never another patient's id
        ds.PatientID = "sensord-" + uuid.uuid5(NAMESPACE, f"patient\0{ds.StudyInstanceUID}").hex[:16]
        ds.IssuerOfPatientID = "sensord"
    ds.ReferringPhysicianName = _text(context.get("referringPhysician"))
    ds.StudyID = uuid.uuid5(NAMESPACE, f"study-id\0{ds.StudyInstanceUID}").hex[:16].upper()
    ds.AccessionNumber = _text(context.get("accessionNumber"))
    if context.get("studyDescription"):
        ds.StudyDescription = _text(context["studyDescription"])


def _set_series_and_equipment(ds: Dataset, image_info: dict, *, institution: str, station: str) -> None:
    """General, DX and Intra-oral Series; General Equipment (the sensor is the device)."""
    sensor = image_info.get("sensorInfo") or {}
    link = image_info.get("deviceInfo") or {}
    ds.Modality = "IO"
    ds.SeriesInstanceUID = series_uid(ds.StudyInstanceUID, image_info)
    ds.SeriesNumber = _SERIES_NUMBERS.get(_filter(image_info).split(":")[0], 6)
    if _filter(image_info) != "raw":
        ds.SeriesDescription = f"sensord filter {_filter(image_info)}"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = _text(sensor.get("brand"))
    for keyword, value in (("InstitutionName", institution), ("StationName", station),
                           ("ManufacturerModelName", sensor.get("modelName")),
                           ("DeviceSerialNumber", sensor.get("serialNumber"))):
        if value:
            setattr(ds, keyword, _text(value))
    ds.SoftwareVersions = [v for v in (_text(sensor.get("version")), _text(link.get("version")), SOFTWARE) if v]


# context key -> keyword in a Request Attributes Sequence item (the worklist's scheduled step).
_REQUEST = {"requestedProcedureId": "RequestedProcedureID", "scheduledProcedureStepId": "ScheduledProcedureStepID",
            "requestedProcedureDescription": "RequestedProcedureDescription",
            "scheduledProcedureStepDescription": "ScheduledProcedureStepDescription"}


def _set_request(ds: Dataset, context: dict) -> None:
    """General Series: the Request Attributes Sequence, one item, when the context names the
    requested procedure or the scheduled step (a worklist-bound session's images do)."""
    item = Dataset()
    for key, keyword in _REQUEST.items():
        if _text(context.get(key)):
            setattr(item, keyword, _text(context[key]))
    if len(item):
        ds.RequestAttributesSequence = Sequence([item])


def performed_step_id(step_uid: str) -> str:
    """Performed Procedure Step ID (SH, 16) of a step: stable, from its UID (the N-CREATE sends it too)."""
    return uuid.uuid5(NAMESPACE, f"pps-id\0{step_uid}").hex[:16].upper()


def _set_performed_step(ds: Dataset, context: dict) -> None:
    """General Series: the MPPS step the series was made in (forward/rules.py names it for a
    bound session when MPPS is on). Its start is left out: the step starts with its first image,
    which a later image's context does not know, and a guess would contradict the N-CREATE."""
    step_uid = _text(context.get("performedProcedureStepUid"))
    if not step_uid:
        return
    ref = Dataset()
    ref.ReferencedSOPClassUID = MPPS_SOP_CLASS
    ref.ReferencedSOPInstanceUID = step_uid
    ds.ReferencedPerformedProcedureStepSequence = Sequence([ref])
    ds.PerformedProcedureStepID = performed_step_id(step_uid)


def _set_image(ds: Dataset, image_info: dict, context: dict, *, image_id: str, created: datetime) -> None:
    """General Image and the DX Image attributes that do not depend on the pixels."""
    spec = _filter(image_info)
    ds.InstanceNumber = int(created.strftime("%H%M%S"))
    ds.ContentDate, ds.ContentTime = created.strftime("%Y%m%d"), created.strftime("%H%M%S.%f")
    ds.AcquisitionDateTime = created.strftime("%Y%m%d%H%M%S.%f%z")
    ds.ImageType = ["ORIGINAL" if spec == "raw" else "DERIVED", "PRIMARY", ""]
    ds.PatientOrientation = (_orientation(context.get("patientOrientation"))
                             or _intraoral_orientation(context, image_info))
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    if spec != "raw":
        ds.DerivationDescription = f"sensord filter {spec} applied to the acquired image"
        original = _text(image_info.get("id"))
        if original and original != image_id:
            source = Dataset()
            source.ReferencedSOPClassUID = SOP_CLASS
            source.ReferencedSOPInstanceUID = instance_uid(original)
            ds.SourceImageSequence = Sequence([source])


def _set_display(ds: Dataset, pixels: np.ndarray, lut) -> None:
    """Photometric interpretation, intensity relationship and a window (VOI LUT module)."""
    if lut is not None:                   # mapped: dense tissue bright
        ends = (lut.offset, lut.offset + lut.slope)
        low, high = max(0.0, min(ends)), min(65535.0, max(ends))
        ds.PhotometricInterpretation, ds.PresentationLUTShape = "MONOCHROME2", "IDENTITY"
        inverting = lut.slope * (lut.maximum_gray - lut.minimum_gray) < 0     # the usual DSIO map
        ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LOG", -1 if inverting else 1
        ds.WindowCenterWidthExplanation = "display map output range"
    else:                                 # linear: grays rise with dose, dense tissue dark
        low, high = float(pixels.min(initial=65535)), float(pixels.max(initial=0))
        ds.PhotometricInterpretation, ds.PresentationLUTShape = "MONOCHROME1", "INVERSE"
        ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
        ds.WindowCenterWidthExplanation = "image gray range"
    width = max(1.0, high - low + 1)      # PS3.3 C.11.2.1.2: low shows as one end, high as the other
    ds.WindowCenter = _ds_number(low + width / 2)
    ds.WindowWidth = _ds_number(width)


def _set_pixels(ds: Dataset, pixels: np.ndarray, image_info: dict, *, mapped: bool) -> None:
    """Image Pixel module: the grays as they are, little endian."""
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    bits = image_info.get("bitsPerPixel")
    fits = (not mapped and isinstance(bits, int) and not isinstance(bits, bool) and 8 <= bits <= 16
            and int(pixels.max(initial=0)) < (1 << bits))
    ds.BitsStored = bits if fits else 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels).astype("<u2").tobytes()


def _set_detector(ds: Dataset, image_info: dict) -> None:
    """DX Detector module."""
    given = [image_info.get("pixelSizeY"), image_info.get("pixelSizeX")]     # row spacing first
    sizes = [v for v in given if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0]
    if len(sizes) == len(given):
        ds.ImagerPixelSpacing = [_ds_number(v) for v in sizes]
        ds.PixelSpacing = ds.ImagerPixelSpacing     # equal: measured at the detector plane
    else:
        ds.ImagerPixelSpacing = ""
    ds.DetectorType = ""
    serial = (image_info.get("sensorInfo") or {}).get("serialNumber")
    if serial:
        ds.DetectorID = _text(serial)
    binning = (image_info.get("acquisitionInfo") or {}).get("binning")
    if binning in ("Unbinned", "Binned2x2"):
        ds.DetectorBinning = [1, 1] if binning == "Unbinned" else [2, 2]


def _set_anatomy(ds: Dataset, context: dict) -> None:
    """Intra-oral Image and DX Anatomy Imaged modules."""
    ds.PositionerType = "NONE"
    teeth = _teeth(context.get("tooth"))
    coded = [t for t in teeth if t in TOOTH_CODES]
    jaws = {_QUADRANTS[int(t[0])][0] for t in coded}
    region = (codes.cid4016.Maxilla if jaws == {"maxillary"} else codes.cid4016.Mandible
              if jaws == {"mandibular"} else codes.cid4016.TeethGumsAndSupportingStructures)
    region_item = _code_item(region)
    if coded:
        ds.PrimaryAnatomicStructureSequence = Sequence([_code_item(TOOTH_CODES[t]) for t in coded])
    else:                                 # PS3.3 C.8.11.9: a modifier when no tooth is sent
        region_item.AnatomicRegionModifierSequence = Sequence([_code_item(codes.SCT.Unknown)])
    ds.AnatomicRegionSequence = Sequence([region_item])
    if teeth:
        ds.ImageComments = "Tooth: " + ", ".join(teeth)
    laterality = _laterality(context.get("laterality"))
    if not laterality and coded:
        sides = {_QUADRANTS[int(t[0])][1] for t in coded}
        laterality = "B" if len(sides) > 1 else "R" if sides == {"right"} else "L"
    ds.ImageLaterality = laterality or "B"     # no tooth: the whole dentition, a bilateral region


_SERIES_NUMBERS = {"raw": 1, "unmap": 2, "select": 3, "supreme": 4, "ae": 5}
_OPPOSITE = str.maketrans("APRLHF", "PALRFH")


def _intraoral_orientation(context: dict, image_info: dict) -> list[str]:
    """Patient Orientation of the image as mounted labially, turned by the acquisition's rotation."""
    coded = [t for t in _teeth(context.get("tooth")) if t in TOOTH_CODES]
    sides = {_QUADRANTS[int(t[0])][1] for t in coded}
    posterior = {int(t[1]) >= 4 for t in coded}       # premolars, molars (deciduous: molars)
    row = "L"                             # front view: incisors, canines, no tooth, or both sides
    if len(sides) == 1 and True in posterior:
        row = "A" if sides == {"right"} else "P"
        if False in posterior:            # canine to premolars: around the arch's corner
            row += "L"
    column = "F"                          # upright: the patient's head at the top
    turns = _rotation(image_info) // 90
    for _ in range(turns):                # 90 degrees clockwise: (row, column) -> (-column, row)
        row, column = column.translate(_OPPOSITE), row
    return [row, column]


def _rotation(image_info: dict) -> int:
    value = (image_info.get("acquisitionInfo") or {}).get("rotation")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in (0, 90, 180, 270):
        return 0
    return int(value)


def _code_item(code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _teeth(raw) -> list[str]:
    if raw is None or raw == "":
        return []
    items = raw if isinstance(raw, (list, tuple)) else re.split(r"[\s,;]+", str(raw).strip())
    return [str(t).strip() for t in items if str(t).strip()]


def _laterality(raw) -> str:
    value = _text(raw).upper()
    return {"L": "L", "LEFT": "L", "R": "R", "RIGHT": "R", "B": "B", "BOTH": "B"}.get(value, "")


def _orientation(raw) -> list[str] | str:
    if not raw:
        return ""
    values = raw if isinstance(raw, (list, tuple)) else str(raw).split("\\")
    if len(values) != 2 or not all(re.fullmatch(r"[APRLHF]{1,3}", str(v)) for v in values):
        raise ValueError(f"context.patientOrientation must be two of A, P, R, L, H, F: {raw!r}")
    return [str(v) for v in values]


def _ds_number(value: float) -> str:
    return format(float(value), ".10g")


def _created(raw, tz: tzinfo | None) -> datetime:
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        raise ValueError(f"imageInfo.createdOn is not an ISO 8601 date-time: {raw!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(tz)


def _date(raw, field: str) -> str:
    if raw is None or raw == "":
        return ""
    match = re.fullmatch(r"(\d{4})-?(\d\d)-?(\d\d)(?:[T ].*)?", str(raw).strip())
    if match is None:
        raise ValueError(f"{field} is not a date (YYYY-MM-DD): {raw!r}")
    try:
        return date(int(match[1]), int(match[2]), int(match[3])).strftime("%Y%m%d")
    except ValueError:
        raise ValueError(f"{field} is not a date (YYYY-MM-DD): {raw!r}") from None


def _time(raw, field: str) -> str:
    if raw is None or raw == "":
        return ""
    match = re.fullmatch(r"(\d\d):?(\d\d)(?::?(\d\d)(\.\d{1,6})?)?", str(raw).strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59 or int(match[3] or 0) > 60:
        raise ValueError(f"{field} is not a time (HH:MM[:SS]): {raw!r}")
    return "".join(part or "" for part in match.groups())


def _sex(raw) -> str:
    value = _text(raw).upper()
    return {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F", "O": "O", "OTHER": "O"}.get(value, "")


def _filter(image_info: dict) -> str:
    return _text(image_info.get("filter")) or "raw"


def _text(raw) -> str:
    return "" if raw is None else str(raw).strip()


def _validate(ds: Dataset) -> None:
    """Every text value fits its VR (length, characters); a context value that does not is refused."""
    for element in ds.iterall():
        if element.VR not in _TEXT_VRS or element.value in ("", None):
            continue
        values = element.value if isinstance(element.value, MultiValue) else [element.value]
        if len(values) > 1 and dictionary_VM(element.tag) == "1":
            raise ValueError(f"{element.keyword}: a backslash would split the value: {element.value!r}")
        for value in map(str, values):
            if any(ord(c) < 32 for c in value) and element.VR not in ("LT", "ST", "UT"):
                raise ValueError(f"{element.keyword}: control characters are not allowed: {value!r}")
            try:
                validate_value(element.VR, value, pydicom_config.RAISE)
            except ValueError as err:
                raise ValueError(f"{element.keyword}: {err}") from None


_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
