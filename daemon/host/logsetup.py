"""Logging: one format, the configured levels, and quiet libraries.

Under journald (stderr is the stream ``$JOURNAL_STREAM`` names) the journal
stamps each line itself, so the timestamp is left out, and each line starts
with its syslog priority (``<4>`` for WARNING), which journald reads and
strips, so ``journalctl -p warning`` filters by level. apscheduler logs two
INFO lines per job run, every second for the outbox poll: it is held at
WARNING unless ``log.loggers`` says otherwise. pynetdicom logs every PDU at
INFO and an ERROR for each connection refused; sensord's own DICOM code logs
what an operator can act on (a worklist that stops answering, once), so
pynetdicom is held at CRITICAL unless asked for.
"""
from __future__ import annotations

import logging
import os
import sys

QUIET = {"apscheduler": "WARNING", "pynetdicom": "CRITICAL"}


def under_journald() -> bool:
    """True when stderr is the journal stream systemd connected (not merely inherited the variable)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


# syslog priorities (RFC 5424) of Python's levels
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def _add_priority(record: logging.LogRecord) -> bool:
    record.syslog_priority = _PRIORITY.get(record.levelno, 6 if record.levelno > logging.DEBUG else 7)
    return True


def configure(settings) -> None:
    journal = under_journald()
    fmt = "<%(syslog_priority)d>%(levelname)s %(name)s: %(message)s" if journal \
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(format=fmt)
    if journal:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_add_priority)
    apply_levels(settings)


_named: set[str] = set()      # loggers given a level of their own, so a reload can take it back


def apply_levels(settings) -> None:
    """Set the root level and each named logger's (also on reload)."""
    logging.getLogger().setLevel(settings.level.upper())
    levels = {**QUIET, **settings.loggers}
    for name in _named - set(levels):
        logging.getLogger(name).setLevel(logging.NOTSET)       # follows the root again
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level.upper())
    _named.clear()
    _named.update(levels)
