"""
One admitted admin connection, as its responders see it: the protocol
layer's context and the store that commits its decisions, who is connected
(every change is audited with the peer's uid), the connection's open
listings, and the work its loss cancels.

Every change is a decision of the protocol layer committed by the store,
with the audit event that describes it: the event is made durable side by
side with the records, and a reply is sent only once both are. A command
whose decision has not been made when its connection is lost (a password
still being hashed) is abandoned with no change; one already committed
completes, and its reply is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.protocols import amp

from oauthd.config import Reloaded
from oauthd.control import wire
from oauthd.control.errors import one_line, wire_error
from oauthd.control.paging import Listing, Listings
from oauthd.interfaces import IAuditReader
from oauthd.protocol.context import Context
from oauthd.state.decision import Decision, audit
from oauthd.state.model import State
from oauthd.state.store import NotDurable, Store

T = TypeVar("T")


class AdminSession:
    """
    The state one admitted connection's responders share.

    @ivar peer_uid: the uid of who connected, for the audit trail.
    @ivar clock: the daemon's clock, and C{started} when it started by it.
    @ivar reload: reloads the daemon's configuration (L{oauthd.reload}), if
        it can.
    @ivar audit_reader: reads the audit trail, if the daemon keeps one;
        C{reading_audit}: whether this connection's reading runs now.
    """

    def __init__(
        self, store: Store, ctx: Context, peer_uid: int, clock: IReactorTime, started: float,
        reload: Callable[..., Reloaded] | None = None,
        audit_reader: IAuditReader | None = None,
    ) -> None:
        self.reload = reload
        self.store = store
        self.ctx = ctx
        self.peer_uid = peer_uid
        self.clock = clock
        self.started = started
        self.listings = Listings()
        self.audit_reader = audit_reader
        self.reading_audit = False
        self._cancellable: set[Deferred[Any]] = set()
        # What the responders hold for the connection (a backup's files).
        self.on_close: list[Callable[[], None]] = []

    def audit(self, event: str, outcome: str, **fields: object) -> None:
        self.store.record_audit(audit(event, outcome, peer_uid=self.peer_uid, **fields))

    def commit_audited(self, decision: Decision[T], event: str, **fields: object) -> Deferred[T]:
        """
        Commit C{decision} with the event that describes it (outcome
        C{ok}), so the store makes both durable together: no change is ever
        on disk without its event. Its fields must therefore be known
        before the commit.
        """
        described = audit(event, "ok", peer_uid=self.peer_uid, **fields)
        return self.store.commit(attrs.evolve(decision, audit=(*decision.audit, described)))

    def audited(self, event: str, outcome: str, **fields: object) -> Deferred[None]:
        """
        Record the event of work done that is not a decision (a
        compaction): the reply waits until it is durable.
        """
        return self.store.record_change_audit(audit(event, outcome, peer_uid=self.peer_uid, **fields))

    def live_tokens(self, client_id: str = "", user: str = "") -> int:
        """
        How many tokens one client or one user holds (used refresh tokens
        are not tokens; expired ones leave the count when they are swept).
        """
        return self.store.state.token_count(client_id=client_id, user=user)

    async def change(
        self, event: str, fields: dict[str, object], work: Coroutine[Any, Any, T],
    ) -> T:
        """
        Run one change, auditing its outcome; library errors become wire
        errors.
        """
        try:
            result = await work
        except Exception as e:
            error = wire_error(e)
            # A change made whose event the trail could not write yet is no
            # failure: the trail keeps that event until it can write it.
            if not (isinstance(e, NotDurable) and e.made):
                outcome = "abandoned" if isinstance(error, wire.Abandoned) else "failed"
                self.audit(event, outcome, reason=one_line(str(error or e), 120), **fields)
            if error is None:
                raise
            raise error from None
        return result

    def until_disconnected(self, d: Deferred[T]) -> Deferred[T]:
        """
        C{d}, cancelled if the connection is lost before it fires. Only for
        work that changes nothing (hashing a password).
        """
        self._cancellable.add(d)

        def done(result: T) -> T:
            self._cancellable.discard(d)
            return result

        return d.addBoth(done)

    def close(self) -> None:
        """
        The connection is lost: drop its listings, cancel its cancellable
        work.
        """
        self.listings.clear()
        for pending in list(self._cancellable):
            pending.cancel()
        for release in self.on_close:
            release()


class Responders(amp.CommandLocator):
    """
    A group of responders (one per kind of thing administered), made for
    each admitted connection and found by L{ControlProtocol.locateResponder}.
    """

    def __init__(self, session: AdminSession) -> None:
        self.session = session

    @property
    def ctx(self) -> Context:
        return self.session.ctx

    @property
    def state(self) -> State:
        return self.session.store.state

    def _commit_audited(self, decision: Decision[T], event: str, **fields: object) -> Deferred[T]:
        return self.session.commit_audited(decision, event, **fields)

    def _audited(self, event: str, outcome: str, **fields: object) -> Deferred[None]:
        return self.session.audited(event, outcome, **fields)

    def _change(
        self, event: str, fields: dict[str, object], work: Coroutine[Any, Any, T],
    ) -> Coroutine[Any, Any, T]:
        return self.session.change(event, fields, work)

    def _until_disconnected(self, d: Deferred[T]) -> Deferred[T]:
        return self.session.until_disconnected(d)

    def _page(
        self, command: bytes, cursor: str | None, limit: int | None,
        start: Callable[[], Listing],
    ) -> dict[str, object]:
        return self.session.listings.page(command, cursor, limit, start)
