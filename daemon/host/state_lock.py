"""The state folder belongs to one daemon at a time.

A start clears what the previous run left (session images, half-written
resources). Were a second `sensord serve` to do that beside a running
daemon, it would delete that daemon's live X-ray images before finding the
port taken. So before anything in the folder is touched, ``serve`` takes
an exclusive lock on ``<state>/sensord.lock`` and holds it for the life of
the process (the kernel releases it when the process ends, however it
ends); a second start finds it held, changes nothing and names the holder.

The lock file holds the holder's pid, for that message only: the lock, not
the pid, decides (a stale pid from a crashed run is simply overwritten).
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "sensord.lock"


class StateFolderBusy(RuntimeError):
    """Another process holds the state folder."""

    def __init__(self, folder: Path, pid: int | None):
        self.pid = pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"the state folder {folder} is in use by {holder} (another sensord serve?); "
                         "nothing was changed")


class StateLock:
    def __init__(self, folder: Path, fd: int):
        self.folder = folder
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)          # closing the file releases the lock
            self._fd = None


def lock_state_folder(folder: str | os.PathLike) -> StateLock:
    """Create the folder if need be (0700 under serve's umask), lock it, write our pid.

    Raises StateFolderBusy, naming the holder's pid, when it is locked already.
    """
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise StateFolderBusy(folder, pid) from None
    except BaseException:
        os.close(fd)
        raise
    # Ours now: replace whatever pid a previous run left.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return StateLock(folder, fd)


def under_systemd() -> bool:
    """Started by systemd (it sets $INVOCATION_ID, and $STATE_DIRECTORY with StateDirectory=)."""
    return bool(os.environ.get("STATE_DIRECTORY") or os.environ.get("INVOCATION_ID"))


def private_files() -> None:
    """Outside systemd, everything the daemon creates is its user's alone:
    files 0600, folders 0700 (patient images, the admin password, the outbox).
    Under systemd the unit's UMask= (0077 in ours) decides, as the admin set it."""
    if not under_systemd():
        os.umask(0o077)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None     # the holder has not written it yet
