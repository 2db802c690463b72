"""Peak resident memory of this process (Linux /proc), for tests that bound it.

``VmHWM`` is the most memory the process has held resident; writing "5" to
/proc/self/clear_refs sets it back to what is resident now, so the growth a
piece of work causes is measured without psutil and counts every allocator
(numpy, OpenCV's C++, zlib), not only Python's. An in-process daemon shares
the process with the test, so this measures the server's peak too.
"""
from __future__ import annotations

import re
from pathlib import Path

MiB = 1 << 20


def _status_kib(field: str, pid: int | str = "self") -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"/proc/{pid}/status has no {field}")
    return int(found.group(1))


def rss_bytes(pid: int | str = "self") -> int:
    return _status_kib("VmRSS", pid) << 10


def reset_peak(pid: int | str = "self") -> int:
    """Make the peak equal the current resident size; returns that size in bytes."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return rss_bytes(pid)


def peak_bytes(pid: int | str = "self") -> int:
    return _status_kib("VmHWM", pid) << 10
