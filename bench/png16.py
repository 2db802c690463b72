"""16-bit PNG codecs: the ISA-L writer and decoder against today's OpenCV path, in the same run.

Encode: `filters.png.encode_gray16` (numpy Up filter, ISA-L level 1, two
strips on two threads) against the call it replaced, OpenCV's libpng at its
fastest setting (Huffman only, Up filter), on three simulated radiographs:
the bench's LUT-mapped frame, an exposure as the pipeline outputs it
(rotated, LUT from its histogram) and a raw 12-bit frame (what unmap gives
back). Goal: at least 3x faster and no larger.

Decode: `filters.png.decode_gray16` (bounded ISA-L inflate, numpy un-filter
for None/Sub/Up rows, OpenCV on a stored copy for Average/Paeth rows)
against a plain `cv2.imdecode`, on the daemon's own PNGs and on PNGs other
encoders write (libpng's defaults, Pillow). Also against the same decoder
with zlib's inflate, as it was before.

Pipeline: `acquisition.pipeline.process` on a 2400x1708 exposure with the
new encoder and with today's, alternately.

Every ratio is the median of per-pair ratios, A and B run alternately.
"""
from __future__ import annotations

import contextlib
import io
import os
import zlib

import cv2
import numpy as np
from PIL import Image

from sensord import filters
from sensord.filters import png, png_writer

from .filters_http import HEIGHT, WIDTH, test_image
from .timing import goal, paired

PAIRS = 9
ENCODE_TARGET = 3.0


def cv2_today(image: np.ndarray, compression: int = 1) -> bytes:
    """The PNG encode the daemon used before ISA-L: libpng, Huffman only, Up filter."""
    ok, buf = cv2.imencode(".png", image, [
        cv2.IMWRITE_PNG_COMPRESSION, compression, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
        cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP])
    assert ok
    return buf.tobytes()


@contextlib.contextmanager
def encoder(fn):
    """`filters.encode_gray16`, as the pipeline calls it, replaced by ``fn`` for the body."""
    saved = filters.encode_gray16
    filters.encode_gray16 = fn
    try:
        yield
    finally:
        filters.encode_gray16 = saved


@contextlib.contextmanager
def zlib_inflate():
    """The decoder as it was before: zlib's inflate and CRC in place of ISA-L's."""
    saved = png.isal_zlib
    png.isal_zlib = zlib      # type: ignore[assignment]
    try:
        yield
    finally:
        png.isal_zlib = saved


def radiographs() -> dict[str, np.ndarray]:
    from sensord.drivers.phantom import phantom

    raw = phantom(width=WIDTH, height=HEIGHT, bits=12, seed=7)
    rotated = filters.rotate(raw, degrees=90)
    lut = filters.lut_from_histogram(rotated, gamma=2.3, total_grays=4096)
    return {"bench frame, LUT-mapped": test_image(),
            "exposure as the pipeline outputs it": filters.lut_map(rotated, lut=lut),
            "raw 12-bit frame (unmap output)": raw}


def encode(images: dict[str, np.ndarray]) -> None:
    print(f"16-bit PNG encode, {WIDTH}x{HEIGHT}: today (cv2, Huffman only, Up) vs new (ISA-L 1, Up, 2 strips):")
    for name, image in images.items():
        before, after = len(cv2_today(image)), len(png.encode_gray16(image))
        one_strip = paired(lambda i=image: cv2_today(i), lambda i=image: png_writer.write(i, level=1, strips=1),
                           pairs=PAIRS)
        today, new, ratio = paired(lambda i=image: cv2_today(i), lambda i=image: png.encode_gray16(i), pairs=PAIRS)
        speedup = 1 / ratio
        print(f"  {name}:")
        print(f"    today {today * 1e3:7.1f} ms {before / 2**20:6.2f} MiB | new {new * 1e3:6.1f} ms "
              f"{after / 2**20:6.2f} MiB ({after / before:.3f} of today's size; one strip "
              f"{one_strip[1] * 1e3:.1f} ms, {1 / one_strip[2]:.1f}x)")
        print(f"    {speedup:.1f}x faster (goal >= {ENCODE_TARGET:g}x: {goal(speedup >= ENCODE_TARGET)}); "
              f"no larger than today (goal: {goal(after <= before)})")


def client_pngs(image: np.ndarray) -> dict[str, bytes]:
    pillow = io.BytesIO()
    Image.fromarray(image).save(pillow, format="PNG")
    return {"the daemon's own (new writer)": png.encode_gray16(image),
            "the daemon's before (cv2, Up)": cv2_today(image),
            "libpng defaults (cv2.imencode)": cv2.imencode(".png", image)[1].tobytes(),
            "Pillow (adaptive filters)": pillow.getvalue()}


def decode(image: np.ndarray) -> None:
    print(f"16-bit PNG decode, {WIDTH}x{HEIGHT} (ratio: cv2.imdecode's time / ours, > 1 is faster):")
    bound = dict(max_width=8192, max_height=8192)
    for name, data in client_pngs(image).items():
        ours = lambda d=data: png.decode_gray16(d, **bound)  # noqa: E731
        assert np.array_equal(ours(), image)
        cv2_time, new, ratio = paired(lambda d=data: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_UNCHANGED),
                                      ours, pairs=PAIRS)

        def with_zlib(d=data):
            with zlib_inflate():
                png.decode_gray16(d, **bound)
        old, _, old_ratio = paired(with_zlib, ours, pairs=PAIRS)
        print(f"  {name:<32} cv2 {cv2_time * 1e3:6.1f} ms | ours {new * 1e3:6.1f} ms: {1 / ratio:4.2f}x cv2, "
              f"{1 / old_ratio:4.2f}x our zlib decoder ({old * 1e3:.1f} ms)")


def pipeline_before_after() -> None:
    from sensord.daemon.acquisition import pipeline
    from sensord.drivers.base import FrameEvent
    from sensord.drivers.phantom import phantom

    from .pipeline import SENSOR

    frame = FrameEvent(device_id="bench", pixels=phantom(width=WIDTH, height=HEIGHT, bits=12, dose=1.0, seed=7))

    def run() -> None:
        pipeline.process(frame, SENSOR, rotation=90, apply_lut=True, hash_alg="MD5")

    def before() -> None:
        with encoder(lambda image, compression=1: cv2_today(image, compression)):
            run()
    today, new, ratio = paired(before, run, pairs=PAIRS)
    print(f"exposure pipeline, {WIDTH}x{HEIGHT}, rotation 90, LUT, MD5 (pipeline.process, wall):")
    print(f"  with today's encoder {today * 1e3:6.1f} ms | with the new one {new * 1e3:6.1f} ms: "
          f"{ratio:.2f}x the time ({(today - new) * 1e3:.0f} ms less)")


def main() -> None:
    print(f"sensord 16-bit PNG benchmark ({os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    images = radiographs()
    encode(images)
    decode(images["bench frame, LUT-mapped"])
    pipeline_before_after()
