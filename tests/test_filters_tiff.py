"""sensord.filters.tiff: baseline 16-bit gray TIFF that libtiff (OpenCV) and Pillow read exactly."""

import io
import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from sensord.filters import tiff


def _image(shape, seed=0):
    image = np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)
    image.flat[0], image.flat[-1] = 0, 65535
    return image


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (5, 7), (427, 601), (1708, 2400)])
def test_opencv_and_pillow_read_it_exactly(shape):
    image = _image(shape, seed=sum(shape))
    data = tiff.encode_gray16(image)
    out = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, image)
    with Image.open(io.BytesIO(data)) as read:
        assert read.mode == "I;16"
        np.testing.assert_array_equal(np.array(read), image)


def test_the_tags_are_the_ones_libtiff_wrote():
    data = tiff.encode_gray16(_image((3, 5)))
    with Image.open(io.BytesIO(data)) as read:
        tags = dict(read.tag_v2)
    assert tags == {256: 5, 257: 3, 258: (16,), 259: 1, 262: 1, 273: (8,), 277: 1, 278: 3,
                    279: (30,), 284: 1, 339: (1,)}
    assert data[:4] == b"II*\0" and struct.unpack_from("<I", data, 4)[0] == 8 + 30
    assert len(data) == 8 + 30 + 2 + 11 * 12 + 4


def test_beyond_what_classic_tiff_addresses_is_a_value_error(monkeypatch):
    monkeypatch.setattr(tiff, "_LIMIT", 30)
    with pytest.raises(ValueError, match="4 GiB"):
        tiff.encode_gray16(_image((3, 5)))
