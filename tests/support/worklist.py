"""Worklist items for Orthanc's ModalityWorklists plugin: Part-10 ``.wl`` files written with pydicom."""
from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

WORKLIST_SOP = "1.2.840.10008.5.1.4.31"


def write_item(folder: Path, *, accession: str, step_id: str, patient_id: str = "PAT-001",
               patient_name: str = "Doe^Jane", birth_date: str = "19800402", sex: str = "F",
               station: str = "SENSORD", modality: str = "IO", day: date | None = None,
               time: str = "093000", study_uid: str | None = None, procedure_id: str = "RP-1",
               procedure: str = "Bitewings", step: str = "Bitewing left",
               referring: str = "Smith^Ann") -> Dataset:
    """One scheduled step as a ``.wl`` file in ``folder``; returns its dataset."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.PatientSex = sex
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.AccessionNumber = accession
    ds.ReferringPhysicianName = referring
    ds.RequestedProcedureID = procedure_id
    ds.RequestedProcedureDescription = procedure
    step_ds = Dataset()
    step_ds.ScheduledStationAETitle = station
    step_ds.Modality = modality
    step_ds.ScheduledProcedureStepStartDate = (day or date.today()).strftime("%Y%m%d")
    step_ds.ScheduledProcedureStepStartTime = time
    step_ds.ScheduledProcedureStepID = step_id
    step_ds.ScheduledProcedureStepDescription = step
    ds.ScheduledProcedureStepSequence = [step_ds]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = WORKLIST_SOP
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(folder / f"{uuid.uuid4().hex}.wl", enforce_file_format=True)
    return ds
