"""The dimse target on loopback: from queueing to committed by a real Orthanc,
and the size of a JPEG-LS lossless object against the uncompressed one.

Images: the simulated exposure at full Supreme 2 size (2400x1708, 12-bit,
drivers/phantom.py), as acquired (linear grays) and with the display map
applied (16-bit, what ``applyLut`` delivers). Orthanc is started as the tests
start it (tests/support/orthanc.py); without it the timing is skipped with a
line and only the sizes are printed.
"""
from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sensord import filters

from .filters_http import HEIGHT, LUT, LUT_INFO, WIDTH
from .timing import best_of, row

SINGLE_RUNS = 5
BATCH = 16


def images() -> dict:
    from sensord.drivers.phantom import phantom

    raw = phantom(width=WIDTH, height=HEIGHT, bits=12, seed=7)
    return {"acquired (12-bit linear)": (raw, None), "mapped (16-bit, applyLut)": (filters.lut_map(raw, lut=LUT),
                                                                                   LUT_INFO)}


def image_info(pixels, lut_info) -> dict:
    return {"createdOn": "2026-11-30T10:00:00.000Z", "width": WIDTH, "height": HEIGHT, "bitsPerPixel": 12,
            "pixelSizeX": 0.015, "pixelSizeY": 0.015, "lutInfo": lut_info,
            "pixelHash": {"alg": "MD5", "hash": hashlib.md5(pixels.astype("<u2").tobytes()).hexdigest()},
            "sensorInfo": {"modelName": "Simradix Supreme 2", "serialNumber": "SU2-1", "brand": "Simradix"},
            "acquisitionInfo": {"rotation": 0, "binning": "Unbinned"}}


def sizes() -> None:
    from pydicom.pixels import get_decoder

    from sensord.daemon.dimse import syntaxes
    from sensord.daemon.forward.platforms import dicom

    print(f"  object sizes, {WIDTH}x{HEIGHT} (Part-10 file):")
    for name, (pixels, lut_info) in images().items():
        ds = dicom.build_dataset(pixels, image_info(pixels, lut_info), {"patientId": "P-1"},
                                 image_id=str(uuid.uuid4()))
        native = len(syntaxes.part10(syntaxes.encode(ds, "explicit-vr-little-endian")))
        jls = len(syntaxes.part10(syntaxes.encode(ds, "jpeg-ls-lossless")))
        print(f"    {name:<27} explicit VR {native / 2**20:5.2f} MiB, JPEG-LS lossless {jls / 2**20:5.2f} MiB "
              f"({jls / native:.2f}x, {native / jls:.2f}:1)")
        encoded = syntaxes.encode(ds, "jpeg-ls-lossless")
        decoder = get_decoder(encoded.file_meta.TransferSyntaxUID)
        print(row(f"  JPEG-LS encode, {name.split()[0]}",
                  best_of(lambda: syntaxes.encode(ds, "jpeg-ls-lossless"), repeat=5)))
        print(row(f"  JPEG-LS decode check, {name.split()[0]}",
                  best_of(lambda: decoder.as_array(encoded), repeat=5)))


def timing() -> None:
    from sensord.daemon.forward.commitment import CommitmentListener, listener_peers
    from sensord.daemon.forward.delivery import Forwarder, build_targets
    from sensord.daemon.forward.outbox import Outbox
    from sensord.daemon.settings import DicomSettings
    from sensord.filters import png
    from tests.support import orthanc as orthanc_support

    if not orthanc_support.ORTHANC.exists() or orthanc_support.dicomweb_plugin() is None:
        print("  queueing to committed: skipped (Orthanc is not installed: apt-get install orthanc orthanc-dicomweb)")
        return
    pixels, lut_info = images()["mapped (16-bit, applyLut)"]
    info = image_info(pixels, lut_info)
    data = png.encode_gray16(pixels)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "orthanc").mkdir()
        server = orthanc_support.launch(folder / "orthanc")
        try:
            for label, syntax in (("JPEG-LS", ["jpeg-ls-lossless"]), ("explicit VR", ["explicit-vr-little-endian"])):
                name = "pacs-" + syntax[0]
                targets = build_targets([{"name": name, "kind": "dimse", "host": "127.0.0.1",
                                          "port": server.dicom_port, "called_ae": orthanc_support.ORTHANC_AE,
                                          "storage_commitment": True, "transfer_syntaxes": syntax}],
                                        dicom=DicomSettings(ae_title=orthanc_support.MODALITY_AE, timeout_seconds=30))
                outbox = Outbox(folder / name)
                outbox.start()
                listener = CommitmentListener(outbox, host="127.0.0.1", port=server.modality_port,
                                              ae_title=orthanc_support.MODALITY_AE, peers=listener_peers(targets),
                                              timeout=30)
                listener.start()
                forwarder = Forwarder(outbox, targets, work_dir=folder / f"{name}-work")
                forwarder.start()
                try:
                    singles = [deliver(outbox, forwarder, name, info, data, 1) for _ in range(SINGLE_RUNS)]
                    batch = deliver(outbox, forwarder, name, info, data, BATCH)
                finally:
                    forwarder.close()
                    listener.close()
                    outbox.close()
                print(row(f"committed, 1 image, {label}", statistics.median(singles)))
                print(row(f"committed, {BATCH} images, {label}", batch)
                      + f"   ({batch / BATCH * 1e3:.0f} ms per image)")
        finally:
            orthanc_support.stop(server)


def deliver(outbox, forwarder, target: str, info: dict, data: bytes, count: int) -> float:
    """Seconds from queueing ``count`` images (durably) until all are committed."""
    while forwarder.in_flight:               # the previous round's association has ended
        time.sleep(0.01)
    before = outbox.counts().get("delivered", 0)
    started = time.perf_counter()
    for _ in range(count):
        outbox.add([(target, "raw")], image_id=str(uuid.uuid4()), image_info=info, context={"patientId": "P-1"},
                   png=data)
    while outbox.counts().get("delivered", 0) < before + count:
        if outbox.counts().get("dead"):
            raise RuntimeError(f"dead-lettered: {[e.last_error for e in outbox.list('dead')]}")
        forwarder.tick()
        time.sleep(0.002)
    return time.perf_counter() - started


def main() -> None:
    print(f"sensord dimse benchmark ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}): "
          f"C-STORE + storage commitment to Orthanc on loopback; times from queueing (durable) to committed")
    sizes()
    timing()
