"""A Delivery as the outbox hands it to an adapter, built from a real PNG."""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from sensord.daemon.forward.platforms.base import Delivery
from tests.support import images


def make_delivery(tmp_path: Path, *, target: str = "t", entry_id: int = 1, image_id: str | None = None,
                  context: dict | None = None, height: int = 120, width: int = 160) -> Delivery:
    pixels = images.raw_image(height, width)
    image_id = image_id or str(uuid.uuid4())
    path = tmp_path / f"{image_id}.png"
    path.write_bytes(images.png16(pixels))
    info = {
        "id": image_id, "createdOn": "2026-11-23T10:15:00.000Z", "width": width, "height": height,
        "bitsPerPixel": 12, "bytesPerPixel": 2, "pixelSizeX": 0.015, "pixelSizeY": 0.015,
        "pixelHash": {"alg": "MD5", "hash": hashlib.md5(pixels.astype("<u2").tobytes()).hexdigest()},
        "sensorInfo": {"modelName": "Simradix Supreme 2", "serialNumber": "SU2-1", "brand": "Simradix",
                       "family": "Supreme", "size": 2, "width": 2400, "height": 1708, "supportsBinning": True,
                       "version": "2.4.1"},
        "deviceInfo": {"deviceId": "dev-1", "name": "Simradix USB Link: SU-1", "modelName": "Simradix USB Link",
                       "serialNumber": "SU-1", "interfaceType": "usb", "version": "3.2.1"},
        "acquisitionInfo": {"enable": True, "rotation": 0, "binning": "Unbinned", "applyLut": False,
                            "context": {"tooth": "36"}},
        "lutInfo": None,
        "exposureInfo": {"min": -1.0, "max": 1.0, "low": -0.5, "high": 0.5, "optimum": 0.0, "value": 0.02},
    }
    ctx = {"patientId": "P-0001", "patientName": "Doe^Jane", "birthDate": "1980-04-02", "sex": "F",
           "studyDate": "2026-11-23", "studyDescription": "Bitewing", "laterality": "L", "tooth": "36"}
    ctx.update(context or {})
    return Delivery(entry_id=entry_id, target=target, image_id=image_id, png_path=path, image_info=info,
                    context=ctx)
