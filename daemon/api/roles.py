"""Roles: who may do what once their credentials are good.

Three roles. A *client* is the imaging software: it speaks the two DSIO APIs
and sees only its own work, the acquisition sessions and filter resources
it created. An *operator* also has sensord's own API (device controls,
forwarding, the outbox, the status snapshot), the status page, /metrics,
and every session and resource. A *metrics* user (Prometheus scraping)
may read /metrics and nothing else.

    [auth.roles]
    alice = "operator"      # a user not listed is a client
    prometheus = "metrics"

/healthz and /readyz need no credentials at all (a load balancer's probe
has none); they carry no secret (api/health.py).

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
METRICS = "metrics"
ROLES = (CLIENT, OPERATOR, METRICS)

# The DSIO Modality and Filters APIs: the imaging software's whole world.
CLIENT_BLUEPRINTS = frozenset({"modality_api", "filters_api"})
METRICS_BLUEPRINTS = frozenset({"metrics"})
# Besides the operator, who may call each role's blueprints.
_GRANTED = {CLIENT: CLIENT_BLUEPRINTS, METRICS: METRICS_BLUEPRINTS}
# Answered to anyone, without credentials (the health probes).
PUBLIC_BLUEPRINTS = frozenset({"health"})


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


def is_public() -> bool:
    """Whether this request's endpoint answers without credentials."""
    return request.url_rule is not None and request.blueprint in PUBLIC_BLUEPRINTS


def require_role() -> None:
    """Refuse (403) an endpoint to a role not granted it; the body names the roles that are."""
    if request.url_rule is None:
        return              # no such route: routing answers 404/405 as for anyone
    role = g.get("sensord_role")
    if is_operator() or request.blueprint in _GRANTED.get(role, ()):
        return
    granted = [r for r, blueprints in _GRANTED.items() if request.blueprint in blueprints]
    raise ApiError(403, f"{request.path} needs the {' or '.join([*granted, OPERATOR])} role; "
                        f"user {current_user()!r} has the {role} role")
