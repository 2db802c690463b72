"""Test images and request bodies, made here rather than stored as fixtures."""
from __future__ import annotations

import json
import struct
import zlib

import cv2
import numpy as np

# The spec's example map: gamma 2.3, 12-bit raw data inverted from 3612 down to 418.
LUT_INFO = {"gamma": 2.3, "slope": 65535.0, "offset": 0.0, "totalGrays": 4096,
            "minimumGray": 3612, "maximumGray": 418}
# What some clients send for an image without a map; every reader takes it as no LUT.
ZERO_LUT_INFO = dict.fromkeys(LUT_INFO, 0)


def raw_image(height=120, width=160, seed=0) -> np.ndarray:
    """12-bit raw-looking data: a bright disc and a bar on a ramp, with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = 800 + 2000 * xx / max(width - 1, 1)
    img += 900 * (((yy - height / 2) ** 2 + (xx - width / 3) ** 2) < (min(height, width) / 4) ** 2)
    img[height // 4: height // 4 + 6, :] -= 500
    img += rng.normal(0, 25, img.shape)
    return np.clip(img, 0, 4095).astype(np.uint16)


def png16(pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", pixels)
    assert ok and pixels.dtype == np.uint16
    return buf.tobytes()


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def png8(height=20, width=30) -> bytes:
    return cv2.imencode(".png", np.zeros((height, width), np.uint8))[1].tobytes()


def png16_rgb(height=20, width=30) -> bytes:
    return cv2.imencode(".png", np.zeros((height, width, 3), np.uint16))[1].tobytes()


def jpeg(height=20, width=30) -> bytes:
    return cv2.imencode(".jpg", np.zeros((height, width), np.uint8))[1].tobytes()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size but whose data is tiny (a decompression bomb's shape)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def image_info(**extra) -> dict:
    info = {"acquisitionInfo": {"binning": "Unbinned"}, "lutInfo": dict(LUT_INFO)}
    info.update(extra)
    return info


def multipart(parts: list[tuple[str, dict, bytes]], boundary: str = "sensordTestBoundary") -> tuple[bytes, str]:
    """Build a body by hand, so tests control every header byte as odd clients send them.

    ``parts`` holds (Content-Disposition params, other headers, data).
    """
    out = bytearray()
    for disposition, headers, data in parts:
        out += f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n".encode()
        for key, value in headers.items():
            out += f"{key}: {value}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def upload_files(info: dict, media: bytes) -> dict:
    """The requests `files=` form a browser-like client sends."""
    return {"imageInfo": (None, json.dumps(info), "application/json"),
            "imageMedia": ("image.png", media, "image/png")}
