"""
The in-memory state: clients, users and tokens, with an index for every
lookup on a hot path, built by applying journal records in order.

Records are the only way state changes, at start-up (replay) and at run time
alike, so the journal and memory cannot disagree. A record is UTF-8 text: its
type and its fields separated by tabs (no field may contain a tab). Token
records, by far the most numerous, are plain fields so a million replay in a
few seconds; client and user records carry one field, a JSON object:

    client  {client fields}               create or replace a client
    client- client_id                     delete a client and its tokens
    user    {user fields}                 create or replace a user
    user-   name                          delete a user and its tokens
    tok     key kind client_id user scope issued_at lifetime grant label
                                          issue a token (key: 32 hex digits)
    tok-    key                           revoke one token
    grant-  grant                         revoke every token of one grant
    used    key                           mark a refresh token used

Applying a record is idempotent, and a record naming something absent does
nothing: compaction may snapshot state that already reflects a record it will
replay again after the snapshot. For the same reason a token whose client or
user is absent or disabled is not loaded, and deleting or disabling a client
or user drops its tokens whatever state it was in before.

Times are whole seconds on the injected clock. A lifetime of 0 means the token
never expires.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from attrs import asdict, frozen

from oauthd import tokens

Record = list[Any]

ACCESS = "access"
REFRESH = "refresh"
USED_REFRESH = "refresh-used"
APP_PASSWORD = "app"
SESSION = "session"
KINDS = frozenset({ACCESS, REFRESH, USED_REFRESH, APP_PASSWORD, SESSION})
_KINDS = {kind: kind for kind in KINDS}

CONFIDENTIAL = "confidential"
PUBLIC = "public"


@frozen
class Client:
    """
    An OAuth client.

    @ivar secret_digest: L{tokens.secret_digest} of the secret, C{""} for a
        public client.
    @ivar max_tokens: the most live access tokens at once; issuing one more
        revokes the oldest. -1 means no limit.
    @ivar user: the owning user's name, C{""} if none.
    """

    id: str
    name: str
    secret_digest: str = ""
    type: str = CONFIDENTIAL
    grant_types: tuple[str, ...] = ("client_credentials",)
    scope: str = "*"
    access_ttl: int = 3600
    refresh_ttl: int = 30 * 86400
    max_tokens: int = 10
    redirect_uris: tuple[str, ...] = ()
    enabled: bool = True
    user: str = ""
    role: str = "client"
    created_at: int = 0

    @property
    def public(self) -> bool:
        return self.type == PUBLIC


@frozen
class User:
    """
    A person who can log in.

    @ivar password_hash: bcrypt hash, C{""} if the user has no password.
    """

    name: str
    password_hash: str = ""
    role: str = "user"
    disabled: bool = False
    full_name: str = ""
    email: str = ""
    created_at: int = 0


class Token:
    """
    One issued credential. Nine slots and shared strings keep it small: at a
    million live tokens each costs well under 300 bytes of memory. (A plain
    class, not attrs: its constructor runs a million times at replay.)

    @ivar key: L{tokens.token_key} of the secret.
    @ivar lifetime: seconds from C{issued_at}; 0 means it never expires.
    @ivar grant: the grant (refresh family) id, C{""} for none.
    @ivar label: the name given to an app password or admin-issued token.
    """

    __slots__ = (
        "key", "kind", "client_id", "user", "scope", "issued_at", "lifetime", "grant", "label",
    )

    def __init__(
        self, key: int, kind: str, client_id: str, user: str, scope: str,
        issued_at: int, lifetime: int, grant: str, label: str,
    ) -> None:
        self.key = key
        self.kind = kind
        self.client_id = client_id
        self.user = user
        self.scope = scope
        self.issued_at = issued_at
        self.lifetime = lifetime
        self.grant = grant
        self.label = label

    def __repr__(self) -> str:
        return f"<Token {self.handle} {self.kind} client={self.client_id!r} user={self.user!r}>"

    @property
    def expires_at(self) -> int:
        """
        The first second at which the token is invalid; 0 for never.
        """
        return self.issued_at + self.lifetime if self.lifetime else 0

    def live(self, now: float) -> bool:
        return self.lifetime == 0 or now < self.issued_at + self.lifetime

    @property
    def handle(self) -> str:
        return tokens.handle(self.key)

    def record(self) -> Record:
        return [
            "tok", tokens.key_hex(self.key), self.kind, self.client_id, self.user,
            self.scope, self.issued_at, self.lifetime, self.grant, self.label,
        ]


def encode(record: Record) -> bytes:
    """
    A record as journal payload bytes.

    @raise ValueError: if a text field contains a tab.
    """
    fields = []
    for value in record:
        if isinstance(value, dict):
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        else:
            text = str(value)
        if "\t" in text:
            raise ValueError("record fields may not contain a tab")
        fields.append(text)
    return "\t".join(fields).encode("utf-8")


_TOKEN_INTS = (6, 7)


def decode(payload: bytes) -> Record:
    """
    The record in journal payload bytes.

    @raise ValueError: if the payload is not a well-formed record.
    """
    record: Record = payload.decode("utf-8").split("\t")
    kind = record[0]
    if kind == "tok":
        if len(record) != 10:
            raise ValueError("a tok record has 10 fields")
        for i in _TOKEN_INTS:
            record[i] = int(record[i])
    elif kind in ("client", "user"):
        if len(record) != 2:
            raise ValueError(f"a {kind} record has 2 fields")
        record[1] = json.loads(record[1])
        if not isinstance(record[1], dict):
            raise ValueError(f"a {kind} record holds a JSON object")
    return record


def client_record(client: Client) -> Record:
    return ["client", asdict(client)]


def user_record(user: User) -> Record:
    return ["user", asdict(user)]


EXPIRY_BUCKET = 60
"""
Seconds of expiry times that share one sweep bucket.
"""


class State:
    """
    Everything the server knows, in memory.

    @ivar clients: by client id.
    @ivar users: by name.
    @ivar tokens: every token not revoked and not yet swept, by key.
    """

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self.users: dict[str, User] = {}
        self.tokens: dict[int, Token] = {}
        # Per client, user and grant, in issue order (oldest first). A removed
        # token stays in these lists until half of a list is stale, then the
        # list is pruned: removal from a list is O(n), and the by-key dict is
        # the truth.
        self._by_client: dict[str, list[Token]] = {}
        self._by_user: dict[str, list[Token]] = {}
        self._by_grant: dict[str, list[Token]] = {}
        # A client's own access tokens (no user grant): what its token limit
        # counts, without scanning every user's tokens at that client.
        self._own: dict[str, list[Token]] = {}
        self._stale: dict[tuple[int, str], int] = {}
        # Keys by the minute their token expires, so a sweep touches only
        # what has expired rather than every token.
        self._expiry: dict[int, list[int]] = {}
        # One object per distinct value, so a million tokens with the same
        # scope or client hold one string, not a million.
        self._shared: dict[Any, Any] = {}

    # -- reading ------------------------------------------------------------

    def token(self, key: int, now: float) -> Token | None:
        """
        The live token with C{key}, or C{None} if unknown, revoked or expired.
        """
        token = self.tokens.get(key)
        if token is None or not token.live(now):
            return None
        return token

    def client_tokens(self, client_id: str, now: float) -> list[Token]:
        return self._live(self._by_client, client_id, now)

    def user_tokens(self, user: str, now: float) -> list[Token]:
        return self._live(self._by_user, user, now)

    def grant_tokens(self, grant: str, now: float) -> list[Token]:
        return self._live(self._by_grant, grant, now)

    def own_tokens(self, client_id: str, now: float) -> list[Token]:
        """
        The client's own live access tokens, oldest first: those issued to
        it without a user grant (client_credentials, or by an admin).
        """
        return self._live(self._own, client_id, now)

    def _live(self, index: dict[str, list[Token]], name: str, now: float) -> list[Token]:
        tokens = self.tokens
        return [t for t in index.get(name, ()) if tokens.get(t.key) is t and t.live(now)]

    @property
    def live_records(self) -> int:
        """
        How many records a snapshot holds, for the compaction policy.
        """
        return len(self.clients) + len(self.users) + len(self.tokens)

    # -- changing -----------------------------------------------------------

    def apply(self, record: Record) -> None:
        """
        Apply one record.

        @raise ValueError: if the record is malformed.
        """
        try:
            handler = self._HANDLERS[record[0]]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"unknown record type {str(record[:1])[:40]}") from None
        try:
            handler(self, *record[1:])
        except (TypeError, KeyError, ValueError, AttributeError) as e:
            raise ValueError(f"malformed {record[0]} record: {e}") from None

    def _put_client(self, fields: dict[str, Any]) -> None:
        for name in ("grant_types", "redirect_uris"):
            fields[name] = tuple(fields[name])
        client = Client(**fields)
        self.clients[client.id] = client
        if not client.enabled:
            self._drop_indexed(0, self._by_client, client.id)

    def _delete_client(self, client_id: str) -> None:
        self.clients.pop(client_id, None)
        self._drop_indexed(0, self._by_client, client_id)

    def _put_user(self, fields: dict[str, Any]) -> None:
        user = User(**fields)
        self.users[user.name] = user
        if user.disabled:
            self._drop_indexed(1, self._by_user, user.name)

    def _delete_user(self, name: str) -> None:
        self.users.pop(name, None)
        self._drop_indexed(1, self._by_user, name)

    def _issue(
        self, key_hex: str, kind: str, client_id: str, user: str, scope: str,
        issued_at: int, lifetime: int, grant: str, label: str,
    ) -> None:
        # Replay runs this a million times for a big journal: it is written
        # for speed (no helper calls, shared strings looked up once).
        try:
            kind = _KINDS[kind]
        except KeyError:
            raise ValueError(f"unknown token kind {kind[:20]!r}") from None
        if type(issued_at) is not int or type(lifetime) is not int:
            raise ValueError("times must be integers")
        key = int(key_hex, 16)
        tokens = self.tokens
        if key in tokens:
            # Replayed after a snapshot that already held it, possibly in a
            # later state (a used refresh token): the snapshot wins.
            return
        if client_id:
            # A token replayed after a snapshot in which its client is already
            # gone or disabled: the revocation that came with that must hold.
            client = self.clients.get(client_id)
            if client is None or not client.enabled:
                return
            client_id = client.id
        if user:
            owner = self.users.get(user)
            if owner is None or owner.disabled:
                return
            user = owner.name
        # Grant ids and labels are not shared: nearly every one is unique,
        # and the shared table is never pruned.
        share = self._shared.setdefault
        token = Token(
            key, kind, client_id, user, share(scope, scope), issued_at,
            share(lifetime, lifetime), grant, label,
        )
        tokens[key] = token
        # get-then-insert rather than setdefault(name, []): no throwaway list
        # per token.
        if client_id:
            listed = self._by_client.get(client_id)
            if listed is None:
                listed = self._by_client[client_id] = []
            listed.append(token)
        if user:
            listed = self._by_user.get(user)
            if listed is None:
                listed = self._by_user[user] = []
            listed.append(token)
        if grant:
            listed = self._by_grant.get(grant)
            if listed is None:
                listed = self._by_grant[grant] = []
            listed.append(token)
        elif client_id and kind == ACCESS:
            listed = self._own.get(client_id)
            if listed is None:
                listed = self._own[client_id] = []
            listed.append(token)
        if lifetime:
            bucket = (issued_at + lifetime) // EXPIRY_BUCKET
            keys = self._expiry.get(bucket)
            if keys is None:
                keys = self._expiry[bucket] = []
            keys.append(key)

    def _revoke(self, key_hex: str) -> None:
        token = self.tokens.get(int(key_hex, 16))
        if token is not None:
            self._remove(token)

    def _revoke_grant(self, grant: str) -> None:
        self._drop_indexed(2, self._by_grant, grant)

    def _mark_used(self, key_hex: str) -> None:
        token = self.tokens.get(int(key_hex, 16))
        if token is not None and token.kind == REFRESH:
            token.kind = USED_REFRESH

    def _drop_indexed(self, number: int, index: dict[str, list[Token]], name: str) -> None:
        """
        Remove every token listed under C{name} in one index, and the list.
        """
        self._stale.pop((number, name), None)
        for token in index.pop(name, []):
            if self.tokens.get(token.key) is token:
                self._remove(token)

    def _remove(self, token: Token) -> None:
        del self.tokens[token.key]
        own = token.client_id if token.kind == ACCESS and not token.grant else ""
        for number, (index, name) in enumerate(
            ((self._by_client, token.client_id), (self._by_user, token.user),
             (self._by_grant, token.grant), (self._own, own))
        ):
            if not name or name not in index:
                continue
            stale = self._stale.get((number, name), 0) + 1
            entries = index[name]
            if stale * 2 >= len(entries):
                kept = [t for t in entries if self.tokens.get(t.key) is t]
                if kept:
                    index[name] = kept
                else:
                    del index[name]
                self._stale.pop((number, name), None)
            else:
                self._stale[(number, name)] = stale

    _HANDLERS: dict[str, Callable[..., None]] = {
        "client": _put_client,
        "client-": _delete_client,
        "user": _put_user,
        "user-": _delete_user,
        "tok": _issue,
        "tok-": _revoke,
        "grant-": _revoke_grant,
        "used": _mark_used,
    }

    # -- housekeeping -------------------------------------------------------

    def sweep(self, now: float, limit: int = 0) -> tuple[int, bool]:
        """
        Forget tokens that expired before C{now}; they are already refused,
        this only frees their memory.

        @param limit: look at no more than this many keys (0: no limit).
        @return: how many tokens were dropped, and whether expired keys are
            left for another call.
        """
        dropped = 0
        examined = 0
        current = int(now) // EXPIRY_BUCKET
        for bucket in sorted(b for b in self._expiry if b < current):
            keys = self._expiry[bucket]
            while keys:
                if limit and examined >= limit:
                    return dropped, True
                key = keys.pop()
                examined += 1
                token = self.tokens.get(key)
                if token is not None and not token.live(now):
                    self._remove(token)
                    dropped += 1
            del self._expiry[bucket]
        return dropped, False

    def may_issue(self, client_id: str, user: str) -> bool:
        """
        Whether a token for C{client_id} and C{user} (C{""} for none) would be
        loaded: its client and user exist and are enabled.
        """
        if client_id:
            client = self.clients.get(client_id)
            if client is None or not client.enabled:
                return False
        if user:
            owner = self.users.get(user)
            if owner is None or owner.disabled:
                return False
        return True

    def snapshot(self, now: float) -> Iterator[Record]:
        """
        Records that rebuild the live state: every client and user, and every
        token not revoked or expired. Iterates over a copy of the token keys
        so state may change between steps (compaction runs in slices).
        """
        for client in list(self.clients.values()):
            yield client_record(client)
        for user in list(self.users.values()):
            yield user_record(user)
        for key in list(self.tokens):
            token = self.tokens.get(key)
            if token is not None and token.live(now):
                yield token.record()


def replay(state: State, payloads: Iterable[bytes], now: float) -> int:
    """
    Apply journal payloads to C{state}; tokens already expired at C{now} are
    skipped rather than loaded and swept.

    The cyclic garbage collector is paused meanwhile (a million new objects
    would set it off again and again, each time walking all of them), and the
    loaded objects are then frozen out of its reach: state lives as long as
    the process.

    @return: the number of records applied.
    @raise ValueError: naming the record number, if one is malformed.
    """
    count = 0
    issue = state._issue
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for count, payload in enumerate(payloads, 1):
            try:
                # Token records are nearly all of a journal: decode them
                # inline rather than through decode(), which is the same
                # parse with a function call and a type dispatch more.
                if payload.startswith(b"tok\t"):
                    fields = payload.decode("utf-8").split("\t")
                    if len(fields) != 10:
                        raise ValueError("a tok record has 10 fields")
                    issued_at = int(fields[6])
                    lifetime = int(fields[7])
                    if not lifetime or issued_at + lifetime > now:
                        issue(fields[1], fields[2], fields[3], fields[4], fields[5],
                              issued_at, lifetime, fields[8], fields[9])
                else:
                    state.apply(decode(payload))
            except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
                raise ValueError(f"record {count}: {e}") from None
    finally:
        if was_enabled:
            gc.enable()
    gc.freeze()
    return count
