"""The on-disk store of image resources, where they expire.

Each resource is a folder of its own; its files, its record and how they
are written are in ``resource_folder.py``.

An upload's folder is renamed into place by the writer thread while its
PNG is still being proved (so the rename's fsync, 4-6 ms, is not waited for
after the proof), with the ``unproven`` marker in it. The resource enters
the index once the proof passes, and the marker is then removed; a failed
proof takes the folder away again. A marker still there at start (a crash
came first, or its removal was not yet on disk) has the PNG decoded then:
kept if it decodes, removed if it is no PNG. So every resource served, after
a restart too, is a proved PNG. A proof done while the disk still writes
spends the wait undoing the PNG's row filters, the first filter's work.

A resource linked to a modality session has no media of its own; its pixels
are looked up in the session when a filter runs.

Only the index (id, times, size, link, owner: a few hundred bytes each) is
kept in memory. An imageInfo may be as large as ``images.max_info_kb``, so
it stays on disk and resource.json is read when a resource is asked for:
start-up time and memory grow with the number of resources, not with what
their clients wrote into them.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

import numpy as np

from sensord.daemon.durable import fsync_dir
from sensord.daemon.errors import ServiceError
from sensord.filters.png import PngError
from sensord.filters.png_scanlines import Scanlines

from .pixel_cache import PixelCache
from .resource_folder import MEDIA, META, UNPROVEN, Indexed, Resource, read_index, remove_unfinished, write_folder

log = logging.getLogger("sensord.store")

WRITER_THREADS = 4      # uploads written at once while their PNGs are proved; more wait their turn


class QuotaExceeded(ServiceError):
    """The upload would take the store beyond its configured quota."""
    status = 507


class StoreFull(ServiceError):
    """The disk itself refused the write (ENOSPC, EDQUOT)."""
    status = 507


class ResourceStore:
    def __init__(self, root: Path, *, lifetime: float, quota_bytes: int,
                 decode: Callable[[bytes], np.ndarray], pixel_cache: PixelCache,
                 clock: Callable[[], float] = time.time):
        self.root = Path(root)
        self.lifetime = lifetime
        self.quota_bytes = quota_bytes
        self.clock = clock
        self._decode = decode
        # Shared with the session images under one budget; our keys are resource ids.
        self._cache = pixel_cache.scope("resources")
        self._index: dict[str, Indexed] = {}
        self._used = 0
        self._lock = threading.Lock()
        # Writes the files of an upload while its PNG is proved (`create`'s proof);
        # threads start on first use.
        self._writer = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="store-write")

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        """Load what survived the last run; clear what a crash left half done."""
        self.root.mkdir(parents=True, exist_ok=True)
        now = self.clock()
        for entry in self.root.iterdir():
            if entry.name.startswith((".new-", ".del-")):
                log.warning("removing unfinished resource folder %s", entry.name)
                shutil.rmtree(entry, ignore_errors=True)
                continue
            try:
                res = read_index(entry)
                if res.id != entry.name:
                    raise ValueError(f"its record names resource {res.id!r}")
                if not res.linked and not (entry / MEDIA).is_file():
                    raise FileNotFoundError(MEDIA)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                log.warning("removing unreadable resource %s (%s)", entry.name, err)
                shutil.rmtree(entry, ignore_errors=True)
                continue
            if res.expires <= now or not self._proved_at_start(entry):
                shutil.rmtree(entry, ignore_errors=True)
                continue
            self._index[res.id] = res
            self._used += res.size
        log.info("store %s: %d resources, %.1f MiB", self.root, len(self._index), self._used / 2**20)

    def _proved_at_start(self, folder: Path) -> bool:
        """False for a folder still marked unproven whose media is no PNG (see the module)."""
        marker = folder / UNPROVEN
        if not marker.exists():
            return True
        try:
            self._decode((folder / MEDIA).read_bytes())
        except (PngError, OSError) as err:
            log.warning("removing resource %s: its upload was never proved (%s)", folder.name, err)
            return False
        except Exception as err:        # (the pixel budget, say): kept unproven, tried at the next start
            log.warning("resource %s: cannot prove its upload now (%s)", folder.name, err)
            return True
        marker.unlink(missing_ok=True)
        return True

    def close(self) -> None:
        # Every write is already durable; a create still running finishes its own.
        self._writer.shutdown(wait=False)

    @property
    def used_bytes(self) -> int:
        return self._used

    @property
    def count(self) -> int:
        """Resources held now (from the in-memory index: no disk read)."""
        return len(self._index)

    # -- create ------------------------------------------------------------
    def create(self, *, image_info: dict, media: bytes | memoryview, pixels: np.ndarray | None = None,
               media_type: str = "image/png", owner: str = "",
               proof: Callable[[], np.ndarray | Scanlines] | None = None) -> Resource:
        """Store ``media`` durably; its pixels, when given or proved, go to the pixel cache.

        ``proof``, when given, runs in the calling thread while a writer
        thread writes and fsyncs the files (both wait on the kernel or a C
        library with the GIL released, so they overlap): it returns the
        pixels (maybe `Scanlines`), or raises, and then nothing is stored
        and its error is raised. The resource appears once both are done.
        """
        return self._create(image_info, None, media, media_type, pixels, owner, proof)

    def create_linked(self, *, image_info: dict, session_id: str, image_id: str, owner: str = "") -> Resource:
        link = {"sessionId": session_id, "imageId": image_id}
        return self._create(image_info, link, None, "image/png", None, owner)

    def _create(self, image_info, link, media, media_type, pixels, owner="", proof=None) -> Resource:
        now = self.clock()
        rid = str(uuid.uuid4())
        res = Resource(id=rid, media_type=media_type, created_on=now, expires=now + self.lifetime,
                       image_info=image_info, modality_session=link, size=0, owner=owner)
        size = len(res.meta()) + 32 + (len(media) if media is not None else 0)
        res = dataclasses.replace(res, size=size)
        self._reserve(size)
        tmp, final = self.root / f".new-{rid}", self.root / rid
        meta = res.meta()
        written: Future | None = None
        try:
            tmp.mkdir()
            if proof is None:
                write_folder(tmp, media, meta)
                os.rename(tmp, final)
                fsync_dir(self.root)
            else:
                # Written and renamed into place (marked unproven) while the PNG is proved.
                try:
                    written = self._writer.submit(write_folder, tmp, media, meta, final)
                except RuntimeError:        # closing: no writer thread any more
                    write_folder(tmp, media, meta, final)
                pixels = proof()
                if written is not None:
                    if isinstance(pixels, Scanlines) and not written.done():
                        # Waiting for the disk anyway: undo the row filters now,
                        # in place, rather than in the first filter call.
                        pixels.pixels()
                    written.result()
                try:
                    (final / UNPROVEN).unlink()     # (not made durable: a marker left is proved at start)
                except OSError as err:
                    log.warning("resource %s: cannot remove its %s marker (%s)", rid, UNPROVEN, err)
        except BaseException as err:
            if written is not None:
                wait([written])     # (its files are removed next; it must not write after that)
            try:
                os.rename(final, tmp)       # renamed into place before the proof failed
            except OSError:
                pass
            remove_unfinished(tmp)
            with self._lock:
                self._used -= size
            if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFull(f"not enough storage: {err}") from err
            raise
        with self._lock:
            self._index[rid] = Indexed.of(json.loads(meta))
        if pixels is not None:
            self._cache.put(rid, pixels)
        log.info("stored resource %s (%.1f MiB)", rid, size / 2**20)
        return res

    def _reserve(self, size: int) -> None:
        for attempt in (1, 2):
            with self._lock:
                if self._used + size <= self.quota_bytes:
                    self._used += size
                    return
            if attempt == 1:
                self.sweep()   # expired resources may still hold the space
        raise QuotaExceeded(
            f"not enough storage: storing {size / 2**20:.1f} MiB would exceed the store quota of "
            f"{self.quota_bytes / 2**20:.0f} MiB ({self._used / 2**20:.1f} MiB in use)")

    # -- read --------------------------------------------------------------
    def _live(self, rid: str) -> Indexed | None:
        with self._lock:
            entry = self._index.get(rid)
        if entry is None or entry.expires <= self.clock():
            return None
        return entry

    def get(self, rid: str) -> Resource | None:
        """The live resource, or None if unknown or expired.

        Read from resource.json each time: only ids in the index are looked
        up, so a client's id never names a path of its own choosing.
        """
        if self._live(rid) is None:
            return None
        try:
            return Resource.from_meta((self.root / rid / META).read_bytes())
        except FileNotFoundError:
            return None     # deleted or swept since the index was read
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("resource %s: cannot read its %s (%s)", rid, META, err)
            return None

    def media_path(self, res: Resource) -> Path:
        return self.root / res.id / MEDIA

    def media(self, res: Resource) -> bytes | None:
        try:
            return self.media_path(res).read_bytes()
        except FileNotFoundError:
            return None

    def pixels(self, res: Resource) -> np.ndarray | None:
        """Decoded pixels of a resource with its own media (read-only array)."""
        cached = self._cache.get(res.id)
        if cached is not None:
            return cached
        data = self.media(res)
        if data is None:
            return None
        return self._cache.put(res.id, self._decode(data))

    # -- remove ------------------------------------------------------------
    def delete(self, rid: str) -> bool:
        """Remove a resource; False if it was unknown or had already expired."""
        res = self._live(rid)
        self._remove(rid)
        return res is not None

    def _remove(self, rid: str) -> None:
        with self._lock:
            res = self._index.pop(rid, None)
            if res is None:
                return
            self._used -= res.size
        self._cache.drop(rid)
        gone = self.root / f".del-{rid}"
        try:
            os.rename(self.root / rid, gone)
        except FileNotFoundError:
            return
        shutil.rmtree(gone, ignore_errors=True)

    def sweep(self) -> int:
        """Remove expired resources from disk; returns how many."""
        now = self.clock()
        with self._lock:
            expired = [rid for rid, res in self._index.items() if res.expires <= now]
        for rid in expired:
            self._remove(rid)
        if expired:
            log.info("swept %d expired resources", len(expired))
        return len(expired)
