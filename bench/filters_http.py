"""Filters on a 2400x1708 16-bit image: compute, codecs, and HTTP end to end.

Reference for compute: copying the same image. Reference for HTTP: the same
work in process (decode the PNG, filter, encode the answer). The daemon runs
as its own process, as in production, so client and server do not share a GIL.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from sensord import filters
from sensord.filters import codecs, png
from sensord.filters.lut import Lut

from .timing import best_of, goal, paired, row

HEIGHT, WIDTH = 1708, 2400
LUT = Lut(gamma=2.3, slope=65535.0, offset=0.0, total_grays=4096, minimum_gray=3612, maximum_gray=418)
LUT_INFO = {"gamma": 2.3, "slope": 65535.0, "offset": 0.0, "totalGrays": 4096,
            "minimumGray": 3612, "maximumGray": 418}
FILTERS = [
    ("unmap", {}, {}),
    ("select", {"enhancementMode": "smooth"}, {"mode": "smooth"}),
    ("select", {"enhancementMode": "edgePro"}, {"mode": "edgePro"}),
    ("supreme", {"task": "general", "sharpness": 70}, {"task": "general", "sharpness": 70.0}),
    ("ae", {"task": "endodontic", "sharpness": 70}, {"task": "endodontic", "sharpness": 70.0}),
]


def test_image() -> np.ndarray:
    """A simulated 12-bit exposure, mapped as the sensor service delivers it."""
    from sensord.drivers.phantom import phantom

    raw = phantom(width=WIDTH, height=HEIGHT, bits=12, seed=7)
    return filters.lut_map(raw, lut=LUT)


def run_filter(name, pixels, kwargs):
    if name == "unmap":
        return filters.lut_unmap(pixels, lut=LUT)
    return getattr(filters, name)(pixels, lut=LUT, **kwargs)


def compute(image):
    copy = best_of(lambda: image.copy(), repeat=21)
    print(f"compute, {WIDTH}x{HEIGHT} uint16 ({image.nbytes / 2**20:.1f} MiB):")
    print(row("copy (reference)", copy))
    cases = [
        ("lut_map", lambda: filters.lut_map(image, lut=LUT), 10),
        ("lut_unmap", lambda: filters.lut_unmap(image, lut=LUT), 10),
        ("bin2x2", lambda: filters.bin2x2(image), 5),
        ("rotate 90", lambda: filters.rotate(image, degrees=90), None),
    ]
    for name, _, kwargs in FILTERS[1:]:
        label = f"{name} {'/'.join(str(v) for v in kwargs.values())}"
        cases.append((label, lambda n=name, k=kwargs: run_filter(n, image, k), 40))
    for label, fn, target in cases:
        print(row(label, best_of(fn), copy, target))
    return copy


def codec_times(image):
    data = png.encode_gray16(image, compression=1)
    print("codecs:")
    print(row("PNG decode", best_of(lambda: png.decode_gray16(data, max_width=8192, max_height=8192), repeat=5)))
    print(row(f"PNG encode ({len(data) / 2**20:.1f} MiB)", best_of(lambda: png.encode_gray16(image, compression=1), repeat=5)))
    for media_type in codecs.MEDIA_TYPES[1:]:
        print(row(f"{media_type} encode", best_of(lambda m=media_type: codecs.encode(image, media_type=m, lut=LUT), repeat=5)))
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(state: Path, password: str, cert: str | None = None):
    """The daemon in its own process: (process, Filters API base URL, client)."""
    from sensord.daemon.api.auth import hash_password

    port = free_port()
    config = state / "bench.toml"
    tls = f'[server]\ntls_cert = "{cert}"\n' if cert else ""
    config.write_text(f'[auth.users]\nbench = "{hash_password(password)}"\n[log]\nlevel = "WARNING"\n{tls}')
    proc = subprocess.Popen([sys.executable, "-m", "sensord.daemon.host.cli", "serve", "--config", str(config),
                             "--port", str(port), "--state-dir", str(state / "state")])
    base = f"{'https' if cert else 'http'}://127.0.0.1:{port}/api/dsio/filters/v1"
    client = requests.Session()
    client.auth = ("bench", password)
    if cert:
        client.verify, client.trust_env = cert, False
    deadline = time.monotonic() + 30
    while True:
        try:
            client.get(base, timeout=1)
            return proc, base, client
        except requests.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("daemon did not start")
            time.sleep(0.1)


def http(image, data):
    print("HTTP end to end (upload + filter + download) vs in-process (decode + filter + encode),\n"
          "  alternately, the median of per-pair ratios:")
    with tempfile.TemporaryDirectory() as tmp:
        proc, base, client = start_daemon(Path(tmp), "bench-password")
        try:
            upload, headers = upload_body(data)

            for name, body, kwargs in FILTERS:
                created_ids = []

                def over_http():
                    created = client.post(base + "/images", data=upload, headers=headers)
                    assert created.status_code == 201, created.text
                    created_ids.append(created.json()["id"])
                    out = client.post(f"{base}/images/{created_ids[-1]}/filters/{name}", json=body or None,
                                      stream=True)
                    # One read: requests' .content reads 10 KiB at a time, ~8 ms of
                    # client work on a 6.5 MiB answer that is not the daemon's.
                    content = out.raw.read()
                    assert out.status_code == 200 and len(content) > 0, content[:200]

                def in_process():
                    pixels = png.decode_gray16(data, max_width=8192, max_height=8192)
                    png.encode_gray16(run_filter(name, pixels, kwargs), compression=1)

                local, remote, ratio = paired(in_process, over_http, pairs=7)
                for rid in created_ids:      # cleanup is not part of the measured path
                    client.delete(f"{base}/images/{rid}")
                label = f"{name} {'/'.join(str(v) for v in kwargs.values())}".strip()
                print(row(f"{label} in-process", local))
                print(f"  {label + ' HTTP':<34} {remote * 1e3:9.2f} ms   {ratio:7.2f}x  "
                      f"(target 1.25x: {goal(ratio <= 1.25)})")
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def upload_files(data: bytes) -> dict:
    return {"imageInfo": (None, '{"lutInfo": %s}' % str(LUT_INFO).replace("'", '"'), "application/json"),
            "imageMedia": ("image.png", data, "image/png")}


def upload_body(data: bytes) -> tuple[bytes, dict]:
    """The multipart upload of ``data`` built once: (body, headers). Built per call,
    it costs the client ~2 ms of copying that the other side of a comparison
    (a prebuilt DICOM file, or nothing in process) does not pay."""
    prepared = requests.Request("POST", "http://bench/", files=upload_files(data)).prepare()
    assert isinstance(prepared.body, bytes)
    return prepared.body, {"Content-Type": prepared.headers["Content-Type"]}


def self_signed(folder: Path) -> str:
    """A certificate for 127.0.0.1 with its key in the same PEM file."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.pem",
                    "-out", "cert.pem", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   cwd=folder, check=True, capture_output=True)
    combined = folder / "combined.pem"
    combined.write_bytes((folder / "cert.pem").read_bytes() + (folder / "tls.pem").read_bytes())
    return str(combined)


