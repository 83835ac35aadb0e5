"""
The administration the control edge asks for, over the protocol layer's
decisions and the store's committer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred

from oauthd.config import Config
from oauthd.interfaces import IPasswordHasher
from oauthd.protocol import clientauth, lookup
from oauthd.protocol.admin import clients, tokens as admin_tokens, users
from oauthd.protocol.context import Context
from oauthd.protocol.errors import AdminError, Conflict, InvalidValue, NotFound
from oauthd.protocol.issuing import revocation_count
from oauthd.protocol.login import check_password
from oauthd.protocol.rules import check_username
from oauthd.state.decision import audit
from oauthd.state.entities import ACCESS, Client, Token, User
from oauthd.state.model import State
from oauthd.state.store import Store

__all__ = ["AdminError", "Authority", "Conflict", "InvalidValue", "NotFound", "check_username"]


class Authority:
    """
    Clients, users and tokens administered by hand.

    @ivar store: where decisions are committed.
    @ivar ctx: what decisions are made with.
    """

    def __init__(self, store: Store, ctx: Context) -> None:
        self.store = store
        self.ctx = ctx

    @property
    def state(self) -> State:
        return self.store.state

    @property
    def config(self) -> Config:
        return self.ctx.config

    @property
    def hasher(self) -> IPasswordHasher:
        return self.ctx.hasher

    def now(self) -> int:
        return self.ctx.now()

    def audit(self, event: str, outcome: str, **fields: object) -> None:
        record = audit(event, outcome, **fields)
        self.store.record_audit(record)

    def scope(self, requested: str) -> str:
        return self.ctx.scope(requested)

    # -- tokens -------------------------------------------------------------

    def authenticate_token(self, secret: str) -> Token | None:
        return lookup.authenticate_token(self.ctx, secret)

    def find_token(self, reference: str) -> Token | None:
        return lookup.find_token(self.ctx, reference)

    def issue_token(
        self, *, scope: str, lifetime: int, client: Client | None = None, user: str = "",
        label: str = "", kind: str = ACCESS,
    ) -> Deferred[tuple[str, Token]]:
        decision = admin_tokens.issue(self.ctx, scope=scope, lifetime=lifetime, client=client,
                                      user=user, label=label, kind=kind)
        return self.store.commit(decision).addCallback(lambda m: (m.secret, m.token))

    def issue_admin_token(
        self, *, label: str, scope: str, lifetime: int, user: str = "", client_id: str = "",
    ) -> Deferred[tuple[str, Token]]:
        decision = admin_tokens.issue_by_hand(self.ctx, label=label, scope=scope, lifetime=lifetime,
                                              user_name=user, client_id=client_id)
        return self.store.commit(decision).addCallback(lambda m: (m.secret, m.token))

    def revoke(self, token: Token) -> Deferred[Token]:
        return self.store.commit(admin_tokens.revoke(self.ctx, token))

    def revocation_count(self, token: Token) -> int:
        return revocation_count(self.ctx, token)

    def live_token_count(self, client_id: str = "", user: str = "") -> int:
        now = self.now()
        if client_id:
            return len(self.state.client_tokens(client_id, now))
        if user:
            return len(self.state.user_tokens(user, now))
        return self.state.live_count(now)

    def token_keys(self) -> list[int]:
        return list(self.state.tokens)

    def held_tokens(self, keys: Iterable[int], include_expired: bool = False) -> list[Token | None]:
        now = self.now()
        held = self.state.tokens.get
        found: list[Token | None] = []
        for key in keys:
            token = held(key)
            found.append(token if token is not None and (include_expired or token.live(now)) else None)
        return found

    token_matches = staticmethod(admin_tokens.matches)

    # -- clients ------------------------------------------------------------

    def client(self, client_id: str) -> Client:
        return clients.client(self.ctx, client_id)

    def authenticate_client(self, client_id: str, secret: str) -> Client | None:
        return clientauth.authenticate_client(self.ctx, client_id, secret)

    def find_client(self, client_id: str) -> Client | None:
        return self.state.clients.get(client_id)

    def client_ids(self) -> list[str]:
        return list(self.state.clients)

    def add_client(self, name: str, **fields: Any) -> Deferred[tuple[Client, str]]:
        return self.store.commit(clients.add_client(self.ctx, name, **fields))

    def update_client(
        self, client_id: str, regenerate_secret: bool = False, **changes: Any,
    ) -> Deferred[tuple[Client, str]]:
        return self.store.commit(clients.update_client(self.ctx, client_id, regenerate_secret, **changes))

    def remove_client(self, client_id: str) -> Deferred[Client]:
        return self.store.commit(clients.remove_client(self.ctx, client_id))

    # -- users --------------------------------------------------------------

    def user(self, name: str) -> User:
        return users.user(self.ctx, name)

    def find_user(self, name: str) -> User | None:
        return self.state.users.get(name)

    def user_names(self) -> list[str]:
        return sorted(self.state.users)

    async def add_user(self, name: str, password: str | None, **fields: Any) -> User:
        return await self.store.commit(await users.add_user(self.ctx, name, password or None, **fields))

    def update_user(self, name: str, **changes: Any) -> Deferred[User]:
        return self.store.commit(users.update_user(self.ctx, name, **changes))

    def remove_user(self, name: str) -> Deferred[User]:
        return self.store.commit(users.remove_user(self.ctx, name))

    async def check_password(self, name: str, password: str) -> User | None:
        return await check_password(self.ctx, name, password)

    # -- the journal --------------------------------------------------------

    def compact(self) -> Deferred[dict[str, int]]:
        log = self.store.log
        before = (log.record_count, log.byte_count)

        def compacted(_: object) -> dict[str, int]:
            return {
                "records_before": before[0], "records_after": log.record_count,
                "bytes_before": before[1], "bytes_after": log.byte_count,
            }

        return self.store.compact().addCallback(compacted)

    def counts(self) -> dict[str, int]:
        return {
            "clients": len(self.state.clients),
            "users": len(self.state.users),
            "tokens": self.live_token_count(),
            "journal_records": self.store.log.record_count,
            "journal_bytes": self.store.log.byte_count,
            "live_records": self.state.live_records,
        }
