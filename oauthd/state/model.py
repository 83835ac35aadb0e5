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

Replayed tokens are held in memory as their C{tok} record's payload bytes,
the very object the journal handed over, and a L{Token} is built from one
when it is read. A million tokens then cost a million bytes objects, which
the garbage collector never walks, instead of a million objects with nine
slots each, and replay does the least work per record (split, index, keep).
Tokens issued while the daemon runs are held as L{Token}s, as is a replayed
token once something changes it: the hot path reads recent tokens often
(a client's token limit reads all of its tokens at each issue).
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from attrs import asdict, frozen

from oauthd.protocol import tokens

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
    One issued credential, as read from the state (see L{parse_token}) or
    about to be issued. (A plain class, not attrs: it is built on every
    token read.)

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


Row = Token | bytes
"""
How the state holds a token: a L{Token}, or a C{tok} record's payload.
"""


def parse_token(row: Row) -> Token:
    """
    The token in a row. A payload was checked when the state took it in
    (L{State.load}).
    """
    if type(row) is Token:
        return row
    assert isinstance(row, bytes)
    f = row.decode("utf-8").split("\t")
    return Token(int(f[1], 16), _KINDS[f[2]], f[3], f[4], f[5], int(f[6]), int(f[7]), f[8], f[9])


class TokenTable(Mapping[int, Token]):
    """
    A read-only view of the state's tokens by key, building each L{Token}
    from its record when it is read.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: dict[int, Row]) -> None:
        self._rows = rows

    def __getitem__(self, key: int) -> Token:
        return parse_token(self._rows[key])

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[int]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


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


def decode(payload: bytes) -> Record:
    """
    The record in journal payload bytes, other than a C{tok} record
    (L{State.load} reads those itself, L{parse_token} the ones it holds).

    @raise ValueError: if the payload is not a well-formed record.
    """
    record: Record = payload.decode("utf-8").split("\t")
    kind = record[0]
    if kind in ("client", "user"):
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
        # Each token's tok record, by key; self.tokens is the read-only view.
        self._rows: dict[int, Row] = {}
        self.tokens = TokenTable(self._rows)
        # Token keys in issue order (oldest first): a client's own access
        # tokens (no grant: what its token limit counts, without scanning
        # every user's tokens at that client), the client's other tokens,
        # and every token per user and per grant. A removed key stays in
        # these lists until half of a list is stale, then the list is pruned:
        # removal from a list is O(n), and the rows are the truth.
        self._own: dict[str, list[int]] = {}
        self._by_client: dict[str, list[int]] = {}
        self._by_user: dict[str, list[int]] = {}
        self._by_grant: dict[str, list[int]] = {}
        self._stale: dict[tuple[int, str], int] = {}
        # Keys by the minute their token expires, so a sweep touches only
        # what has expired rather than every token; and the keys replay left
        # for the first sweeps to put there (see replay()).
        self._expiry: dict[int, list[int]] = {}
        self._unbucketed: list[int] = []

    # -- reading ------------------------------------------------------------

    def token(self, key: int, now: float) -> Token | None:
        """
        The live token with C{key}, or C{None} if unknown, revoked or expired.
        """
        row = self._rows.get(key)
        if row is None:
            return None
        token = parse_token(row)
        return token if token.live(now) else None

    def client_tokens(self, client_id: str, now: float) -> list[Token]:
        return self.own_tokens(client_id, now) + self._live(self._by_client, client_id, now)

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

    def _live(self, index: dict[str, list[int]], name: str, now: float) -> list[Token]:
        rows = self._rows
        held = [parse_token(rows[key]) for key in index.get(name, ()) if key in rows]
        return [token for token in held if token.live(now)]

    def live_count(self, now: float) -> int:
        """
        How many tokens are live: all those held but the expired ones a sweep
        has yet to drop, found through the expiry buckets.
        """
        rows = self._rows
        current = int(now) // EXPIRY_BUCKET
        expired = sum(1 for key in self._unbucketed if key in rows and not _live_row(rows[key], now))
        for bucket, keys in self._expiry.items():
            if bucket < current:
                expired += sum(1 for key in keys if key in rows)
            elif bucket == current:
                expired += sum(1 for key in keys if key in rows and not _live_row(rows[key], now))
        return len(rows) - expired

    @property
    def unbucketed(self) -> int:
        """
        How many tokens replay left for the sweep to put in expiry buckets.
        """
        return len(self._unbucketed)

    @property
    def live_records(self) -> int:
        """
        How many records a snapshot holds, for the compaction policy.
        """
        return len(self.clients) + len(self.users) + len(self._rows)

    # -- changing -----------------------------------------------------------

    def load(self, payloads: Iterable[bytes], now: float, replaying: bool = False) -> int:
        """
        Apply journal payloads in order, at replay and at run time alike. A
        C{tok} record's token is taken in unless it expired before C{now} or
        its client or user is absent or disabled.

        @param replaying: hold tokens as their payloads and leave them out of
            the expiry buckets, for L{replay}.
        @return: the number of payloads.
        @raise ValueError: naming the payload's number, if one is malformed.
        """
        # Replay runs this loop a million times for a big journal: token
        # records are taken in without a call per record, each field looked
        # at once, and each key touches as few lists as it can.
        rows = self._rows
        own, by_client, by_user, by_grant = self._own, self._by_client, self._by_user, self._by_grant
        expiry = self._expiry
        clients = self.clients
        users = self.users
        count = 0
        for count, payload in enumerate(payloads, 1):
            try:
                if not payload.startswith(b"tok\t"):
                    self._apply(decode(payload))
                    continue
                _, key_hex, kind, client_id, user, scope, issued_text, lifetime_text, grant, label = (
                    payload.decode("utf-8").split("\t")
                )
                if kind not in _KINDS:
                    raise ValueError(f"unknown token kind {kind[:20]!r}")
                key = int(key_hex, 16)
                issued_at = int(issued_text)
                lifetime = int(lifetime_text)
                if lifetime and issued_at + lifetime <= now:
                    continue
                if key in rows:
                    # Replayed after a snapshot that already held it, possibly
                    # in a later state (a used refresh token): the snapshot wins.
                    continue
                # A token replayed after a snapshot in which its client or user
                # is already gone or disabled: the revocation that came with
                # that must hold.
                # Names are shared with the client and user from here on.
                if client_id:
                    client = clients.get(client_id)
                    if client is None or not client.enabled:
                        continue
                    client_id = client.id
                if user:
                    owner = users.get(user)
                    if owner is None or owner.disabled:
                        continue
                    user = owner.name
                row: Row = payload if replaying else Token(
                    key, _KINDS[kind], client_id, user, scope, issued_at, lifetime, grant, label,
                )
                rows[key] = row
                # get-then-insert rather than setdefault(name, []): no
                # throwaway list per token.
                if client_id:
                    index = by_client if grant or kind != ACCESS else own
                    listed = index.get(client_id)
                    if listed is None:
                        listed = index[client_id] = []
                    listed.append(key)
                if user:
                    listed = by_user.get(user)
                    if listed is None:
                        listed = by_user[user] = []
                    listed.append(key)
                if grant:
                    listed = by_grant.get(grant)
                    if listed is None:
                        listed = by_grant[grant] = []
                    listed.append(key)
                if lifetime and not replaying:
                    minute = (issued_at + lifetime) // EXPIRY_BUCKET
                    listed = expiry.get(minute)
                    if listed is None:
                        listed = expiry[minute] = []
                    listed.append(key)
            except (ValueError, TypeError, KeyError, AttributeError, UnicodeError) as e:
                raise ValueError(f"record {count}: {e}") from None
        return count

    def apply(self, record: Record) -> None:
        """
        Apply one record: L{load} with its payload.

        @raise ValueError: if the record is malformed.
        """
        self.load([encode(record)], 0)

    def _apply(self, record: Record) -> None:
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
            self._drop_client_tokens(client.id)

    def _delete_client(self, client_id: str) -> None:
        self.clients.pop(client_id, None)
        self._drop_client_tokens(client_id)

    def _drop_client_tokens(self, client_id: str) -> None:
        self._drop_indexed(_OWN, self._own, client_id)
        self._drop_indexed(_BY_CLIENT, self._by_client, client_id)

    def _put_user(self, fields: dict[str, Any]) -> None:
        user = User(**fields)
        self.users[user.name] = user
        if user.disabled:
            self._drop_indexed(_BY_USER, self._by_user, user.name)

    def _delete_user(self, name: str) -> None:
        self.users.pop(name, None)
        self._drop_indexed(_BY_USER, self._by_user, name)

    def _revoke(self, key_hex: str) -> None:
        key = int(key_hex, 16)
        if key in self._rows:
            self._remove(key)

    def _revoke_grant(self, grant: str) -> None:
        self._drop_indexed(_BY_GRANT, self._by_grant, grant)

    def _mark_used(self, key_hex: str) -> None:
        key = int(key_hex, 16)
        row = self._rows.get(key)
        if row is not None:
            token = parse_token(row)
            if token.kind == REFRESH:
                token.kind = USED_REFRESH
                self._rows[key] = token

    def _drop_indexed(self, number: int, index: dict[str, list[int]], name: str) -> None:
        """
        Remove every token listed under C{name} in one index, and the list.
        """
        self._stale.pop((number, name), None)
        rows = self._rows
        for key in index.pop(name, []):
            if key in rows:
                self._remove(key)

    def _remove(self, key: int) -> None:
        rows = self._rows
        token = parse_token(rows.pop(key))
        client_id = token.client_id
        own = client_id if token.kind == ACCESS and not token.grant else ""
        for number, index, name in (
            (_OWN, self._own, own), (_BY_CLIENT, self._by_client, "" if own else client_id),
            (_BY_USER, self._by_user, token.user), (_BY_GRANT, self._by_grant, token.grant),
        ):
            if not name or name not in index:
                continue
            stale = self._stale.get((number, name), 0) + 1
            entries = index[name]
            if stale * 2 >= len(entries):
                kept = [k for k in entries if k in rows]
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
        "tok-": _revoke,
        "grant-": _revoke_grant,
        "used": _mark_used,
    }

    # -- housekeeping -------------------------------------------------------

    def sweep(self, now: float, limit: int = 0) -> tuple[int, bool]:
        """
        Forget tokens that expired before C{now}; they are already refused,
        this only frees their memory. Keys replay left unbucketed come first:
        each is dropped if expired, else put in its bucket.

        @param limit: look at no more than this many keys (0: no limit).
        @return: how many tokens were dropped, and whether keys are left for
            another call.
        """
        dropped = 0
        examined = 0
        rows = self._rows
        current = int(now) // EXPIRY_BUCKET
        due = sorted(minute for minute in self._expiry if minute < current)
        for minute, keys in [(None, self._unbucketed), *((m, self._expiry[m]) for m in due)]:
            while keys:
                if limit and examined >= limit:
                    return dropped, True
                key = keys.pop()
                examined += 1
                row = rows.get(key)
                if row is None:
                    continue
                expires_at = _expires_at(row)
                if expires_at and expires_at <= now:
                    self._remove(key)
                    dropped += 1
                elif expires_at and minute is None:
                    # Live, so its minute is not due yet: not in this loop.
                    self._expiry.setdefault(expires_at // EXPIRY_BUCKET, []).append(key)
            if minute is not None:
                del self._expiry[minute]
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

    def snapshot(self, now: float) -> Iterator[bytes]:
        """
        Payloads that rebuild the live state: every client and user, and
        every token not revoked or expired. Iterates over a copy of the token
        keys so state may change between steps (compaction runs in slices).
        """
        for client in list(self.clients.values()):
            yield encode(client_record(client))
        for user in list(self.users.values()):
            yield encode(user_record(user))
        rows = self._rows
        for key in list(rows):
            row = rows.get(key)
            if row is not None and _live_row(row, now):
                yield row if type(row) is bytes else encode(parse_token(row).record())


# The token indexes, numbered for the stale-entry counts.
_OWN, _BY_CLIENT, _BY_USER, _BY_GRANT = range(4)


def _expires_at(row: Row) -> int:
    """
    When the token in a row expires; 0 for never. (A payload's expiry without
    a whole parse: the sweep reads a million of them after a replay.)
    """
    if type(row) is Token:
        return row.expires_at
    assert isinstance(row, bytes)
    fields = row.split(b"\t", 8)
    try:
        lifetime = int(fields[7])
        return int(fields[6]) + lifetime if lifetime else 0
    except ValueError:
        # Digits other than ASCII ones, which int() takes only from text.
        return parse_token(row).expires_at


def _live_row(row: Row, now: float) -> bool:
    expires_at = _expires_at(row)
    return not expires_at or now < expires_at


def replay(state: State, payloads: Iterable[bytes], now: float) -> int:
    """
    Apply journal payloads to C{state} (L{State.load}); tokens already
    expired at C{now} are skipped rather than loaded and swept.

    Start-up waits for this, so it does only what serving needs: the tokens
    loaded into an empty state are left out of the expiry buckets, which
    only the sweep reads, and the first sweeps put them there a slice at a
    time once the daemon runs.

    The cyclic garbage collector is paused meanwhile (loading makes lists and
    dicts that would set it off again and again, each time walking all of
    them), and what was loaded is then frozen out of its reach: state lives
    as long as the process.

    @return: the number of records applied.
    @raise ValueError: naming the record number, if one is malformed.
    """
    empty = not state.tokens
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        count = state.load(payloads, now, replaying=empty)
        if empty:
            state._unbucketed = list(state.tokens)
    finally:
        if was_enabled:
            gc.enable()
    gc.freeze()
    return count
