"""Transfer syntaxes by the names the configuration uses, and encoding a
dataset for one of them.

==============================  ========================  =====================================
name                            UID                       encoded by
==============================  ========================  =====================================
``jpeg-ls-lossless``            1.2.840.10008.1.2.4.80    pydicom's ``compress`` with pyjpegls
``rle-lossless``                1.2.840.10008.1.2.5       pydicom's own RLE encoder (slow: ~2 s
                                                          for 2400x1708, and larger than JPEG-LS)
``explicit-vr-little-endian``   1.2.840.10008.1.2.1       native pixels
``implicit-vr-little-endian``   1.2.840.10008.1.2         native pixels
==============================  ========================  =====================================

Only lossless syntaxes are offered: the archive must keep exactly the grays
that were hashed (``pixelHash``). JPEG 2000 lossless is left out because
pydicom has no encoder for it here (it needs pylibjpeg-openjpeg).

``encode`` returns a copy and keeps the SOP Instance UID: pydicom's
``compress`` makes a new one unless told not to, which would break the
storage commitment match and MPPS references to the instance.
"""
from __future__ import annotations

import copy
import io

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
)

NAMES: dict[str, UID] = {
    "jpeg-ls-lossless": JPEGLSLossless,
    "rle-lossless": RLELossless,
    "explicit-vr-little-endian": ExplicitVRLittleEndian,
    "implicit-vr-little-endian": ImplicitVRLittleEndian,
}
# Which pydicom encoding plugin makes each compressed syntax.
_PLUGINS = {JPEGLSLossless: "pyjpegls", RLELossless: "pydicom"}
IMPLEMENTATION_VERSION = "SENSORD_0_1"


def uid_of(name: str) -> UID:
    """The UID of a configured transfer syntax name; ValueError names the known ones."""
    try:
        return NAMES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown transfer syntax {name!r} (known: {', '.join(NAMES)})") from None


def name_of(uid: str) -> str:
    for name, known in NAMES.items():
        if known == uid:
            return name
    return str(uid)


def is_compressed(name: str) -> bool:
    return uid_of(name) in _PLUGINS


def encode(ds: Dataset, name: str) -> Dataset:
    """A copy of ``ds`` (native pixels) encoded for the syntax ``name``, with its
    file meta saying so and the same SOP Instance UID."""
    uid = uid_of(name)
    out = copy.deepcopy(ds)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian      # what the native pixels are now
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    out.file_meta = meta
    if uid in _PLUGINS:
        # generate_instance_uid=False: the trap named in the module docstring.
        out.compress(uid, encoding_plugin=_PLUGINS[uid], generate_instance_uid=False)
    else:
        meta.TransferSyntaxUID = uid
    if out.SOPInstanceUID != ds.SOPInstanceUID or out.file_meta.TransferSyntaxUID != uid:
        raise RuntimeError(f"encoding for {name} changed the instance ({out.SOPInstanceUID}) "
                           f"or the syntax ({out.file_meta.TransferSyntaxUID})")
    return out


def part10(ds: Dataset) -> bytes:
    """The Part-10 file of an encoded dataset (as an archive stores it): for sizes and tests."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
