"""File descriptors: how many connections the daemon may hold at once.

Every connection costs descriptors: one over plain HTTP, three behind the
TLS front (the client's socket, the front's socket to waitress, waitress's
end of it). The rest of the daemon needs some as well, and needs them most
when it is busy: image files being written, upload bodies spooled to a
temporary file, the outbox, sensors, logs. So the connection budget is what
fits in RLIMIT_NOFILE once a reserve for all that is set aside.

The soft limit is raised toward the hard one when ``server.max_connections``
needs it (the systemd unit's LimitNOFILE sets both). When even the hard limit
is too small the budget shrinks, and the log says by how much: connections
beyond the budget wait in the listen backlog, where they cost nothing,
instead of taking the descriptors an upload needs to be written.
"""
from __future__ import annotations

import logging
import resource

log = logging.getLogger("sensord.server")

BASE_RESERVE = 64       # Python, libraries, logs, sensors, the outbox, listeners
PER_THREAD = 2          # a worker thread holds at most a spooled body and a file it writes
MIN_CONNECTIONS = 8     # below this the daemon is unusable anyway; serve and say so


def reserve_for(threads: int) -> int:
    """Descriptors kept back from connections for ``threads`` worker threads."""
    return BASE_RESERVE + PER_THREAD * threads


def connection_budget(wanted: int, *, per_connection: int, threads: int) -> int:
    """How many connections to accept at once: ``wanted``, or fewer if the
    descriptor limit cannot be raised far enough (logged as a warning)."""
    reserve = reserve_for(threads)
    need = wanted * per_connection + reserve
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft != unlimited and soft < need:
        target = need if hard == unlimited else min(need, hard)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError) as err:
                log.debug("cannot raise the open file limit to %d: %s", target, err)
    if soft == unlimited or soft >= need:
        return wanted
    budget = min(wanted, max(MIN_CONNECTIONS, (soft - reserve) // per_connection))
    log.warning("server.max_connections = %d needs %d open files, but the limit is %d "
                "(systemd: LimitNOFILE): serving at most %d connections at once",
                wanted, need, soft, budget)
    return budget
