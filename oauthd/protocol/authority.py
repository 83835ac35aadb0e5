"""
The protocol layer's shared core: clients, users and tokens, checked and
changed the same way whichever edge (HTTP or the control socket) asks.

Nothing here touches the network, the file, the clock or the reactor
directly: time comes from the store's injected clock, randomness from an
injected source, password hashing from an injected hasher, and every change
is a list of records committed through the store (durable before the caller
answers).
"""

from __future__ import annotations

import hmac
import os
import unicodedata
from collections.abc import Iterable
from typing import Any

import attrs

from twisted.internet.defer import Deferred

from oauthd.protocol import scopes

from oauthd.protocol import tokens
from oauthd.services.audit import AuditSink, cleaned, log_audit
from oauthd.config import Config
from oauthd.services.hashing import PasswordHasher
from oauthd.state.model import (
    ACCESS,
    APP_PASSWORD,
    CONFIDENTIAL,
    PUBLIC,
    REFRESH,
    USED_REFRESH,
    Client,
    Record,
    State,
    Token,
    User,
    client_record,
    user_record,
)
from oauthd.state.store import Store

GRANT_TYPES = frozenset({
    "client_credentials",
    "password",
    "refresh_token",
    "authorization_code",
    "urn:ietf:params:oauth:grant-type:device_code",
})
ROLES = frozenset({"admin", "user"})
CLIENT_ROLES = frozenset({"client", "admin"})
MAX_NAME = 200
MAX_LIFETIME = 10 * 365 * 86400


class AdminError(Exception):
    """
    A request the caller must correct; the message is one line for the user.
    """


class NotFound(AdminError):
    """
    No such client, user or token.
    """


class Conflict(AdminError):
    """
    The name is taken.
    """


class InvalidValue(AdminError):
    """
    A value is malformed or out of range.
    """


def check_label(what: str, value: str) -> str:
    """
    A human-chosen name (client name, token label): printable text, trimmed,
    at most L{MAX_NAME} characters.
    """
    value = value.strip()
    if not value:
        raise InvalidValue(f"{what} must not be empty")
    if len(value) > MAX_NAME:
        raise InvalidValue(f"{what} is longer than {MAX_NAME} characters")
    if any(unicodedata.category(c).startswith("C") for c in value):
        raise InvalidValue(f"{what} must not contain control characters")
    return value


def check_username(value: str) -> str:
    name = value.strip().lower()
    if not 1 <= len(name) <= 64 or not all(c.isascii() and (c.isalnum() or c in "._@-") for c in name):
        raise InvalidValue("user names are 1-64 characters of a-z, 0-9 and . _ @ -")
    return name


def check_lifetime(what: str, seconds: int, allow_never: bool = False) -> int:
    if seconds == 0 and allow_never:
        return 0
    if not 1 <= seconds <= MAX_LIFETIME:
        raise InvalidValue(f"{what} must be between 1 and {MAX_LIFETIME} seconds")
    return seconds


def derived_label(app_password: Token) -> str:
    """
    The label of every token obtained by logging in with C{app_password}
    (password grant or session), which links them to it: revoking the app
    password revokes them too.
    """
    return "from " + app_password.handle


