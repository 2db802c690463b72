"""A real DICOMweb archive for the tests: Debian's Orthanc with its DICOMweb plugin.

``orthanc`` (session scope) makes sure the packages are installed (as root it
runs ``apt-get install orthanc orthanc-dicomweb`` once; elsewhere, or if that
fails, the tests that need it are skipped with the reason), writes a config
in a temporary folder (storage, index and log all inside it, HTTP and DICOM
on free loopback ports, Basic auth on, only the DICOMweb plugin loaded) and
runs ``Orthanc --logfile=... CONFIG`` as a child process until the session
ends. Debian's own service runs ``Orthanc --logdir=/var/log/orthanc
/etc/orthanc`` as the ``orthanc`` user; none of that is used here.

``archive`` (function scope) hands out the same server emptied of the
previous test's instances, plus small helpers over Orthanc's own REST API.

The same Orthanc speaks DICOM too (DIMSE, on ``dicom_port`` as AE title
``ORTHANC``): its ModalityWorklists plugin answers C-FIND from the
``.wl`` files a test writes in ``worklists``; it takes C-STORE only from
the one modality it knows, ``SENSORD`` at 127.0.0.1:``modality_port``, and
sends that modality its storage commitment reports (N-EVENT-REPORT) on a new
association to that port, where a test's sensord listens.

``launch(folder, **overrides)`` starts another Orthanc with some options
changed (``AcceptedTransferSyntaxes`` for an archive that refuses JPEG-LS);
the caller stops it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
import requests

from tests.support.loopback import free_port

ORTHANC = Path("/usr/sbin/Orthanc")
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
USER, PASSWORD = "sensord", "archive-secret"
START_TIMEOUT = 30.0


MODALITY_AE = "SENSORD"       # the station Orthanc knows (its DicomModalities)
ORTHANC_AE = "ORTHANC"


def plugin_path(name: str) -> Path | None:
    for folder in PLUGIN_DIRS:
        for path in sorted(folder.glob(f"{name}.so*")):
            return path
    return None


def dicomweb_plugin() -> Path | None:
    return plugin_path("libOrthancDicomWeb")


def ensure_installed() -> Path:
    """The DICOMweb plugin's path, installing Debian's packages once if needed."""
    plugin = dicomweb_plugin()
    if ORTHANC.exists() and plugin is not None:
        return plugin
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("Orthanc is not installed and this is not a root Debian machine "
                    "(apt-get install orthanc orthanc-dicomweb)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "orthanc", "orthanc-dicomweb"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    plugin = dicomweb_plugin()
    if not ORTHANC.exists() or plugin is None:
        pytest.skip("orthanc and orthanc-dicomweb installed, but Orthanc or its DICOMweb plugin is missing")
    return plugin


def write_config(folder: Path, plugin: Path, **overrides) -> dict:
    worklists = folder / "worklists"
    worklists.mkdir(exist_ok=True)
    plugins = [str(plugin)]
    worklist_plugin = plugin_path("libModalityWorklists")
    if worklist_plugin is not None:
        plugins.append(str(worklist_plugin))
    config = {
        "Name": "sensord-tests",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "StorageCompression": False,
        "HttpPort": free_port(),
        "DicomPort": free_port(),
        "DicomAet": ORTHANC_AE,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": False,  # C-STORE only from the modality declared below
        "DicomAlwaysAllowFind": True,    # the worklist answers any station
        "DicomScuTimeout": 10,
        "DicomModalities": {
            "sensord": {"AET": MODALITY_AE, "Host": "127.0.0.1", "Port": free_port(),
                        "AllowStorageCommitment": True},
        },
        "Worklists": {"Enable": True, "Database": str(worklists)},
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "HttpDescribeErrors": True,
        "HttpThreadsCount": 8,
        "ConcurrentJobs": 1,
        "SaveJobs": False,
        "OverwriteInstances": False,     # Orthanc's default, stated: a second copy is not stored
        "Plugins": plugins,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        **overrides,
    }
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    return config


@dataclass
class Orthanc:
    base: str          # Orthanc's REST API, e.g. http://127.0.0.1:PORT
    dicomweb: str      # the DICOMweb root: base + /dicom-web
    username: str
    password: str
    log: Path
    dicom_port: int = 0      # Orthanc's DICOM port (AE title ORTHANC_AE)
    modality_port: int = 0   # where Orthanc expects SENSORD (storage commitment reports)
    worklists: Path | None = None    # the worklist plugin's folder of .wl files
    process: subprocess.Popen | None = None

    def rest(self) -> requests.Session:
        http = requests.Session()
        http.auth = (self.username, self.password)
        return http

    def instances(self) -> list[str]:
        with self.rest() as http:
            response = http.get(f"{self.base}/instances", timeout=10)
            response.raise_for_status()
            return response.json()

    def instance_file(self, orthanc_id: str) -> pydicom.Dataset:
        from io import BytesIO
        with self.rest() as http:
            response = http.get(f"{self.base}/instances/{orthanc_id}/file", timeout=10)
            response.raise_for_status()
            return pydicom.dcmread(BytesIO(response.content))

    def clear(self) -> None:
        with self.rest() as http:
            for patient in http.get(f"{self.base}/patients", timeout=10).json():
                http.delete(f"{self.base}/patients/{patient}", timeout=10).raise_for_status()
        if self.worklists is not None:
            for path in self.worklists.glob("*.wl"):
                path.unlink()


class OrthancExited(RuntimeError):
    """Orthanc ended during its start (a port taken since it was picked, or a bad option)."""


def _wait_up(process: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OrthancExited(f"Orthanc exited with {process.returncode}:\n{_tail(log)}")
        try:
            if requests.get(f"{base}/system", auth=(USER, PASSWORD), timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"Orthanc did not answer /system within {START_TIMEOUT:g} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def launch(folder: Path, **overrides) -> Orthanc:
    """Start an Orthanc in ``folder`` (options over the tests' defaults); ``stop`` it after."""
    plugin = ensure_installed()
    for attempt in range(3):
        try:
            return _launch(folder, plugin, **overrides)
        except OrthancExited:
            # Its ports were free when picked: one taken since makes it exit. New ones, again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _launch(folder: Path, plugin: Path, **overrides) -> Orthanc:
    config = write_config(folder, plugin, **overrides)
    log = folder / "orthanc.log"
    base = f"http://127.0.0.1:{config['HttpPort']}"
    process = subprocess.Popen([str(ORTHANC), f"--logfile={log}", "--no-jobs", str(folder / "orthanc.json")],
                               cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    server = Orthanc(base=base, dicomweb=f"{base}/dicom-web", username=USER, password=PASSWORD, log=log,
                     dicom_port=config["DicomPort"], modality_port=config["DicomModalities"]["sensord"]["Port"],
                     worklists=folder / "worklists", process=process)
    try:
        _wait_up(process, base, log)
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: Orthanc) -> None:
    process = server.process
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    server = launch(tmp_path_factory.mktemp("orthanc"))
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture
def archive(orthanc):
    """The session's Orthanc, with no instance left from another test."""
    orthanc.clear()
    return orthanc


INTRAORAL = "1.2.840.10008.5.1.4.1.1.1.3"       # Digital Intra-Oral X-Ray, for presentation


def dicom_file(image) -> bytes:
    """A Part-10 file (explicit VR little endian) of ``image``'s pixels as an intraoral image:
    what the tests and the side-by-side benchmark store into Orthanc."""
    from io import BytesIO

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = INTRAORAL
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = INTRAORAL, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "PIXELS", "Pixels^Only", "IO"
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = image.astype("<u2").tobytes()
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
