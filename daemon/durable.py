"""Durable file operations: what a 201 promises rests on these.

Write to a temporary name, fsync the data, rename into place, fsync the
directory so the rename itself survives power loss. A file whose bytes are
already durable elsewhere on the same disk can be hard-linked instead.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable. Some file systems (network shares)
    cannot fsync a folder; there the rename is as durable as they make it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes | memoryview, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` (a new file) and optionally fsync it."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def _temporary(path: Path) -> Path:
    # Per process and thread: two writers of one name never share a temporary.
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def write_atomic(path: Path, data: bytes, *, check=None):
    """Replace ``path`` with ``data`` so a reader sees the old or the new file, never half.

    ``check(bytes_read_back)``, when given, runs on the temporary file as read
    from the disk (or the mounted share) before the rename; if it raises,
    nothing appears at ``path``. Returns what ``check`` returned.
    """
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        result = check(tmp.read_bytes()) if check is not None else None
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return result


def link_atomic(source: Path, path: Path) -> None:
    """Make ``path`` a hard link to ``source``, whose bytes are already durable.

    No byte is copied; only the new name is made durable (rename into place,
    fsync the folder). Raises OSError where no link can be made (``source``
    on another file system, a share without hard links, ``source`` gone);
    the caller then falls back to ``write_atomic``.
    """
    tmp = _temporary(path)
    os.link(source, tmp)
    try:
        # Through a temporary and a rename, as write_atomic: an existing
        # ``path`` is replaced whole rather than failing the link.
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
