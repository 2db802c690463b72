"""How much memory decoding, filtering and encoding an image holds at its peak.

A memory budget must know a piece of work's size before the work allocates
it, so these are estimates from the image's dimensions alone: bytes per
pixel plus a fixed part (zlib and encoder states, small buffers). Each is
the most resident memory the call was seen to add (peak RSS: VmHWM after
clear_refs, in a fresh process), measured at 512x512 to 4096x4096 and
rounded up; `tests/test_filters_footprint.py` measures them again and fails
if a change to the code makes one of them an underestimate.

Where they come from (a uint16 image is 2 B/px, float32 4 B/px):

- `png.decode_gray16`: the inflate buffer, which becomes the pixels (2);
  the IDAT data of a file written in many chunks (libpng's 8 KiB) joined
  for libdeflate's one call, while it inflates (up to 2, freed after);
  rows with Average or Paeth filters also pass through a stored-deflate copy
  (2) and OpenCV's decode (4, part of it after the buffer is freed): 8.3
  measured (the joined copy's pages still resident), 9 here.
- `enhance` (select, supreme, ae; `multiscale.multiscale_enhance`): the
  float32 working image and its fine blur (4 + 4), the uint16 detail index
  (2), the coarse blur and its pyramid (4 + 1.3) while the others live, the
  output and its LUT-mapped copy (2 + 2): 15.5 to 16.3 measured, 17 here.
- `lut_unmap`: the output (2).
- `codecs.encode`: PNG, the compressed pieces and the file joined from
  them (`png_writer`, 3.3-3.9 measured on noise); TIFF, the file (2);
  JPEG and GIF, OpenCV's or Pillow's buffers and the bytes copied out of
  them (up to 5.7): 7 here.
"""

from __future__ import annotations

DECODE_PER_PIXEL = 9
PIXELS_PER_PIXEL = 2
FILTER_PER_PIXEL = {"unmap": 2, "select": 17, "supreme": 17, "ae": 17}
ENCODE_PER_PIXEL = 7
FIXED_BYTES = 4 << 20


def decode_bytes(width: int, height: int) -> int:
    """Peak bytes `png.decode_gray16` holds for a ``width`` x ``height`` image, the result included."""
    return DECODE_PER_PIXEL * width * height + FIXED_BYTES


def filter_call_bytes(name: str, width: int, height: int) -> int:
    """Peak bytes of one filter call on pixels already decoded: the input, the
    filter's working copies and output, then the output and its encoding.

    Parameters
    ----------
    name : {"unmap", "select", "supreme", "ae"}
    width, height : int

    Notes
    -----
    ``pixels * (2 + max(F, 2 + E)) + FIXED_BYTES``, F from `FILTER_PER_PIXEL`
    and E `ENCODE_PER_PIXEL`: the input is held throughout; the filter's
    temporaries are gone before the output is encoded. The input counts
    even when it is shared with a cache, so the estimate never falls short.
    """
    try:
        working = FILTER_PER_PIXEL[name]
    except KeyError:
        raise ValueError(f"no footprint for a filter named {name!r}") from None
    encoding = PIXELS_PER_PIXEL + ENCODE_PER_PIXEL
    return width * height * (PIXELS_PER_PIXEL + max(working, encoding)) + FIXED_BYTES
