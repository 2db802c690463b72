"""The layout holds: imports flow down the rooms, and tests share helpers only
through tests/support.

Read from the source with ``ast``, so an import hidden inside a function
counts as much as one at the top.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Higher may import lower, and a room may import itself; rooms of one rank
# are peers and import neither way.
RANK = {
    "host": 8,
    "app": 7, "service": 7,
    "api": 6,
    "acquisition": 5, "forward": 5, "worklist": 5,
    "store": 4, "dimse": 4,
    "live": 3,
    "dsio": 2,
    "base": 1,         # settings, durable, scheduler and other modules at daemon/'s top
    "drivers": 0,
    "filters": -1,
}
ROOMS = {"host", "api", "acquisition", "forward", "worklist", "store", "dimse", "live", "dsio"}


def room_of(module: str) -> str | None:
    """The room of an absolute module name under sensord, or None if not ours."""
    parts = module.split(".")
    if parts[0] != "sensord" or len(parts) < 2:
        return None
    if parts[1] in ("drivers", "filters"):
        return parts[1]
    if parts[1] != "daemon" or len(parts) < 3:
        return "base" if parts[1:] == ["daemon"] else None
    if parts[2] in ROOMS:
        return parts[2]
    if parts[2] in ("app", "service"):
        return parts[2]
    return "base"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["sensord", *parts])


def imports_of(path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports (relative ones resolved)."""
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(target)
            # `from pkg import module` names a module of that package
            found += [f"{target}.{alias.name}" for alias in node.names]
    return found


SOURCES = sorted(p for folder in ("daemon", "drivers", "filters") for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_down_the_rooms(path):
    mine = room_of(module_name(path))
    wrong = []
    for target in imports_of(path):
        theirs = room_of(target)
        if theirs is None or theirs == mine:
            continue
        if RANK[theirs] >= RANK[mine]:
            wrong.append(f"{target} ({theirs})")
    assert wrong == [], f"{path.relative_to(ROOT)} ({mine}) imports upward or sideways: {wrong}"


def test_no_top_level_names_but_sensord():
    """Code imports itself as sensord.*; a bare `daemon`, `drivers` or `filters`
    would be another distribution's module (python-daemon owns `daemon`)."""
    offenders = [f"{path.relative_to(ROOT)}: {target}"
                 for path in SOURCES + sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py"))
                 for target in imports_of(path) if target.split(".")[0] in ("daemon", "drivers", "filters")]
    assert offenders == []


def test_each_room_says_what_lives_there():
    for init in sorted((ROOT / "daemon").rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 8, f"{init.relative_to(ROOT)} needs an opening docstring"


TESTS = sorted((ROOT / "tests").glob("test_*.py"))


@pytest.mark.parametrize("path", TESTS, ids=lambda p: p.name)
def test_test_modules_import_no_other_test_module(path):
    own = f"tests.{path.stem}"
    others = [target for target in imports_of(path)
              if target.startswith("tests.") and not target.startswith(("tests.support", own))
              and target != "tests.support"]
    assert others == [], f"{path.name} imports {others}: shared helpers belong in tests/support"