class Authority:
    """
    Clients, users and tokens.

    @ivar store: where state is read and changed.
    @ivar config: the daemon's configuration (known scopes, issuer).
    """

    def __init__(
        self, store: Store, config: Config, hasher: PasswordHasher,
        random_bytes: tokens.RandomBytes = os.urandom, audit_sink: AuditSink = log_audit,
    ) -> None:
        self.store = store
        self.config = config
        self.hasher = hasher
        self._random_bytes = random_bytes
        self._audit_sink = audit_sink

    def audit(self, event: str, outcome: str, **fields: object) -> None:
        """
        Record an audit event (see L{oauthd.services.audit}).

        @param event: what was attempted, e.g. C{token.issue}, C{client.add}.
        @param outcome: C{ok}, C{denied} or C{failed}.
        @param fields: who and what: C{client}, C{user}, C{ip}, C{token} (a
            handle), C{reason}, C{peer_uid}; never a secret.
        """
        self._audit_sink(event, outcome, cleaned(fields))

    @property
    def state(self) -> State:
        return self.store.state

    def now(self) -> int:
        return self.store.now()

    def scope(self, requested: str) -> str:
        """
        C{requested} in canonical form.

        @raise scopes.ScopeError: if it names an unknown scope.
        """
        return scopes.normalize(requested, self.config.scopes)

    # -- tokens -------------------------------------------------------------

    def mint(
        self, kind: str, *, scope: str, lifetime: int, client_id: str = "",
        user: str = "", grant: str = "", label: str = "",
    ) -> tuple[str, Record]:
        """
        A new token secret and the record that issues it (not yet committed).
        App passwords have PhotoPrism's checksummed format, everything else
        is 48 hex characters.
        """
        if kind == APP_PASSWORD:
            secret = tokens.new_app_password(self._random_bytes)
        else:
            secret = tokens.new_access_token(self._random_bytes)
        token = Token(
            tokens.token_key(secret), kind, client_id, user, scope, self.now(),
            lifetime, grant, label,
        )
        return secret, token.record()

    def new_grant_id(self) -> str:
        return tokens.new_grant_id(self._random_bytes)

    def token_limit_records(self, client: Client, adding: int = 1) -> list[Record]:
        """
        Revocations of the client's oldest live access tokens, so that after
        C{adding} more it holds at most C{client.max_tokens}.

        Only the client's own tokens count (client_credentials, or issued by
        an admin for the client): tokens issued to users through a grant
        carry a grant id and are limited per user and client instead (see
        L{oauthd.protocol.grants}), so one busy user cannot revoke another's.
        """
        if client.max_tokens < 0:
            return []
        live = self.state.own_tokens(client.id, self.now())
        excess = len(live) + adding - client.max_tokens
        return [["tok-", tokens.key_hex(t.key)] for t in live[:max(0, excess)]]

    def revocation_records(self, token: Token) -> list[Record]:
        """
        What revoking C{token} takes: a refresh token takes its whole grant
        with it (RFC 7009 section 2.1), anything else only itself.
        """
        if token.kind in (REFRESH, USED_REFRESH) and token.grant:
            return [["grant-", token.grant]]
        records: list[Record] = [["tok-", tokens.key_hex(token.key)]]
        if token.kind == APP_PASSWORD and token.user:
            # What was obtained by logging in with the app password goes too.
            link = derived_label(token)
            for other in self.state.user_tokens(token.user, self.now()):
                if other.label == link:
                    if other.grant:
                        records.append(["grant-", other.grant])
                    else:
                        records.append(["tok-", tokens.key_hex(other.key)])
        return records

    def authenticate_token(self, secret: str) -> Token | None:
        """
        The live token whose secret is C{secret}. A string in neither token
        format is refused without a lookup.
        """
        if not (tokens.is_access_token(secret) or tokens.is_app_password(secret)):
            return None
        return self.state.token(tokens.token_key(secret), self.now())

    def find_token(self, reference: str) -> Token | None:
        """
        The live token named by its secret, its PhotoPrism session id (SHA-256
        hex) or its handle; for admins and revocation.

        A handle lookup scans every key (handles are not indexed, to keep
        memory per token small), comparing the 51 bits a handle spells.
        """
        now = self.now()
        key = tokens.key_from_session_id(reference)
        if key is not None:
            return self.state.token(key, now)
        prefix = tokens.handle_prefix(reference)
        if prefix is not None:
            for key in self.state.tokens:
                if key >> tokens.HANDLE_SHIFT == prefix:
                    return self.state.token(key, now)
            return None
        return self.authenticate_token(reference)

    def issue_token(
        self, *, scope: str, lifetime: int, client: Client | None = None, user: str = "",
        label: str = "", kind: str = ACCESS,
    ) -> Deferred[tuple[str, Token]]:
        """
        Issue one token, revoking the client's oldest if it would exceed its
        limit; fires with the secret and the token once durable.
        """
        secret, record = self.mint(
            kind, scope=scope, lifetime=lifetime, client_id=client.id if client else "",
            user=user, label=label,
        )
        records = []
        if client is not None and kind == ACCESS:
            records = self.token_limit_records(client)
        records.append(record)
        key = tokens.token_key(secret)

        def issued(_: object) -> tuple[str, Token]:
            return secret, self.state.tokens[key]

        return self.store.commit(records).addCallback(issued)

    def revoke(self, token: Token) -> Deferred[None]:
        return self.store.commit(self.revocation_records(token))

    # -- clients ------------------------------------------------------------

    def client(self, client_id: str) -> Client:
        try:
            return self.state.clients[client_id]
        except KeyError:
            raise NotFound(f"no such client: {client_id[:40]}") from None

    def authenticate_client(self, client_id: str, secret: str) -> Client | None:
        """
        The enabled confidential client with this id and secret. One SHA-256
        and a constant-time compare: see L{tokens.secret_digest}.
        """
        client = self.state.clients.get(client_id)
        if client is None or not client.enabled or client.public:
            return None
        if not hmac.compare_digest(tokens.secret_digest(secret), client.secret_digest):
            return None
        return client

    def _checked_client(self, client: Client) -> Client:
        check_label("client name", client.name)
        if client.type not in (CONFIDENTIAL, PUBLIC):
            raise InvalidValue("client type is confidential or public")
        unknown = set(client.grant_types) - GRANT_TYPES
        if unknown:
            raise InvalidValue(f"unknown grant type {sorted(unknown)[0][:60]!r}")
        if client.public and "client_credentials" in client.grant_types:
            raise InvalidValue("a public client cannot use client_credentials")
        if client.role not in CLIENT_ROLES:
            raise InvalidValue("client role is client or admin")
        if client.user and client.user not in self.state.users:
            raise NotFound(f"no such user: {client.user[:64]}")
        if client.max_tokens == 0 or client.max_tokens < -1:
            raise InvalidValue("the token limit is a positive number, or -1 for none")
        check_lifetime("access token lifetime", client.access_ttl)
        check_lifetime("refresh token lifetime", client.refresh_ttl)
        for uri in client.redirect_uris:
            _check_redirect_uri(uri)
        try:
            scope = self.scope(client.scope)
        except scopes.ScopeError as e:
            raise InvalidValue(str(e)) from None
        return attrs.evolve(client, scope=scope)

    def add_client(self, name: str, **fields: Any) -> Deferred[tuple[Client, str]]:
        """
        Register a client; fires with it and its secret (C{""} for a public
        client), which is shown once and stored only as a digest.
        """
        client_id = tokens.new_client_id(self.now(), self._random_bytes)
        client = self._checked_client(
            Client(id=client_id, name=name, created_at=self.now(), **fields)
        )
        secret = ""
        if not client.public:
            secret = tokens.new_client_secret(self._random_bytes)
            client = attrs.evolve(client, secret_digest=tokens.secret_digest(secret))
        return self.store.commit([client_record(client)]).addCallback(lambda _: (client, secret))

    def update_client(
        self, client_id: str, regenerate_secret: bool = False, **changes: Any
    ) -> Deferred[tuple[Client, str]]:
        """
        Change a client; disabling it revokes its tokens. Fires with the
        client and its new secret if one was generated, else C{""}.
        """
        client = self._checked_client(attrs.evolve(self.client(client_id), **changes))
        secret = ""
        if regenerate_secret or (not client.public and not client.secret_digest):
            secret = tokens.new_client_secret(self._random_bytes)
            client = attrs.evolve(client, secret_digest=tokens.secret_digest(secret))
        if client.public:
            client = attrs.evolve(client, secret_digest="")
        return self.store.commit([client_record(client)]).addCallback(lambda _: (client, secret))

    def remove_client(self, client_id: str) -> Deferred[Client]:
        """
        Delete a client and revoke all its tokens.
        """
        client = self.client(client_id)
        return self.store.commit([["client-", client_id]]).addCallback(lambda _: client)

    # -- users --------------------------------------------------------------

    def user(self, name: str) -> User:
        try:
            return self.state.users[name]
        except KeyError:
            raise NotFound(f"no such user: {name[:64]}") from None

    def _checked_user(self, user: User) -> User:
        if user.role not in ROLES:
            raise InvalidValue("user role is admin or user")
        if user.full_name:
            check_label("full name", user.full_name)
        if user.email and ("@" not in user.email or len(user.email) > 254 or any(c.isspace() for c in user.email)):
            raise InvalidValue("the email address is not valid")
        return user

    async def add_user(self, name: str, password: str, **fields: Any) -> User:
        """
        Create a user; the password is hashed in the hasher's pool.
        """
        name = check_username(name)
        if name in self.state.users:
            raise Conflict(f"user {name} already exists")
        user = self._checked_user(User(name=name, created_at=self.now(), **fields))
        if password:
            user = attrs.evolve(user, password_hash=await self.hasher.hash(password))
        if name in self.state.users:
            # Created by someone else while the password was being hashed.
            raise Conflict(f"user {name} already exists")
        await self.store.commit([user_record(user)])
        return user

    async def set_password(self, name: str, password: str) -> User:
        self.user(name)
        hashed = await self.hasher.hash(password)
        user = attrs.evolve(self.user(name), password_hash=hashed)
        await self.store.commit([user_record(user)])
        return user

    def update_user(self, name: str, **changes: Any) -> Deferred[User]:
        """
        Change a user's role, profile or disabled flag; disabling revokes the
        user's tokens.
        """
        user = self._checked_user(attrs.evolve(self.user(name), **changes))
        return self.store.commit([user_record(user)]).addCallback(lambda _: user)

    def remove_user(self, name: str) -> Deferred[User]:
        user = self.user(name)
        records: list[Record] = [["user-", name]]
        return self.store.commit(records).addCallback(lambda _: user)

    async def check_password(self, name: str, password: str) -> User | None:
        """
        The enabled user C{name} if C{password} is that user's own password.
        Unknown users cost as much time as known ones.
        """
        user = self.state.users.get(name)
        hashed = user.password_hash if user is not None else ""
        matches = await self.hasher.check(password, hashed)
        # The user may have been disabled, deleted or given a new password
        # while bcrypt ran: only the user as it is now counts.
        current = self.state.users.get(name)
        if not matches or current is None or current.disabled or current.password_hash != hashed:
            return None
        return current

    # -- administration (the control socket) --------------------------------

    def issue_admin_token(
        self, *, label: str, scope: str, lifetime: int, user: str = "", client_id: str = "",
    ) -> Deferred[tuple[str, Token]]:
        """
        Issue a token by hand, as C{oauthctl auth add} does: an app password
        when C{user} is given, else an access token, bound to C{client_id} if
        given (and then within that client's scope and token limit).

        @param lifetime: seconds, or 0 for a token that never expires.
        @raise AdminError: at once, with nothing issued, on a bad value or an
            unknown or disabled user or client.
        """
        label = check_label("token name", label)
        lifetime = check_lifetime("token lifetime", lifetime, allow_never=True)
        try:
            scope = self.scope(scope)
        except scopes.ScopeError as e:
            raise InvalidValue(str(e)) from None
        if not scope:
            raise InvalidValue("the scope must not be empty")
        if user and client_id:
            raise InvalidValue("a token is for a user or for a client, not both")
        if user:
            if self.user(user).disabled:
                raise InvalidValue(f"user {user} is disabled")
            return self.issue_token(
                scope=scope, lifetime=lifetime, user=user, label=label, kind=APP_PASSWORD,
            )
        client = None
        if client_id:
            client = self.client(client_id)
            if not client.enabled:
                raise InvalidValue(f"client {client_id} is disabled")
            if not scopes.within(scope, client.scope):
                raise InvalidValue(f"scope {scope[:80]!r} exceeds the client's scope {client.scope[:80]!r}")
        return self.issue_token(scope=scope, lifetime=lifetime, client=client, label=label)

    def live_token_count(self, client_id: str = "", user: str = "") -> int:
        """
        How many live tokens one client or one user holds, or everyone when
        neither is given.
        """
        now = self.now()
        if client_id:
            return len(self.state.client_tokens(client_id, now))
        if user:
            return len(self.state.user_tokens(user, now))
        return self.state.live_count(now)

    def revocation_count(self, token: Token) -> int:
        """
        How many live tokens L{revoke} would revoke along with C{token}.
        """
        now = self.now()
        count = 0
        for record in self.revocation_records(token):
            if record[0] == "grant-":
                count += len(self.state.grant_tokens(record[1], now))
            else:
                count += 1
        return max(count, 1)

    def token_keys(self) -> list[int]:
        """
        The keys of every token held, oldest first: a snapshot to page
        through with L{held_token}.
        """
        return list(self.state.tokens)

    def held_tokens(self, keys: Iterable[int], include_expired: bool = False) -> list[Token | None]:
        """
        For each key, the token if it is still held (not revoked) and,
        unless C{include_expired}, live; else C{None}.
        """
        now = self.now()
        held = self.state.tokens.get
        found: list[Token | None] = []
        for key in keys:
            token = held(key)
            found.append(token if token is not None and (include_expired or token.live(now)) else None)
        return found

    @staticmethod
    def token_matches(token: Token, search: str) -> bool:
        """
        Whether a listing filtered by C{search} shows C{token}: its handle,
        client, user or label starts with C{search} (every token if empty).
        """
        return not search or any(
            field.startswith(search)
            for field in (token.handle, token.client_id, token.user, token.label)
        )

    def find_client(self, client_id: str) -> Client | None:
        return self.state.clients.get(client_id)

    def find_user(self, name: str) -> User | None:
        return self.state.users.get(name)

    def compact(self) -> Deferred[dict[str, int]]:
        """
        Compact the journal now; fires with its size before and after
        (C{records_before}, C{records_after}, C{bytes_before}, C{bytes_after}).

        @raise CompactionInProgress: (in the Deferred) if one is running.
        """
        log = self.store.log
        before = (log.record_count, log.byte_count)

        def compacted(_: object) -> dict[str, int]:
            return {
                "records_before": before[0], "records_after": log.record_count,
                "bytes_before": before[1], "bytes_after": log.byte_count,
            }

        return self.store.compact().addCallback(compacted)

    def client_ids(self) -> list[str]:
        """
        Every client id in the order the clients were created: a snapshot.
        """
        return list(self.state.clients)

    def user_names(self) -> list[str]:
        """
        Every user name, sorted: a snapshot.
        """
        return sorted(self.state.users)

    def counts(self) -> dict[str, int]:
        """
        What the daemon holds, for C{oauthctl status}: clients, users, live
        tokens, and the journal's size (records and bytes) against the
        records a compacted journal would hold.
        """
        return {
            "clients": len(self.state.clients),
            "users": len(self.state.users),
            "tokens": self.live_token_count(),
            "journal_records": self.store.log.record_count,
            "journal_bytes": self.store.log.byte_count,
            "live_records": self.state.live_records,
        }


def _check_redirect_uri(uri: str) -> None:
    """
    RFC 6749 section 3.1.2: absolute, no fragment; plain http only for
    loopback (RFC 8252 section 7.3).
    """
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment or len(uri) > 2000:
        raise InvalidValue(f"redirect URI {uri[:80]!r} must be absolute, without a fragment")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise InvalidValue(f"redirect URI {uri[:80]!r} must use https (http only for loopback)")
