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
- **Anatomy, Image Laterality, Patient Orientation**: ``dicom_anatomy.py``
  (teeth in ISO 3950 as coded terms, the whole dentition when no tooth is
  known, orientation as dental viewers mount the image). Value forms
  (dates, times, text) and the check of each text value against its VR:
  ``dicom_values.py``.
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
from datetime import datetime, tzinfo

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from sensord.daemon.dsio.imageinfo import lut_from_info

from .dicom_anatomy import patient_orientation, set_anatomy
from .dicom_values import as_date, as_sex, as_time, created_time, ds_number, text, validate

SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.3"      # Digital Intra-Oral X-Ray Image Storage - For Presentation
NAMESPACE = uuid.UUID("9a5cabb1-f489-4c8e-a195-e3b30783b871")   # sensord's, for uuid5 UIDs
SOFTWARE = "sensord 0.1"
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"     # Modality Performed Procedure Step


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
    patient = text(context.get("patientId"))
    if not patient:
        return uid_from_uuid(uuid.uuid5(NAMESPACE, f"study-of-image\0{image_id}"))
    key = "\0".join(("study", patient, study_date, text(context.get("accessionNumber"))))
    return uid_from_uuid(uuid.uuid5(NAMESPACE, key))


def series_uid(study: str, image_info: dict) -> str:
    serial = text((image_info.get("sensorInfo") or {}).get("serialNumber"))
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
    created = created_time(image_info.get("createdOn"), tz)
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
    set_anatomy(ds, context)
    ds.AcquisitionContextSequence = Sequence()
    validate(ds)
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
    ds.PatientName = text(context.get("patientName"))
    ds.PatientID = text(context.get("patientId"))
    ds.PatientBirthDate = as_date(context.get("birthDate"), "context.birthDate")
    ds.PatientSex = as_sex(context.get("sex"))
    ds.StudyDate = as_date(context.get("studyDate"), "context.studyDate") or created.strftime("%Y%m%d")
    ds.StudyTime = as_time(context.get("studyTime"), "context.studyTime") or created.strftime("%H%M%S")
    ds.StudyInstanceUID = study_uid(context, image_id=image_id, study_date=ds.StudyDate)
    if not ds.PatientID:                  # see the module docstring: never another patient's id
        ds.PatientID = "sensord-" + uuid.uuid5(NAMESPACE, f"patient\0{ds.StudyInstanceUID}").hex[:16]
        ds.IssuerOfPatientID = "sensord"
    ds.ReferringPhysicianName = text(context.get("referringPhysician"))
    ds.StudyID = uuid.uuid5(NAMESPACE, f"study-id\0{ds.StudyInstanceUID}").hex[:16].upper()
    ds.AccessionNumber = text(context.get("accessionNumber"))
    if context.get("studyDescription"):
        ds.StudyDescription = text(context["studyDescription"])


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
    ds.Manufacturer = text(sensor.get("brand"))
    for keyword, value in (("InstitutionName", institution), ("StationName", station),
                           ("ManufacturerModelName", sensor.get("modelName")),
                           ("DeviceSerialNumber", sensor.get("serialNumber"))):
        if value:
            setattr(ds, keyword, text(value))
    ds.SoftwareVersions = [v for v in (text(sensor.get("version")), text(link.get("version")), SOFTWARE) if v]


# context key -> keyword in a Request Attributes Sequence item (the worklist's scheduled step).
_REQUEST = {"requestedProcedureId": "RequestedProcedureID", "scheduledProcedureStepId": "ScheduledProcedureStepID",
            "requestedProcedureDescription": "RequestedProcedureDescription",
            "scheduledProcedureStepDescription": "ScheduledProcedureStepDescription"}


def _set_request(ds: Dataset, context: dict) -> None:
    """General Series: the Request Attributes Sequence, one item, when the context names the
    requested procedure or the scheduled step (a worklist-bound session's images do)."""
    item = Dataset()
    for key, keyword in _REQUEST.items():
        if text(context.get(key)):
            setattr(item, keyword, text(context[key]))
    if len(item):
        ds.RequestAttributesSequence = Sequence([item])


def performed_step_id(step_uid: str) -> str:
    """Performed Procedure Step ID (SH, 16) of a step: stable, from its UID (the N-CREATE sends it too)."""
    return uuid.uuid5(NAMESPACE, f"pps-id\0{step_uid}").hex[:16].upper()


def _set_performed_step(ds: Dataset, context: dict) -> None:
    """General Series: the MPPS step the series was made in (forward/rules.py names it for a
    bound session when MPPS is on). Its start is left out: the step starts with its first image,
    which a later image's context does not know, and a guess would contradict the N-CREATE."""
    step_uid = text(context.get("performedProcedureStepUid"))
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
    ds.PatientOrientation = patient_orientation(context, image_info)
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    if spec != "raw":
        ds.DerivationDescription = f"sensord filter {spec} applied to the acquired image"
        original = text(image_info.get("id"))
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
    ds.WindowCenter = ds_number(low + width / 2)
    ds.WindowWidth = ds_number(width)


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
        ds.ImagerPixelSpacing = [ds_number(v) for v in sizes]
        ds.PixelSpacing = ds.ImagerPixelSpacing     # equal: measured at the detector plane
    else:
        ds.ImagerPixelSpacing = ""
    ds.DetectorType = ""
    serial = (image_info.get("sensorInfo") or {}).get("serialNumber")
    if serial:
        ds.DetectorID = text(serial)
    binning = (image_info.get("acquisitionInfo") or {}).get("binning")
    if binning in ("Unbinned", "Binned2x2"):
        ds.DetectorBinning = [1, 1] if binning == "Unbinned" else [2, 2]


_SERIES_NUMBERS = {"raw": 1, "unmap": 2, "select": 3, "supreme": 4, "ae": 5}


def _filter(image_info: dict) -> str:
    return text(image_info.get("filter")) or "raw"
