"""
The signing keys' upkeep in the daemon, and the responders to C{oauthctl
keys} (L{oauthd.protocol.key_rotation}).

No key material crosses the control socket: a key is listed by its kid,
algorithm, times and state.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthd.control.session import Responders
from oauthd.control.wire.keys import ListKeys, RotateKeys
from oauthd.protocol import key_rotation, signing
from oauthd.protocol.context import Context
from oauthd.state.decision import Decision
from oauthd.state.store import Store

log = Logger()

UPKEEP_INTERVAL = 60
"""
Seconds between two looks at the keys: the marks of what they signed made
durable, and a rotation if one is due.
"""


class KeyKeeper(Service):
    """
    Makes the first keys when the daemon starts, then every minute commits the keys' signing marks left in memory and
    the scheduled rotation when one is due.
    """

    def __init__(self, ctx: Context, store: Store) -> None:
        self.ctx = ctx
        self.store = store
        self._loop = LoopingCall(self.upkeep)
        self._loop.clock = ctx.clock

    def startService(self) -> None:
        super().startService()
        # The reactor runs its due calls before it first reads a socket, so
        # the keys are in memory before any request can ask for a signature.
        self.ctx.clock.callLater(0, self.make_first_keys)
        self._loop.start(UPKEEP_INTERVAL, now=False)

    def make_first_keys(self) -> None:
        self._commit(key_rotation.first_keys(self.ctx), "saving the first signing keys")

    def stopService(self) -> None:
        # Before the store stops (services stop in reverse order), which
        # then flushes these marks with the rest.
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        self._commit_marks()

    def upkeep(self) -> None:
        self._commit_marks()
        Deferred.fromCoroutine(key_rotation.scheduled(self.ctx)).addCallback(
            self._commit, "the scheduled key rotation").addErrback(
            lambda failure: log.failure("the scheduled key rotation", failure))

    def _commit_marks(self) -> None:
        marks = signing.pending(self.ctx)
        if marks:
            self._commit(Decision(None, records=marks), "saving the signing keys' marks")

    def _commit(self, decision: Decision[Any] | None, what: str) -> Deferred[Any] | None:
        if decision is None:
            return None

        def failed(failure: Failure) -> None:
            log.failure(what, failure)

        return self.store.commit(decision).addErrback(failed)


def _row(row: key_rotation.KeyRow) -> dict[str, object]:
    return {"kid": row.kid, "alg": row.alg, "created": row.created, "signs_from": row.signs_from,
            "state": row.state, "leaves_at": row.leaves_at}


class KeyResponders(Responders):
    """
    The signing keys.
    """

    @ListKeys.responder
    def list_keys(self) -> dict[str, object]:
        return {"rows": json.dumps([_row(row) for row in key_rotation.listing(self.ctx)])}

    @RotateKeys.responder
    async def rotate_keys(self, alg: str | None = None, now: bool | None = None) -> dict[str, object]:
        async def work() -> list[str]:
            decision = await key_rotation.rotate(self.ctx, alg or "", bool(now))
            kids = [key.kid for key in decision.answer]
            await self._commit_audited(decision, "keys.rotate", alg=alg or "all", now=bool(now),
                                       keys=len(kids))
            return kids

        kids = await self._change("keys.rotate", {"alg": alg or "all"}, work())
        listed = {row.kid: row for row in key_rotation.listing(self.ctx)}
        return {"rows": json.dumps([_row(listed[kid]) for kid in kids if kid in listed])}
