"""
The responders to the control commands, in four groups by what they
administer: the daemon (status, the journal), clients, users and tokens.
Each asks the protocol layer (L{oauthd.protocol.admin}) for a decision and
has the connection's L{AdminSession} commit it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred

from oauthd import __version__
from oauthd.control.backup import BackupResponders
from oauthd.control.audit import AuditResponders
from oauthd.control.consents import ConsentResponders
from oauthd.control.keys import KeyResponders
from oauthd.control.reload import ReloadResponders
from oauthd.control.paging import Copied, Keys, Listing, Taken, each
from oauthd.control.rows import client_row, token_row, user_row
from oauthd.control.second_factor import SecondFactorResponders
from oauthd.control.session import Responders
from oauthd.control.wire import (
    AddClient,
    AddToken,
    AddUser,
    Compact,
    ListClients,
    ListTokens,
    ListUsers,
    ModifyClient,
    ModifyUser,
    RemoveClient,
    RemoveToken,
    RemoveUser,
    SetPassword,
    ShowClient,
    ShowToken,
    ShowUser,
    Status,
)
from oauthd.interfaces import IFollowedLog
from oauthd.protocol import lookup, tokens
from oauthd.protocol.admin import clients, tokens as admin_tokens, users
from oauthd.protocol.errors import NotFound
from oauthd.protocol.issuing import revocation_count, revoked_count
from oauthd.state.entities import Client, Token, User


def state_digest(snapshot: Iterable[bytes]) -> str:
    """
    A digest of the state's snapshot records, in order: nodes that applied
    a shared log to the same position hold the same state if theirs agree.
    """
    digest = hashlib.sha256()
    for payload in snapshot:
        digest.update(len(payload).to_bytes(4, "big"))
        digest.update(payload)
    return digest.hexdigest()


class StatusResponders(Responders):
    """
    The daemon itself: its status, and compacting its journal.
    """

    @Status.responder
    def status(self) -> dict[str, object]:
        state = self.state
        log = self.session.store.log
        followed = IFollowedLog(log, None)
        return {
            "node": getattr(log, "node", ""),
            "position": log.position,
            "lag": None if followed is None else followed.lag(),
            "state_digest": state_digest(state.snapshot(self.session.clock.seconds())),
            "version": __version__,
            "uptime": self.session.clock.seconds() - self.session.started,
            "clients": len(state.clients),
            "users": len(state.users),
            "tokens": state.token_count(),
            **self.session.store.journal_figures(),
        }

    @Compact.responder
    async def compact(self) -> dict[str, int]:
        store = self.session.store

        async def work() -> dict[str, int]:
            before = store.journal_figures()
            await store.compact()
            after = store.journal_figures()
            return {
                "records_before": before["journal_records"], "records_after": after["journal_records"],
                "bytes_before": before["journal_bytes"], "bytes_after": after["journal_bytes"],
            }

        figures = await self._change("journal.compact", {}, work())
        await self._audited(
            "journal.compact", "ok",
            records=f"{figures['records_before']}->{figures['records_after']}",
        )
        return figures


class ClientResponders(Responders):
    """
    Adding, listing, showing, changing and removing clients.
    """

    def _client_row(self, client: Client) -> dict[str, Any]:
        return client_row(client, self.session.live_tokens(client_id=client.id))

    @AddClient.responder
    async def add_client(self, name: str, **settings: Any) -> dict[str, object]:
        async def work() -> tuple[Client, str]:
            decision = clients.add_client(self.ctx, name, **_client_fields(settings))
            new = decision.answer[0]
            return await self._commit_audited(decision, "client.add", client=new.id, name=new.name)

        client, secret = await self._change("client.add", {"name": name}, work())
        return {**self._client_row(client), "secret": secret}

    @ListClients.responder
    def list_clients(
        self, search: str | None, cursor: str | None, limit: int | None,
    ) -> dict[str, object]:
        def start() -> Listing:
            needle = (search or "").lower()
            find = self.state.clients.get

            def row(client_id: str) -> dict[str, Any] | None:
                client = find(client_id)
                if client is None or not (
                    client.id.startswith(needle) or client.name.lower().startswith(needle)
                    or client.user.startswith(needle)
                ):
                    return None
                return self._client_row(client)

            return Listing(b"ListClients", Copied(list(self.state.clients)), each(row))

        return self._page(b"ListClients", cursor, limit, start)

    @ShowClient.responder
    def show_client(self, id: str) -> dict[str, object]:
        return self._client_row(clients.client(self.ctx, id))

    @ModifyClient.responder
    async def modify_client(
        self, id: str, name: str | None, enabled: bool | None,
        regenerate_secret: bool | None, **settings: Any,
    ) -> dict[str, object]:
        changes = _client_fields(settings)
        if name is not None:
            changes["name"] = name
        if enabled is not None:
            changes["enabled"] = enabled

        async def work() -> tuple[Client, str, int]:
            decision = clients.update_client(self.ctx, id, bool(regenerate_secret), **changes)
            client, secret = decision.answer
            # A disabled client holds no tokens: disabling one revokes them all.
            revoked = 0 if client.enabled else self.session.live_tokens(client_id=id)
            await self._commit_audited(
                decision, "client.update", client=client.id, changed=",".join(sorted(changes)),
                new_secret="yes" if secret else "", revoked=revoked or "",
            )
            return client, secret, revoked

        client, secret, revoked = await self._change("client.update", {"client": id}, work())
        return {**self._client_row(client), "secret": secret, "revoked": revoked}

    @RemoveClient.responder
    async def remove_client(self, id: str) -> dict[str, object]:
        async def work() -> dict[str, Any]:
            row = self._client_row(clients.client(self.ctx, id))
            await self._commit_audited(clients.remove_client(self.ctx, id), "client.remove",
                                       client=id, revoked=row["tokens"])
            return row

        row = await self._change("client.remove", {"client": id}, work())
        return {**row, "revoked": row["tokens"]}


class UserResponders(Responders):
    """
    Adding, listing, showing, changing and removing users, and their
    passwords.
    """

    def _user_row(self, user: User) -> dict[str, Any]:
        return user_row(user, self.session.live_tokens(user=user.name))

    @AddUser.responder
    async def add_user(self, name: str, password: str | None, **settings: Any) -> dict[str, object]:
        fields = {key: value for key, value in settings.items() if value is not None}

        async def work() -> User:
            # Hashing the password changes nothing: a lost connection
            # abandons it.
            decided = Deferred.fromCoroutine(users.add_user(self.ctx, name, password, **fields))
            decision = await self._until_disconnected(decided)
            new = decision.answer
            return await self._commit_audited(decision, "user.add", user=new.name, role=new.role)

        user = await self._change("user.add", {"user": name}, work())
        return self._user_row(user)

    @ListUsers.responder
    def list_users(
        self, search: str | None, cursor: str | None, limit: int | None,
    ) -> dict[str, object]:
        def start() -> Listing:
            needle = (search or "").lower()
            find = self.state.users.get

            def row(name: str) -> dict[str, Any] | None:
                user = find(name)
                if user is None or not (
                    name.startswith(needle) or user.email.lower().startswith(needle)
                    or user.full_name.lower().startswith(needle)
                ):
                    return None
                return self._user_row(user)

            return Listing(b"ListUsers", Copied(sorted(self.state.users)), each(row))

        return self._page(b"ListUsers", cursor, limit, start)

    @ShowUser.responder
    def show_user(self, name: str) -> dict[str, object]:
        return self._user_row(users.user(self.ctx, name))

    @SetPassword.responder
    async def set_password(
        self, name: str, password: str, revoke_app_passwords: bool | None,
    ) -> dict[str, object]:
        async def work() -> tuple[User, int]:
            decided = Deferred.fromCoroutine(
                users.set_password(self.ctx, name, password, bool(revoke_app_passwords)))
            decision = await self._until_disconnected(decided)
            revoked = revoked_count(self.ctx, decision.records)
            user = await self._commit_audited(
                decision, "user.password", user=decision.answer.name, revoked=revoked or "",
                app_passwords="revoked" if revoke_app_passwords else "kept")
            return user, revoked

        user, revoked = await self._change("user.password", {"user": name}, work())
        return {**self._user_row(user), "revoked": revoked}

    @ModifyUser.responder
    async def modify_user(self, name: str, disabled: bool | None, **settings: Any) -> dict[str, object]:
        changes = {key: value for key, value in settings.items() if value is not None}
        if disabled is not None:
            changes["disabled"] = disabled

        async def work() -> tuple[User, int]:
            decision = users.update_user(self.ctx, name, **changes)
            user = decision.answer
            # A disabled user holds no tokens: disabling one revokes them all.
            revoked = self.session.live_tokens(user=name) if user.disabled else 0
            await self._commit_audited(
                decision, "user.update", user=user.name, changed=",".join(sorted(changes)),
                revoked=revoked or "",
            )
            return user, revoked

        user, revoked = await self._change("user.update", {"user": name}, work())
        return {**self._user_row(user), "revoked": revoked}

    @RemoveUser.responder
    async def remove_user(self, name: str) -> dict[str, object]:
        async def work() -> dict[str, Any]:
            decision = users.remove_user(self.ctx, name)
            user, owned = decision.answer
            now = self.ctx.now()
            held = {t.key for t in self.state.user_tokens(name, now)}
            for client in owned:
                held.update(t.key for t in self.state.client_tokens(client.id, now))
            row = {**self._user_row(user), "revoked": len(held),
                   "clients": [client.id for client in owned]}
            await self._commit_audited(decision, "user.remove", user=name, revoked=row["revoked"],
                                       clients=",".join(row["clients"]))
            return row

        row = await self._change("user.remove", {"user": name}, work())
        return row


class TokenResponders(Responders):
    """
    Issuing, listing, showing and revoking tokens.
    """

    def _token_row(self, token: Token, now: int | None = None) -> dict[str, Any]:
        client = self.state.clients.get(token.client_id) if token.client_id else None
        return token_row(token, client.name if client else "", now or self.ctx.now())

    @AddToken.responder
    async def add_token(
        self, label: str, scope: str, lifetime: int, user: str | None, client_id: str | None,
        uses: int | None = None,
    ) -> dict[str, object]:
        async def work() -> tuple[str, Token]:
            decision = admin_tokens.issue_by_hand(
                self.ctx, label=label, scope=scope, lifetime=lifetime, user_name=user or "",
                client_id=client_id or "", uses=uses,
            )
            new = decision.answer.token
            minted = await self._commit_audited(
                decision, "token.issue", token=new.handle, kind=new.kind, user=new.user,
                client=new.client_id, scope=new.scope, uses=uses, via="control",
            )
            return minted.secret, minted.token

        secret, token = await self._change("token.issue", {"user": user, "client": client_id}, work())
        return {**self._token_row(token), "secret": secret}

    @ListTokens.responder
    def list_tokens(
        self, search: str | None, cursor: str | None, limit: int | None, expired: bool | None,
    ) -> dict[str, object]:
        def start() -> Listing:
            needle = search or ""
            include_expired = bool(expired)
            key = _secret_key(needle)
            keys: Keys
            if key is not None:
                keys, needle = Copied([key]), ""
            else:
                order = self.state.token_order
                keys = Taken(order, order.end)

            def rows(chunk: list[int]) -> list[dict[str, Any] | None]:
                now = self.ctx.now()
                held = self.state.tokens.get
                matches = admin_tokens.matches
                found = []
                for key in chunk:
                    token = held(key)
                    shown = (token is not None and (include_expired or token.live(now))
                             and matches(token, needle))
                    found.append(self._token_row(token, now) if shown else None)  # type: ignore[arg-type]
                return found

            return Listing(b"ListTokens", keys, rows)

        return self._page(b"ListTokens", cursor, limit, start)

    def _find_token(self, reference: str) -> Token:
        reference = reference.strip()
        token = lookup.find_token(self.ctx, reference)
        if token is None:
            # Never echo what may be a mistyped secret.
            if tokens.is_handle(reference):
                raise NotFound(f"no such token: {reference}")
            raise NotFound("no such token: no live token has that handle, secret or session id")
        return token

    @ShowToken.responder
    def show_token(self, reference: str) -> dict[str, object]:
        return self._token_row(self._find_token(reference))

    @RemoveToken.responder
    async def remove_token(self, reference: str) -> dict[str, object]:
        async def work() -> dict[str, Any]:
            token = self._find_token(reference)
            row = self._token_row(token)
            row["revoked"] = revocation_count(self.ctx, token)
            await self._commit_audited(admin_tokens.revoke(self.ctx, token), "token.revoke",
                                       token=row["handle"], revoked=row["revoked"], via="control")
            return row

        row = await self._change("token.revoke", {}, work())
        return row


RESPONDERS: tuple[type[Responders], ...] = (
    StatusResponders, ClientResponders, UserResponders, TokenResponders, SecondFactorResponders,
    ConsentResponders, KeyResponders, BackupResponders,
    ReloadResponders, AuditResponders,
)
"""
The groups of responders each admitted connection gets.
"""


def _secret_key(search: str) -> int | None:
    """
    The token key a search names exactly (a token or a session id), if any.
    """
    key = tokens.key_from_session_id(search)
    if key is None and (tokens.is_access_token(search) or tokens.is_app_password(search)):
        key = tokens.token_key(search)
    return key


def _client_fields(settings: dict[str, Any]) -> dict[str, Any]:
    """
    The L{Client} fields named by a command's optional client settings.
    """
    fields: dict[str, Any] = {}
    for name, value in settings.items():
        if value is None:
            continue
        if name == "public":
            fields["type"] = "public" if value else "confidential"
        elif name in ("grant_types", "redirect_uris", "audience", "post_logout_redirect_uris"):
            fields[name] = tuple(value)
        else:
            fields[name] = value
    return fields


__all__ = [
    "RESPONDERS", "ClientResponders", "StatusResponders", "TokenResponders", "UserResponders",
]
