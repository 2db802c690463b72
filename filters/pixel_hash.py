"""The pixel hash of an image: the DSIO HashInfo that lets a receiver check its pixels.

The hash covers the pixel values, not a file: row-major, little-endian
uint16 bytes. That is exactly what a client hashes after decoding the PNG
at ``imageUrl`` into a uint16 array on a little-endian machine. (A PNG file
stores its samples big-endian, so the file's bytes hash differently.)
"""
from __future__ import annotations

import hashlib

import numpy as np

from . import _checks

# HashInfo.alg names the spec allows, with the hashlib name of each.
_HASHLIB_NAMES = {"MD5": "md5", "SHA256": "sha256"}
ALGORITHMS = tuple(_HASHLIB_NAMES)


def pixel_hash(pixels: np.ndarray, *, alg: str) -> dict:
    """The HashInfo ``{"alg": alg, "hash": hex digest}`` of a 2-D uint16 image.

    Parameters
    ----------
    pixels : (M, N) ndarray of uint16
        Either byte order and any strides: the hash is of the values.
    alg : {"MD5", "SHA256"}
        As the spec spells it (see `ALGORITHMS`).

    Returns
    -------
    dict
        ``{"alg": alg, "hash": lower-case hex digest}``.

    Raises
    ------
    TypeError
        For a non-array or a dtype other than uint16 (no silent conversion:
        another dtype has other bytes, so another hash).
    ValueError
        For an unknown `alg`, or an image that is not 2-D or is empty.

    Notes
    -----
    Dtype rule: uint16 only, hashed as ``pixels.astype("<u2")`` in C order.
    A C-contiguous native array on a little-endian machine is hashed in
    place, without a copy; other layouts are made contiguous first.
    The digest is a checksum, not a security measure, hence
    ``usedforsecurity=False`` (MD5 stays usable on FIPS-mode systems).
    """
    name = _checks.choice(alg, name="alg", allowed=ALGORITHMS)
    data = np.ascontiguousarray(_checks.gray16(pixels, name="pixels"), dtype="<u2")
    digest = hashlib.new(_HASHLIB_NAMES[name], data.data, usedforsecurity=False).hexdigest()
    return {"alg": name, "hash": digest}
