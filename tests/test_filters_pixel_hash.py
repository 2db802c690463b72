"""sensord.filters.pixel_hash: the HashInfo of a 2-D uint16 image."""

import hashlib

import numpy as np
import pytest

from sensord.filters.pixel_hash import ALGORITHMS, pixel_hash

HASHLIB = {"MD5": hashlib.md5, "SHA256": hashlib.sha256}


def _image(shape=(37, 53), seed=0):
    return np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)


def test_the_spec_names_are_the_algorithms():
    assert ALGORITHMS == ("MD5", "SHA256")


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (37, 53)])
def test_digest_is_of_the_little_endian_row_major_values(alg, shape):
    image = _image(shape)
    # Written out by hand, so the reference does not share the code under test.
    data = b"".join(int(v).to_bytes(2, "little") for v in image.ravel(order="C"))
    assert pixel_hash(image, alg=alg) == {"alg": alg, "hash": HASHLIB[alg](data).hexdigest()}


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_known_digest_of_a_tiny_image(alg):
    image = np.array([[0x0102, 0xFFFF], [0, 1]], np.uint16)
    data = bytes([0x02, 0x01, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x00])
    assert pixel_hash(image, alg=alg)["hash"] == HASHLIB[alg](data).hexdigest()


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("view", [
    lambda a: a[::-1, :],          # negative strides
    lambda a: a[:, ::2],           # gaps between pixels
    lambda a: a.T,                 # Fortran order
    lambda a: a.astype(">u2"),     # big-endian storage of the same values
])
def test_layout_does_not_change_the_hash(alg, view):
    image = view(_image((40, 60), seed=1))
    assert pixel_hash(image, alg=alg) == pixel_hash(np.ascontiguousarray(image, dtype=np.uint16), alg=alg)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_different_pixels_hash_differently(alg):
    image = _image()
    changed = image.copy()
    changed[5, 7] ^= 1
    assert pixel_hash(image, alg=alg)["hash"] != pixel_hash(changed, alg=alg)["hash"]


def test_read_only_input_is_hashed_and_left_alone():
    image = _image()
    before = image.copy()
    image.setflags(write=False)
    assert pixel_hash(image, alg="MD5") == pixel_hash(before, alg="MD5")
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint32, np.float32, np.float64])
def test_other_dtypes_are_refused(dtype):
    with pytest.raises(TypeError, match="uint16"):
        pixel_hash(np.zeros((4, 4), dtype), alg="MD5")


@pytest.mark.parametrize("shape", [(16,), (2, 2, 2)])
def test_other_dimensions_are_refused(shape):
    with pytest.raises(ValueError, match="2-D"):
        pixel_hash(np.zeros(shape, np.uint16), alg="MD5")


@pytest.mark.parametrize("alg", ["md5", "SHA1", "", None])
def test_unknown_algorithms_are_refused(alg):
    with pytest.raises(ValueError, match="MD5, SHA256"):
        pixel_hash(_image(), alg=alg)
