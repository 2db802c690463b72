"""One resource on disk: its folder's files, its record, and how they are written.

Layout under ``<state_dir>/resources``::

    <id>/resource.json   what GET /images/{id} reports, with epoch timestamps
    <id>/index.json      resource.json without the imageInfo: what start reads
    <id>/media.png       the uploaded bytes, unchanged
    <id>/unproven        (empty) the upload's PNG was still being proved when
                         the folder was renamed into place: start proves it
    .new-<id>/           a resource being written (removed at start: a crash
                         mid-upload leaves no half resource)
    .del-<id>/           a resource being removed

A resource is written whole in ``.new-<id>``, each file fsynced, then renamed
to ``<id>`` and the folder fsynced: a 201 means the bytes are on disk.
index.json is not fsynced: it is resource.json less the imageInfo, and a
start that cannot parse it reads resource.json instead.

The store that keeps, expires and serves these is ``resources.py``.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sensord.daemon.dsio.timefmt import iso
from sensord.daemon.durable import fsync_dir, write_file

MEDIA = "media.png"
META = "resource.json"
INDEX = "index.json"
UNPROVEN = "unproven"


@dataclass(frozen=True)
class Resource:
    id: str
    media_type: str
    created_on: float
    expires: float
    image_info: dict
    modality_session: dict | None
    size: int
    # The user who created it, kept in the record (not in to_json: not part
    # of the wire format); "" for a record written before owners were kept.
    owner: str = ""

    @property
    def linked(self) -> bool:
        return self.modality_session is not None

    def to_json(self, url: str) -> dict:
        out = {
            "id": self.id,
            "mediaType": self.media_type,
            "url": url,
            "createdOn": iso(self.created_on),
            "expires": iso(self.expires),
            "imageInfo": self.image_info,
        }
        # The spec's modalitySession is an object when present, never null.
        if self.modality_session is not None:
            out["modalitySession"] = self.modality_session
        return out

    def meta(self) -> bytes:
        """resource.json's bytes."""
        return json.dumps({
            "id": self.id, "mediaType": self.media_type, "createdOn": self.created_on,
            "expires": self.expires, "imageInfo": self.image_info,
            "modalitySession": self.modality_session, "size": self.size, "owner": self.owner,
        }, separators=(",", ":")).encode()

    @classmethod
    def from_meta(cls, data: bytes) -> "Resource":
        m = json.loads(data)
        return cls(id=m["id"], media_type=m["mediaType"], created_on=float(m["createdOn"]),
                   expires=float(m["expires"]), image_info=m["imageInfo"],
                   modality_session=m.get("modalitySession"), size=int(m["size"]),
                   owner=str(m.get("owner") or ""))


@dataclass(frozen=True)
class Indexed:
    """What the store keeps in memory of a resource: enough to find, expire
    and account for it. ``record`` is resource.json without the imageInfo
    (what index.json holds), so any other small field, an owner, is at hand."""

    id: str
    expires: float
    size: int
    record: dict

    @classmethod
    def of(cls, record: dict) -> "Indexed":
        small = {k: v for k, v in record.items() if k != "imageInfo"}
        return cls(id=str(small["id"]), expires=float(small["expires"]), size=int(small["size"]), record=small)

    @property
    def linked(self) -> bool:
        return self.record.get("modalitySession") is not None


def _index_bytes(meta: bytes) -> bytes:
    return json.dumps(Indexed.of(json.loads(meta)).record, separators=(",", ":")).encode()


def write_folder(folder: Path, media: bytes | memoryview | None, meta: bytes, into: Path | None = None) -> None:
    """A resource's files, each fsynced, then the folder: all durable before the rename.

    With ``into``, the folder is then renamed there (marked unproven) and the rename made durable.
    """
    if media is not None:
        write_file(folder / MEDIA, media)
    write_file(folder / META, meta)
    # Derived from META, so written after it; unsynced: a start that cannot parse it reads META.
    write_file(folder / INDEX, _index_bytes(meta), sync=False)
    if into is not None:
        write_file(folder / UNPROVEN, b"", sync=False)     # (empty: the folder's fsync keeps it)
    fsync_dir(folder)
    if into is not None:
        os.rename(folder, into)
        fsync_dir(into.parent)


def read_index(folder: Path) -> Indexed:
    """index.json; resource.json (read whole) where there is none: a store
    written before index.json existed, or an index.json that cannot be read."""
    try:
        return Indexed.of(json.loads((folder / INDEX).read_bytes()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        record = Indexed.of(json.loads((folder / META).read_bytes()))
    if not (folder / META).is_file():
        raise FileNotFoundError(META)
    return record


def remove_unfinished(folder: Path) -> None:
    """Remove a folder that write_folder left half written.

    By name first: rmtree must open the folder to list it, which fails when
    the process is out of file descriptors (EMFILE); unlink and rmdir need none.
    """
    for name in (MEDIA, META, INDEX, UNPROVEN):
        try:
            (folder / name).unlink(missing_ok=True)
        except OSError:
            pass
    try:
        folder.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
