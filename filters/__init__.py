"""Pure functions on 2-D uint16 images: LUT, binning, rotation, enhancement, codecs.

No I/O and no imports from daemon/ or drivers/. Each module documents its
dtype and range rules.
"""

from .binning import bin2x2
from .codecs import MEDIA_TYPES, encode
from .display import to_8bit
from .enhance import ae, select, supreme
from .lut import Lut, lut_from_histogram, lut_map, lut_unmap
from .png import (
                  CorruptPngError,
                  NotPngError,
                  PngError,
                  PngFormatError,
                  PngHeader,
                  PngTooLargeError,
                  decode_gray16,
                  encode_gray16,
                  read_header,
)
from .rotation import rotate

__all__ = [
    "MEDIA_TYPES", "CorruptPngError", "Lut", "NotPngError", "PngError", "PngFormatError",
    "PngHeader", "PngTooLargeError", "ae", "bin2x2", "decode_gray16", "encode", "encode_gray16",
    "lut_from_histogram", "lut_map", "lut_unmap", "read_header", "rotate", "select", "supreme",
    "to_8bit",
]
