"""The DICOM part of a de-identified copy: PS3.15 Annex E on a built Dataset.

`apply_profile` runs on the Dataset `dicom.build_dataset` returns, after the
forwarder has de-identified the context and ImageInfo it was built from (see
`forward.deidentify`): so UIDs and dates are already consistent replacements
(the Study UID derives from the pseudonym or a keyed UID, dates shifted per
patient), and the step here makes the instance conform to the Basic
Application Level Confidentiality Profile (PS3.15 E.1, Table E.1-1) with:

- Retain Patient Characteristics Option (113108): Patient's Sex is kept;
- Retain Device Identity Option (113109): station, serial numbers kept;
- Retain Longitudinal Temporal Information with Full Dates (113106) for
  ``deidentify_dates = "keep"``, with Modified Dates (113107) for "shift";
  for "remove" dates and times become empty (Type 2), the dummy 19000101
  000000 (Study Date and Time) or go (Type 3).

Patient Name and Patient ID (Type 2) are replaced by the pseudonym (the
name's family component), not removed; Study ID by a dummy; Patient
Identity Removed (0012,0062) is YES and De-identification Method
(0012,0063) and its Code Sequence (0012,0064) name the profile and
options. pydicom has no de-identification profile of its own, and the
``deid`` package's recipes would add a dependency (and its own rules) for the
few dozen attributes a sensord instance can carry, so the table is here.
"""
from __future__ import annotations

import hashlib

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
PATIENT_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")
DEVICE_IDENTITY = ("113109", "Retain Device Identity Option")
DATE_OPTIONS = {"keep": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
                "shift": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")}
LONGITUDINAL = {"keep": "UNMODIFIED", "shift": "MODIFIED", "remove": "REMOVED"}

# Table E.1-1, action Z (zero length) for Type 2 attributes an instance must keep. (Study ID, also Z,
# gets Z's other form, a dummy value: empty, dciodvfy warns that a DICOMDIR could not be built.)
EMPTY = ("PatientBirthDate", "PatientBirthTime", "ReferringPhysicianName", "AccessionNumber")
# Table E.1-1, action X (remove).
REMOVE = ("OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName",
          "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers", "MedicalRecordLocator",
          "PatientComments", "AdditionalPatientHistory", "MedicalAlerts", "Allergies", "Occupation",
          "EthnicGroup", "PatientReligiousPreference", "MilitaryRank", "BranchOfService", "IssuerOfPatientID",
          "PatientInsurancePlanCodeSequence", "InstitutionName", "InstitutionAddress",
          "InstitutionalDepartmentName", "InstitutionCodeSequence", "PhysiciansOfRecord",
          "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "OperatorsName", "RequestingPhysician",
          "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "StudyDescription",
          "SeriesDescription", "ImageComments", "DerivationDescription", "RequestAttributesSequence",
          "ReferencedPatientSequence", "ReferencedStudySequence", "PerformedProcedureStepDescription",
          "PerformedProcedureStepID", "AdmittingDiagnosesDescription",
          "ReferencedPerformedProcedureStepSequence")     # X/Z/D: X, as for the Request Attributes
# (Patient's Age, Size and Weight, X in the basic profile, are kept by the Patient Characteristics Option.)
# Dates and times that stay, emptied, when dates are removed (Type 1/2 in the DX IOD: a dummy-free Z).
KEEP_EMPTY_TEMPORAL = {"ContentDate", "ContentTime", "PatientBirthDate"}
# ... and those that get Z's dummy form instead (empty, dciodvfy warns that a DICOMDIR could not be built):
# the day ImageInfo's removed createdOn becomes too (forward.deidentify.DUMMY_CREATED).
DUMMY_TEMPORAL = {"StudyDate": "19000101", "StudyTime": "000000"}


def _code(value: tuple[str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value[0], "DCM", value[1]
    return item


def apply_profile(ds: Dataset, *, dates: str, pseudonym: str | None) -> Dataset:
    """De-identify ``ds`` in place (and return it) per PS3.15 Basic Profile and the options above.

    ``pseudonym`` becomes Patient Name and Patient ID (empty without one);
    ``dates`` is the target's ``deidentify_dates``: "keep", "shift" (the
    dates in ``ds`` were built from shifted values already) or "remove".
    """
    if dates not in LONGITUDINAL:
        raise ValueError(f"dates must be one of {', '.join(LONGITUDINAL)}, got {dates!r}")
    ds.remove_private_tags()
    # The pseudonym is the name's family component: a PN without "^" is the retired ACR-NEMA form.
    ds.PatientName = f"{pseudonym}^" if pseudonym else ""
    ds.PatientID = pseudonym or ""
    for keyword in EMPTY:
        if keyword in ds:
            setattr(ds, keyword, "")
    if "StudyID" in ds:     # a dummy from the (already replaced) Study UID: the same for every image of a study
        digest = hashlib.sha256(f"study-id\0{ds.get('StudyInstanceUID', '')}".encode()).hexdigest()
        ds.StudyID = digest[:16].upper()
    for keyword in REMOVE:
        if keyword in ds:
            delattr(ds, keyword)

    def clean(dataset: Dataset) -> None:
        for element in list(dataset):
            if element.VR == "SQ":
                for item in element.value:
                    clean(item)
            elif element.VR == "PN" and element.keyword != "PatientName":
                element.value = ""                                  # any other person: Z
            elif dates == "remove" and element.VR in ("DA", "DT", "TM"):
                if element.keyword in DUMMY_TEMPORAL:
                    element.value = DUMMY_TEMPORAL[element.keyword]
                elif element.keyword in KEEP_EMPTY_TEMPORAL:
                    element.value = ""
                else:
                    del dataset[element.tag]
    clean(ds)
    if dates == "remove" and "TimezoneOffsetFromUTC" in ds:
        del ds.TimezoneOffsetFromUTC

    codes = [BASIC_PROFILE, PATIENT_CHARACTERISTICS, DEVICE_IDENTITY]
    if dates in DATE_OPTIONS:
        codes.append(DATE_OPTIONS[dates])
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"sensord: PS3.15 Basic Profile, dates {dates}"
    ds.DeidentificationMethodCodeSequence = Sequence([_code(code) for code in codes])
    ds.LongitudinalTemporalInformationModified = LONGITUDINAL[dates]
    return ds
