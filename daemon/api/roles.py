"""Roles: who may do what once their credentials are good.

Two roles. A *client* is the imaging software: it speaks the two DSIO APIs
and sees only its own work, the acquisition sessions and filter resources
it created. An *operator* also has sensord's own API (device controls,
forwarding, the outbox, the status snapshot), the status page, and every
session and resource.

    [auth.roles]
    alice = "operator"      # a user not listed is a client

The user the daemon creates at first start (``admin``, when no users are
configured) is an operator: it is the one the operator CLI reads from the
state folder.

Which endpoints a client may call is decided by blueprint, and the list
names the client's blueprints, not the operator's: an endpoint added later
is an operator's until someone decides otherwise.

Ownership is answered with 404, as if the thing were absent: a client must
not learn which session ids exist, nor whose they are. The device list is
shared (a client must see which device it may open), so a device held by
another client's session still answers 409 to a create: that much is
visible to everyone anyway.
"""
from __future__ import annotations

from flask import g, request

from .errors import ApiError

CLIENT = "client"
OPERATOR = "operator"
ROLES = (CLIENT, OPERATOR)

# The DSIO Modality and Filters APIs: the imaging software's whole world.
CLIENT_BLUEPRINTS = frozenset({"modality_api", "filters_api"})


def effective_roles(configured_users: dict, roles: dict, default_user: str) -> dict[str, str]:
    """The role table in force: the configured one, or, when the daemon made
    its own ``default_user`` because none was configured, that user as operator."""
    if not configured_users:
        return {**roles, default_user: OPERATOR}
    return dict(roles)


def remember(user: str, role: str) -> None:
    """Note who this request is (called by the authenticator once credentials are good)."""
    g.sensord_user = user
    g.sensord_role = role


def current_user() -> str | None:
    return g.get("sensord_user")


def is_operator() -> bool:
    return g.get("sensord_role") == OPERATOR


def may_see(owner: str | None) -> bool:
    """Whether this request's user may see a thing created by ``owner``.

    An empty owner (a resource stored before owners were recorded) belongs
    to no client: only operators see it."""
    return is_operator() or (bool(owner) and owner == current_user())


def require_role() -> None:
    """Refuse (403) an operator's endpoint to a client; the body names the role missing."""
    if request.url_rule is None:
        return              # no such route: routing answers 404/405 as for anyone
    if request.blueprint in CLIENT_BLUEPRINTS or is_operator():
        return
    raise ApiError(403, f"{request.path} needs the {OPERATOR} role; user {current_user()!r} "
                        f"has the {CLIENT} role")
