"""The DICOM instance of one delivery, checked: shared by the DICOMweb and DIMSE adapters.

The outbox's PNG is decoded and hashed again before anything is built: an
image that no longer matches the ``pixelHash`` the client was told is never
sent under that image's UID. Then the instance is built (`dicom`) and, for
a de-identified copy, put through PS3.15's Basic Profile (`dicom_deid`).
Every failure here is permanent: no retry changes the file or the context.
"""
from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from sensord.filters import png as pngcodec
from sensord.filters.pixel_hash import ALGORITHMS as HASH_ALGS
from sensord.filters.pixel_hash import pixel_hash

from . import dicom, dicom_deid
from .base import Delivery, PermanentError


@dataclass(frozen=True)
class Instance:
    dataset: Dataset
    alg: str            # the hash algorithm the pixels were checked with
    digest: str         # their hash, as sent


def checked_instance(item: Delivery, *, target: str, institution: str = "", station: str = "") -> Instance:
    """The dataset to send for ``item``, its pixels proven to be the hashed ones."""
    info = item.image_info
    try:
        pixels = pngcodec.decode_gray16(item.png_path.read_bytes(), max_width=65535, max_height=65535)
    except (OSError, ValueError) as err:
        raise PermanentError(f"{target}: cannot read the image {item.png_path.name}: {err}") from None
    stated = info.get("pixelHash") or {}
    alg = stated["alg"] if stated.get("alg") in HASH_ALGS else "SHA256"
    digest = pixel_hash(pixels, alg=alg)["hash"]
    if stated.get("alg") == alg and str(stated.get("hash", digest)).lower() != digest:
        raise PermanentError(f"{target}: the image {item.image_id} does not match its pixelHash "
                             f"({alg} {stated['hash']}, the PNG gives {digest})")
    try:
        ds = dicom.build_dataset(pixels, info, item.context, image_id=item.image_id,
                                 institution=institution, station=station)
        if item.deidentified:           # a de-identified copy: PS3.15 on the instance too
            dicom_deid.apply_profile(ds, dates=item.deidentified, pseudonym=item.context.get("patientId"))
    except ValueError as err:
        raise PermanentError(f"{target}: cannot describe image {item.image_id} in DICOM: {err}") from None
    return Instance(ds, alg, digest)
