"""16-bit grayscale TIFF, uncompressed: the pixels' own bytes behind an 8-byte header.

The tags are those OpenCV's libtiff wrote before (one strip, no compression,
BlackIsZero, unsigned samples). Written with one allocation of the output's
size, so the peak is the output alone (2 bytes a pixel): OpenCV's growing
buffer and the copy out of it held 3-4 times the image, more or less as
the allocator's state of the moment allowed (`filters.footprint`).
"""

from __future__ import annotations

import struct
import sys

import numpy as np

# Tag, type (3 SHORT, 4 LONG), value; sorted by tag as the format requires.
_SHORT, _LONG = 3, 4
_LIMIT = 2**32 - 4096          # classic TIFF offsets are 32-bit


def encode_gray16(image: np.ndarray) -> bytes:
    """A baseline TIFF of a C-contiguous native uint16 image (checked by the caller).

    Parameters
    ----------
    image : (M, N) ndarray of uint16, C-contiguous, native byte order

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        For an image of 4 GiB or more, beyond what classic TIFF addresses.

    Notes
    -----
    Dtype rule: uint16 in, 16-bit samples out, in this machine's byte
    order (the header says which, as TIFF allows); decoding gives the same
    array.
    """
    height, width = image.shape
    nbytes = image.nbytes
    if nbytes >= _LIMIT:
        raise ValueError(f"a TIFF holds less than 4 GiB; this image is {nbytes} bytes")
    order = "<" if sys.byteorder == "little" else ">"
    entries = [(256, _LONG, width), (257, _LONG, height), (258, _SHORT, 16), (259, _SHORT, 1),
               (262, _SHORT, 1), (273, _LONG, 8), (277, _SHORT, 1), (278, _LONG, height),
               (279, _LONG, nbytes), (284, _SHORT, 1), (339, _SHORT, 1)]
    header = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8 + nbytes)
    ifd = struct.pack(order + "H", len(entries))
    for tag, kind, value in entries:
        # A SHORT sits in the first two bytes of the 4-byte value field.
        field = struct.pack(order + ("HH" if kind == _SHORT else "I"), *((value, 0) if kind == _SHORT else (value,)))
        ifd += struct.pack(order + "HHI", tag, kind, 1) + field
    ifd += struct.pack(order + "I", 0)                  # no next IFD
    return b"".join([header, image.data.cast("B"), ifd])