def https(data):
    """The same upload + unmap + download through the TLS front, against plain HTTP."""
    print("HTTPS (TLS front) vs HTTP, upload + unmap + download:")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "plain").mkdir()
        (tmp / "tls").mkdir()
        times = {}
        for label, cert in (("HTTP", None), ("HTTPS", self_signed(tmp / "tls"))):
            proc, base, client = start_daemon(tmp / ("tls" if cert else "plain"), "bench-password", cert)
            try:
                def round_trip():
                    created = client.post(base + "/images", files=upload_files(data))
                    assert created.status_code == 201, created.text
                    out = client.post(f"{base}/images/{created.json()['id']}/filters/unmap")
                    assert out.status_code == 200 and out.content, out.text
                    client.delete(f"{base}/images/{created.json()['id']}")
                round_trip()                                # connection and TLS session set up
                times[label] = best_of(round_trip, repeat=7)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        print(row("HTTP (reference)", times["HTTP"]))
        print(row("HTTPS", times["HTTPS"], times["HTTP"]))


def main(parts=("compute", "codecs", "http", "https")):
    print(f"sensord filters benchmark ({os.cpu_count()} CPUs, numpy {np.__version__}, "
          f"load average {os.getloadavg()[0]:.2f})")
    image = test_image()
    if "compute" in parts:
        compute(image)
    data = png.encode_gray16(image, compression=1)
    if "codecs" in parts:
        codec_times(image)
    if "http" in parts:
        http(image, data)
    if "https" in parts:
        https(data)
