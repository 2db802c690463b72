"""sensord beside Orthanc on the same pixels: ingest, 16-bit PNG out, peak memory.

Orthanc (Debian's package, the open archive the tests already use) and the
daemon each run as their own process on loopback; Orthanc is started as
`tests.support.orthanc.launch` starts it, without plugins. On a 2400x1708
16-bit frame, alternately A B A B:

- ingest: the daemon's POST /images (multipart ImageInfo + 16-bit PNG) and
  Orthanc's POST /instances (a DICOM file of the same pixels, uncompressed);
- 16-bit PNG out: the daemon's POST /images/{id}/filters/unmap (Accept
  image/png) and Orthanc's GET /instances/{id}/image-uint16;

the median of the per-pair ratios (sensord / Orthanc) against the goals of
issue 14, then the peak resident memory (VmHWM) of both processes.
Skipped, with a line saying so, where Orthanc is not installed.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from sensord.filters import png

from .filters_http import start_daemon, test_image, upload_body
from .timing import goal

PAIRS = 15
INGEST_TARGET = 1.0
PNG_OUT_TARGET = 0.15
RSS_TARGET = 0.8


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def _pairs(sensord_call, orthanc_call, cleanup=None) -> tuple[float, float, list[float]]:
    """Alternate the two calls: (median sensord s, median Orthanc s, per-pair ratios)."""
    ours, theirs, ratios = [], [], []
    for i in range(PAIRS + 1):
        started = time.perf_counter()
        a = sensord_call()
        middle = time.perf_counter()
        b = orthanc_call()
        ended = time.perf_counter()
        if cleanup is not None:
            cleanup(a, b)
        if i:           # the first pair warms connections and caches
            ours.append(middle - started)
            theirs.append(ended - middle)
            ratios.append((middle - started) / (ended - middle))
    return statistics.median(ours), statistics.median(theirs), ratios


def _report(label: str, ours: float, theirs: float, ratios: list[float], target: float) -> None:
    ratio = statistics.median(ratios)
    print(f"  {label:<44} sensord {ours * 1e3:7.1f} ms | Orthanc {theirs * 1e3:7.1f} ms")
    print(f"    ratio {ratio:.2f}x (median of {len(ratios)} pairs, {min(ratios):.2f}-{max(ratios):.2f}); "
          f"goal <= {target:g}x: {goal(ratio <= target)}")


def side_by_side(orthanc, folder: Path) -> None:
    from tests.support.orthanc import dicom_file

    image = test_image()
    data = png.encode_gray16(image)
    dicom = dicom_file(image)
    proc, base, client = start_daemon(folder, "bench-password")
    rest = orthanc.rest()
    orthanc_pid = orthanc.process.pid
    try:
        print(f"sensord beside Orthanc, {image.shape[1]}x{image.shape[0]} uint16 (PNG {len(data) / 2**20:.1f} MiB, "
              f"DICOM {len(dicom) / 2**20:.1f} MiB), alternating A B A B:")
        print(f"  idle RSS: sensord {_kib(proc.pid, 'VmRSS') / 1024:.0f} MB, "
              f"Orthanc {_kib(orthanc_pid, 'VmRSS') / 1024:.0f} MB")

        body, headers = upload_body(data)       # built once, as the DICOM file is

        def upload():
            answer = client.post(base + "/images", data=body, headers=headers)
            assert answer.status_code == 201, answer.text
            return answer.json()["id"]

        def store():
            answer = rest.post(orthanc.base + "/instances", data=dicom,
                               headers={"Content-Type": "application/dicom"})
            assert answer.ok and answer.json()["Status"] == "Success", answer.text
            return answer.json()["ID"]

        def forget(rid, oid):
            assert client.delete(f"{base}/images/{rid}").status_code == 204
            assert rest.delete(f"{orthanc.base}/instances/{oid}").ok

        _report("ingest: POST /images vs POST /instances", *_pairs(upload, store, forget), INGEST_TARGET)

        rid, oid = upload(), store()

        def unmap():
            answer = client.post(f"{base}/images/{rid}/filters/unmap", headers={"Accept": "image/png"})
            assert answer.status_code == 200 and answer.content[:8] == png.SIGNATURE, answer.text
            return answer.content

        def uint16():
            answer = rest.get(f"{orthanc.base}/instances/{oid}/image-uint16", headers={"Accept": "image/png"})
            assert answer.ok and answer.content[:8] == png.SIGNATURE, answer.text
            return answer.content

        theirs = png.decode_gray16(uint16(), max_width=image.shape[1], max_height=image.shape[0])
        assert np.array_equal(theirs, image), "Orthanc's image-uint16 is not the pixels it was given"
        _report("16-bit PNG out: unmap vs /image-uint16", *_pairs(unmap, uint16), PNG_OUT_TARGET)

        ours_peak, theirs_peak = _kib(proc.pid, "VmHWM"), _kib(orthanc_pid, "VmHWM")
        ratio = ours_peak / theirs_peak
        print(f"  peak RSS after the runs                      sensord {ours_peak / 1024:7.0f} MB | "
              f"Orthanc {theirs_peak / 1024:7.0f} MB")
        print(f"    ratio {ratio:.2f}x; goal <= {RSS_TARGET:g}x: {goal(ratio <= RSS_TARGET)}")
    finally:
        rest.close()
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    print(f"sensord vs Orthanc benchmark ({os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    try:
        import pytest

        from tests.support import orthanc as orthanc_support
    except ImportError as err:
        print(f"  skipped: the Orthanc launcher needs the test extra and the repository root ({err})")
        return
    # launch() would apt-get what is missing: a benchmark installs nothing.
    if not orthanc_support.ORTHANC.exists() or orthanc_support.dicomweb_plugin() is None:
        print(f"  skipped: Orthanc is not installed ({orthanc_support.ORTHANC} or its DICOMweb plugin "
              "missing; apt-get install orthanc orthanc-dicomweb, or run the process tests once as root)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "orthanc").mkdir()
        (Path(tmp) / "sensord").mkdir()
        try:
            server = orthanc_support.launch(Path(tmp) / "orthanc", Plugins=[])
        except (pytest.skip.Exception, RuntimeError, requests.RequestException) as err:
            print(f"  skipped: Orthanc did not start ({err})")
            return
        try:
            side_by_side(server, Path(tmp) / "sensord")
        finally:
            orthanc_support.stop(server)
