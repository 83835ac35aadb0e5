"""
Who may administer the daemon: the kernel's record of who is at the other
end of the control socket, and the admin group.
"""

from __future__ import annotations

import grp
import socket
import struct

from attrs import frozen

from twisted.internet.interfaces import ITransport


@frozen
class PeerCredentials:
    """
    Who is at the other end of a UNIX socket, as the kernel recorded it at
    connect() time.

    @ivar groups: the peer's supplementary groups (SO_PEERGROUPS), if the
        kernel reports them.
    """

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
"""
Linux's SO_PEERGROUPS (since 4.13); Python 3.11 does not name it.
"""


def socket_peer_credentials(transport: ITransport) -> PeerCredentials | None:
    """
    The kernel's record of who connected (Linux SO_PEERCRED, and
    SO_PEERGROUPS where available), or C{None} when the transport is not a
    UNIX socket.

    Only the kernel is asked, never the user or group databases: those may
    be remote (LDAP) and would block the reactor.
    """
    try:
        sock = transport.getHandle()  # type: ignore[attr-defined]
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    groups: tuple[int, ...] = ()
    try:
        # 1024 bytes is as much as Python lets getsockopt read: 256 groups.
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)
        groups = struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4])
    except OSError:
        pass
    return PeerCredentials(pid, uid, gid, groups)


def resolve_group(name: str) -> int | None:
    """
    The gid of the configured admin group (a name or a number), looked up
    once at start-up; C{None} for none.

    @raise KeyError: if there is no such group.
    """
    if not name:
        return None
    if name.isascii() and name.isdigit():
        return int(name)
    return grp.getgrnam(name).gr_gid
