# -*- test-case-name: tests.test_control -*-
"""
The admin control channel: AMP over a UNIX socket (listened on by
L{oauthd.control.listen}).

Two layers stand between a local user and the daemon's state: the socket's
file permissions, and the peer's uid (SO_PEERCRED, L{oauthd.control.peer}),
checked on every connection. Here: admitting a connection, policing what it
sends (box limits, argument types) and dispatching its commands to the
responders (L{oauthd.control.responders}). The wire protocol is
L{oauthd.control.wire}, documented in C{docs/control.md}.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from typing import Any

from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from oauthd.config import Reloaded
from oauthd.control.errors import answerable
from oauthd.control.peer import PeerCredentials, socket_peer_credentials
from oauthd.control.responders import RESPONDERS
from oauthd.control.session import AdminSession
from oauthd.control.wire import BY_NAME
from oauthd.interfaces import IAuditReader
from oauthd.protocol.context import Context
from oauthd.state.decision import audit
from oauthd.state.store import Store

log = Logger()

MAX_BOX_KEYS = 64
MAX_BOX_BYTES = 256 * 1024
"""
Limits on one incoming AMP box: AMP itself bounds each key (255 bytes) and
value (65,535) but not their number. A box over either is a protocol
violation and closes the connection.
"""

INT_RANGE = range(-(2**31), 2**31)

PARTIAL_BOX_TIMEOUT = 60
"""
Seconds a box may take to arrive, from its first byte: a peer that sends
half a box and stops (or trickles it) is dropped then.
"""

UNREAD_TIMEOUT = 60
"""
Seconds the daemon waits for a peer to read its replies once they fill the
socket's buffer (meanwhile it reads nothing more from it): then it is
dropped.
"""

IDLE_TIMEOUT = 900
"""
Seconds a connection may sit with nothing to do (no command running, nothing
half sent) before it is closed. oauthctl follows a listing's pages one after
another, so only a peer that has gone quiet is dropped.
"""


class ControlFactory(Factory):
    """
    Builds one L{ControlProtocol} per admin connection.

    @ivar allowed_uids: uids admitted: root, the daemon's own and any
        configured.
    @ivar admin_gid: a group whose members are admitted, if any.
    @ivar reload: reloads the daemon's configuration, if it can.
    @ivar audit_reader: reads the audit trail (C{oauthctl audit}), if the
        daemon keeps one.
    """

    def __init__(
        self,
        clock: IReactorTime,
        store: Store,
        ctx: Context,
        allowed_uids: Collection[int] = (),
        admin_gid: int | None = None,
        peer_credentials: Callable[[ITransport], PeerCredentials | None] = socket_peer_credentials,
        reload: Callable[..., Reloaded] | None = None,
        audit_reader: IAuditReader | None = None,
    ) -> None:
        self.reload = reload
        self.clock = clock
        self.store = store
        self.ctx = ctx
        self.started = clock.seconds()
        self.allowed_uids = frozenset({0, os.getuid(), *allowed_uids})
        self.admin_gid = admin_gid
        self.peer_credentials = peer_credentials
        self.audit_reader = audit_reader

    def buildProtocol(self, addr: object) -> ControlProtocol:  # type: ignore[override]
        protocol = ControlProtocol()
        protocol.factory = self
        return protocol

    def allows(self, creds: PeerCredentials) -> bool:
        """
        Whether C{creds} may administer the daemon: root, the daemon's own
        uid, a configured uid, or a process whose primary or supplementary
        group is the admin group.
        """
        if creds.uid in self.allowed_uids:
            return True
        if self.admin_gid is None:
            return False
        return creds.gid == self.admin_gid or self.admin_gid in creds.groups


class ControlProtocol(amp.AMP, TimeoutMixin):
    """
    One admin connection.

    Its replies are flow-controlled: it is its transport's producer, and
    while the transport's buffer is full (the peer is not reading) it reads
    and answers nothing more, so what it holds for a peer stays bounded.
    A peer that leaves half a box, does not read, or idles is dropped after
    L{PARTIAL_BOX_TIMEOUT}, L{UNREAD_TIMEOUT} or L{IDLE_TIMEOUT}.

    @ivar peer: who connected, once admitted.
    @ivar session: what its responders share, once admitted.
    """

    factory: ControlFactory
    peer: PeerCredentials | None = None
    session: AdminSession | None = None

    def __init__(self) -> None:
        super().__init__()
        self._closing = False
        self._box_bytes = 0
        self._responders: tuple[amp.CommandLocator, ...] = ()
        self._running = 0
        self._waiting_for: str | None = None

    def callLater(self, period: float, func: Callable[[], object]) -> Any:
        return self.factory.clock.callLater(period, func)

    # -- connection --------------------------------------------------------

    def connectionMade(self) -> None:
        assert self.transport is not None
        creds = self.factory.peer_credentials(self.transport)
        if creds is None or not self.factory.allows(creds):
            uid = None if creds is None else creds.uid
            log.warn("control: refused connection from uid {peer_uid}", peer_uid=uid)
            self.factory.store.record_audit(
                audit("control.connect", "denied", peer_uid="unknown" if uid is None else uid))
            self._closing = True
            self.transport.loseConnection()
            return
        self.peer = creds
        factory = self.factory
        self.session = AdminSession(factory.store, factory.ctx, creds.uid, factory.clock, factory.started,
                                    factory.reload, factory.audit_reader)
        self._responders = tuple(group(self.session) for group in RESPONDERS)
        super().connectionMade()
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
        self._arm_timeout()

    def dataReceived(self, data: bytes) -> None:
        if self._closing or self.peer is None:
            return
        super().dataReceived(data)
        self._arm_timeout()

    # -- flow control and timeouts -------------------------------------------

    def pauseProducing(self) -> None:
        # The peer is not reading: stop reading its commands (the parser
        # stops between boxes too) until it has read what it was sent.
        super().pauseProducing()
        self._arm_timeout()

    def resumeProducing(self) -> None:
        if self._closing:
            return
        # The peer read: if it falls behind again, its time starts afresh.
        self._waiting_for = None
        super().resumeProducing()
        self._arm_timeout()

    def _arm_timeout(self) -> None:
        """
        Set the timeout for what the connection waits on now: the peer to
        read (the deadline counts from the pause), the rest of a box (from
        its first byte), or anything at all; none while a command of the
        peer's runs.
        """
        waiting_for: str | None
        if self._closing:
            waiting_for = None
        elif self.paused:
            waiting_for = "unread"
        elif self._unprocessed or self._currentBox is not None:
            waiting_for = "partial"
        elif self._running:
            waiting_for = None
        else:
            waiting_for = "idle"
        if waiting_for == self._waiting_for and waiting_for in ("partial", "unread"):
            # Its deadline stands: trickling bytes does not put it off.
            return
        self._waiting_for = waiting_for
        self.setTimeout(_TIMEOUTS[waiting_for] if waiting_for else None)

    def timeoutConnection(self) -> None:
        what = self._waiting_for
        self._closing = True
        log.warn(
            "control: closing the connection of uid {peer_uid}: {what} for {seconds} seconds",
            peer_uid=None if self.peer is None else self.peer.uid,
            what=_TIMEOUT_REASONS.get(what or "", "idle"), seconds=self.timeOut,
        )
        # Abort: closing gracefully would wait for a peer that does not read.
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def stringReceived(self, string: bytes) -> None:
        if self._closing:
            return
        self._box_bytes += len(string) + 2
        super().stringReceived(string)

    def proto_value(self, string: bytes) -> str:
        state: str = super().proto_value(string)
        keys = len(self._currentBox or ())
        if keys > MAX_BOX_KEYS or self._box_bytes > MAX_BOX_BYTES:
            self._violation(
                "a box of over {max_keys} keys or {max_bytes} bytes",
                max_keys=MAX_BOX_KEYS, max_bytes=MAX_BOX_BYTES,
            )
        return state

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        self._box_bytes = 0
        # A whole box: the next one has its own time to arrive.
        self._waiting_for = None
        if amp.COMMAND not in box or amp.ASK not in box or amp.ANSWER in box or amp.ERROR in box:
            # The daemon never asks, so an answer (or a box that is neither)
            # is a client that does not speak the protocol. A command must
            # want its answer: AMP would log a failed one-way command as an
            # unhandled error and drop the connection.
            self._violation("a box that is not a command with an _ask tag")
            return
        super().ampBoxReceived(box)

    def lengthLimitExceeded(self, length: int) -> None:
        self._violation("an AMP key of {length} bytes", length=length)

    def _violation(self, what: str, **fields: object) -> None:
        if self._closing:
            return
        self._closing = True
        log.warn(
            "control: closing the connection of uid {peer_uid}: it sent " + what,
            peer_uid=None if self.peer is None else self.peer.uid, **fields,
        )
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._closing = True
        self.setTimeout(None)
        if self.session is not None:
            self.session.close()
        super().connectionLost(reason)

    # -- dispatch ----------------------------------------------------------

    def locateResponder(self, name: bytes) -> Callable[[amp.AmpBox], Any] | None:
        """
        The responder for C{name} (in one of the connection's groups of
        L{RESPONDERS}), with its arguments checked first: a missing or
        mistyped one is answered with C{BAD_ARGUMENT} (AMP would log a
        traceback and close the connection). What the layers below raise is
        answered with its wire error (L{answerable}).
        """
        command = BY_NAME.get(name)
        if command is None:
            return None
        for group in self._responders:
            responder = group.locateResponder(name)
            if responder is not None:
                break
        else:
            return None

        def checked(box: amp.AmpBox) -> Any:
            _check_arguments(command, box, self)
            self._running += 1
            return responder(box).addErrback(answerable).addBoth(self._finished)

        return checked

    def _finished(self, result: object) -> object:
        self._running -= 1
        self._arm_timeout()
        return result


_TIMEOUTS = {"partial": PARTIAL_BOX_TIMEOUT, "unread": UNREAD_TIMEOUT, "idle": IDLE_TIMEOUT}

_TIMEOUT_REASONS = {
    "partial": "it left a box unfinished",
    "unread": "it did not read its replies",
    "idle": "it was idle",
}


_TYPE_NAMES = {
    amp.Unicode: "text",
    amp.Integer: "a 32-bit integer",
    amp.Boolean: "True or False",
    amp.ListOf: "a list",
}


def _check_arguments(command: type[amp.Command], box: amp.AmpBox, protocol: amp.AMP) -> None:
    """
    @raise amp.RemoteAmpError: C{BAD_ARGUMENT}, naming the first argument of
        C{box} that is missing or does not parse as its declared type (never
        echoing its value, which may be a password).
    """
    for name, argument in command.arguments:
        value = box.get(name)
        what = name.decode("ascii")
        if value is None:
            if argument.optional:
                continue
            raise amp.RemoteAmpError(b"BAD_ARGUMENT", f"missing argument {what}")
        try:
            parsed = argument.fromStringProto(value, protocol)
        except Exception:
            parsed = _INVALID
        if isinstance(argument, amp.Integer) and parsed is not _INVALID and parsed not in INT_RANGE:
            parsed = _INVALID
        if parsed is _INVALID:
            kind = next((n for t, n in _TYPE_NAMES.items() if isinstance(argument, t)), "valid")
            raise amp.RemoteAmpError(b"BAD_ARGUMENT", f"argument {what} must be {kind}")


_INVALID = object()


__all__ = ["ControlFactory", "ControlProtocol"]
