"""What the installed systemd unit tells the operator CLI about the daemon it runs.

Under systemd the daemon's state folder is ``$STATE_DIRECTORY``, which
systemd sets from the unit's ``StateDirectory=`` (``/var/lib/sensord``), and
its certificate may be a ``LoadCredential=`` copy that exists only while the
service runs. An operator's shell has neither, so the CLI reads the unit
file itself: ``StateDirectory=``, ``WorkingDirectory=``, ``LoadCredential=``
and the options of ``ExecStart=`` (``--config``, ``--host``, ``--port``,
``--state-dir``), with drop-ins (``systemctl edit``) applied in systemd's
order. Only system units: a system service keeps its state under /var/lib.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

UNIT_NAME = "sensord.service"
# systemd's search path for system units, highest priority first.
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/usr/lib/systemd/system", "/lib/systemd/system")
STATE_ROOT = Path("/var/lib")       # where StateDirectory= puts a system service's folder
CREDENTIALS_ROOT = Path("/run/credentials")
SERVE_OPTIONS = ("--config", "--host", "--port", "--state-dir")


@dataclass
class Unit:
    path: Path
    exec_start: list[str] = field(default_factory=list)
    state_directory: str = ""
    working_directory: str = ""
    credentials: dict[str, str] = field(default_factory=dict)   # id -> the file it copies

    @property
    def name(self) -> str:
        return self.path.name

    def option(self, name: str) -> str | None:
        """The value ExecStart gives ``name`` (``--config FILE`` or ``--config=FILE``)."""
        args = self.exec_start
        for i, word in enumerate(args):
            if word == name and i + 1 < len(args):
                return args[i + 1]
            if word.startswith(name + "="):
                return word[len(name) + 1:]
        return None

    @property
    def state_folder(self) -> Path | None:
        """$STATE_DIRECTORY as systemd sets it for this unit (the first folder listed)."""
        first = self.state_directory.split()[0] if self.state_directory.strip() else ""
        return STATE_ROOT / first if first else None

    def credential_source(self, path: str) -> str | None:
        """The file a LoadCredential= copy at ``path`` was made from, or None."""
        folder = CREDENTIALS_ROOT / self.name
        candidate = Path(path)
        if candidate.parent != folder:
            return None
        return self.credentials.get(candidate.name)


def find(name: str | None = None) -> Path | None:
    """The unit file ``name`` (a unit name or a path; default $SENSORD_UNIT, else
    sensord.service) as systemd would pick it, or None when not installed."""
    name = name or os.environ.get("SENSORD_UNIT") or UNIT_NAME
    if "/" in name:
        return Path(name) if Path(name).is_file() else None
    for folder in UNIT_DIRS:
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def read(path: Path) -> Unit:
    """The unit at ``path`` with its drop-ins; OSError if it cannot be read."""
    unit = Unit(path=path)
    drop_ins: dict[str, Path] = {}
    # Lowest priority first: the unit's own folder (when outside the search path), then the search path upwards.
    folders = [Path(d) for d in reversed(UNIT_DIRS)]
    if path.parent not in folders:
        folders.insert(0, path.parent)
    for folder in folders:
        extra = folder / (path.name + ".d")
        if extra.is_dir():
            # A drop-in of the same name in a higher-priority folder hides the lower one.
            drop_ins.update({p.name: p for p in extra.glob("*.conf")})
    for file in (path, *(drop_ins[n] for n in sorted(drop_ins))):
        _apply(unit, file.read_text(encoding="utf-8", errors="replace"))
    return unit


def _apply(unit: Unit, text: str) -> None:
    section = ""
    for line in _logical_lines(text):
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service" or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key == "ExecStart":
            # An empty assignment resets the list (how a drop-in replaces the command).
            unit.exec_start = _command(value) if value else []
        elif key == "StateDirectory":
            unit.state_directory = f"{unit.state_directory} {value}".strip() if value else ""
        elif key == "WorkingDirectory":
            unit.working_directory = value.lstrip("-")
        elif key == "LoadCredential" and ":" in value:
            ident, source = value.split(":", 1)
            unit.credentials[ident.strip()] = source.strip()


def _logical_lines(text: str):
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield (pending + line).strip()
        pending = ""
    if pending:
        yield pending.strip()


def _command(value: str) -> list[str]:
    # systemd's prefixes (-, @, :, +, !) before the executable change how it runs, not what.
    try:
        words = shlex.split(value)
    except ValueError:
        words = value.split()
    if words:
        words[0] = words[0].lstrip("-@:+!")
    return words
