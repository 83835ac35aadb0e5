"""
The admin control channel: AMP over a UNIX socket.

The socket is created mode 0600 inside the 0700 data directory, and every
connection is also checked by the peer's uid (SO_PEERCRED), so two layers stand
between a local user and the daemon's state.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Collection

from attrs import frozen

from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp

from oauthd import __version__
from oauthd.authority import Authority

log = Logger()


@frozen
class PeerCredentials:
    pid: int
    uid: int
    gid: int


def socket_peer_credentials(transport: ITransport) -> PeerCredentials | None:
    """
    The kernel's record of who connected (Linux SO_PEERCRED), or C{None} when
    the transport is not a UNIX socket.
    """
    try:
        sock = transport.getHandle()  # type: ignore[attr-defined]
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCredentials(pid, uid, gid)


class Status(amp.Command):
    response = [(b"version", amp.Unicode()), (b"uptime", amp.Float())]


class ControlProtocol(amp.AMP):
    factory: ControlFactory

    def connectionMade(self) -> None:
        assert self.transport is not None
        creds = self.factory.peer_credentials(self.transport)
        if creds is None or not self.factory.allows(creds):
            log.warn(
                "control: refused connection from uid {peer_uid}",
                peer_uid=None if creds is None else creds.uid,
            )
            self.transport.loseConnection()
            return
        self.peer = creds
        super().connectionMade()

    @Status.responder
    def status(self) -> dict[str, object]:
        return {
            "version": __version__,
            "uptime": self.factory.clock.seconds() - self.factory.started,
        }


class ControlFactory(Factory):
    """
    Builds one L{ControlProtocol} per admin connection.

    @ivar allowed_uids: uids admitted besides root and the daemon's own.
    @ivar admin_gid: a group whose members are admitted, if any.
    """

    def __init__(
        self,
        clock: IReactorTime,
        authority: Authority,
        allowed_uids: Collection[int] = (),
        admin_gid: int | None = None,
        peer_credentials: Callable[[ITransport], PeerCredentials | None] = socket_peer_credentials,
    ) -> None:
        self.clock = clock
        self.authority = authority
        self.started = clock.seconds()
        self.allowed_uids = frozenset({0, os.getuid(), *allowed_uids})
        self.admin_gid = admin_gid
        self.peer_credentials = peer_credentials

    def buildProtocol(self, addr: object) -> ControlProtocol:  # type: ignore[override]
        protocol = ControlProtocol()
        protocol.factory = self
        return protocol

    def allows(self, creds: PeerCredentials) -> bool:
        if creds.uid in self.allowed_uids:
            return True
        if self.admin_gid is None:
            return False
        if creds.gid == self.admin_gid:
            return True
        try:
            import grp
            import pwd

            name = pwd.getpwuid(creds.uid).pw_name
            return name in grp.getgrgid(self.admin_gid).gr_mem
        except KeyError:
            return False
