"""
Room for the HTTP connections the daemon admits: its limit on open files
raised to fit them beside the files it needs for itself, so that the
connection cap, not the kernel, turns clients away.
"""

from __future__ import annotations

import resource
from collections.abc import Callable

RESERVED = 256
"""
Files kept for the daemon's own use besides HTTP connections: the journal,
the audit trail, listening sockets, control connections, logs.
"""

Limits = tuple[int, int]


def make_room(
    connections: int,
    getrlimit: Callable[[int], Limits] = resource.getrlimit,
    setrlimit: Callable[[int, Limits], None] = resource.setrlimit,
) -> int:
    """
    Raise the soft limit on open files, up to the hard limit, to fit
    C{connections} HTTP connections and L{RESERVED} more.

    @return: how many connections fit: C{connections}, or fewer if the hard
        limit is too low.
    """
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + RESERVED
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if soft == resource.RLIM_INFINITY:
        return connections
    return min(connections, max(soft // 2, soft - RESERVED))
