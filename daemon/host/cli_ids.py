"""An id or a unique start of it, as operators type them."""
from __future__ import annotations

from .cli_target import CliError

SHOWN = 8       # candidates named in a refusal


def unique(prefix: str, known: dict[str, str], what: str) -> str:
    """The one id of ``known`` (id -> description) that is ``prefix`` or starts with it.

    CliError when none does, or several do (naming them)."""
    if prefix in known:
        return prefix
    matches = sorted(i for i in known if i.startswith(prefix)) if prefix else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        listed = ", ".join(f"{i} ({known[i]})" for i in sorted(known)[:SHOWN]) or "none"
        raise CliError(f"no {what} {prefix!r} (known: {listed})")
    named = ", ".join(f"{i} ({known[i]})" for i in matches[:SHOWN])
    more = f" and {len(matches) - SHOWN} more" if len(matches) > SHOWN else ""
    raise CliError(f"{what} {prefix!r} is ambiguous: it starts {len(matches)} ids: {named}{more}; "
                   f"type more of it", code=2)
