"""What an intraoral image shows, in DICOM's words: teeth, jaw, laterality and orientation.

The anatomy vocabulary of ``dicom.py``'s dataset, kept apart from the
dataset's other modules because it is a world of its own (ISO 3950 tooth
numbers, the coded terms of the CIDs, the dental mounting convention) that
changes for different reasons than UIDs, times or pixels. Pure: context and
ImageInfo in, attributes set on a ``Dataset``.

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
"""
from __future__ import annotations

import re

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes

from .dicom_values import text

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


def set_anatomy(ds: Dataset, context: dict) -> None:
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


def patient_orientation(context: dict, image_info: dict) -> list[str] | str:
    """Patient Orientation: the context's when given, else the image as mounted labially."""
    return _orientation(context.get("patientOrientation")) or _intraoral_orientation(context, image_info)


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
    value = text(raw).upper()
    return {"L": "L", "LEFT": "L", "R": "R", "RIGHT": "R", "B": "B", "BOTH": "B"}.get(value, "")


def _orientation(raw) -> list[str] | str:
    if not raw:
        return ""
    values = raw if isinstance(raw, (list, tuple)) else str(raw).split("\\")
    if len(values) != 2 or not all(re.fullmatch(r"[APRLHF]{1,3}", str(v)) for v in values):
        raise ValueError(f"context.patientOrientation must be two of A, P, R, L, H, F: {raw!r}")
    return [str(v) for v in values]
