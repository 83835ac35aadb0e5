"""
The in-memory state: clients, users and tokens, with an index for every lookup
on a hot path, built by applying records (L{oauthd.state.records}) in order: at
start-up the event log's payloads (L{State.load}), at run time the records the
committer was given (L{State.apply}), so the log and memory cannot disagree.

Applying a record is idempotent, and a record naming something absent does
nothing: compaction may snapshot state that already reflects a record it will
replay again after the snapshot. For the same reason a token whose client or
user is absent or disabled is not loaded, and deleting or disabling a client
or user drops its tokens whatever state it was in before.

Replayed tokens are held in memory as their C{tok} record's payload bytes,
the very object the event log handed over, and a L{Token} is built from one
when it is read. A million tokens then cost a million bytes objects, which
the garbage collector never walks, instead of a million objects with nine
slots each, and replay does the least work per record (split, index, keep).
Tokens issued while the daemon runs are held as the L{Token}s their records
carry, as is a replayed token once something changes it: the hot path reads
recent tokens often (a client's token limit, at the limit, its oldest).

A used refresh token is not a token any more: its family
(L{oauthd.state.families}) keeps its key, for reuse detection only. How many
tokens each client and user holds is counted as they come and go.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from oauthd.state import audit_anchor, authz, keys, rotation, second_factor, token_runs, uses
from oauthd.state.entities import ACCESS, REFRESH, USED_REFRESH, Client, Token, User
from oauthd.state.families import EXPIRY_BUCKET, Families, Family
from oauthd.state.indexes import KeyLists, TokenLists, access_beyond
from oauthd.state.order import TakenOrder
from oauthd.state.snapshot import snapshot_payloads
from oauthd.state.records import (
    KINDS_BY_NAME as _KINDS, TOKEN_TAG, ClientPut, ClientRemoved, FamilyHeld, GrantRevoked,
    Record, RecoveryCodeUsed, RefreshSpent, RefreshUsed, SecondFactorDisabled, SecondFactorEnabled,
    TokenIssued, TokenRevoked, TotpStepUsed, UserPut, UserRemoved, decode,
)
from oauthd.state.rotation_records import TokenRotated
from oauthd.state.rows import Row, TokenTable, parse_token, row_expiry

__all__ = ["EXPIRY_BUCKET", "Row", "State", "TokenTable", "parse_token", "replay"]


class State:
    """
    Everything the server knows, in memory.

    @ivar clients: by client id.
    @ivar users: by name.
    @ivar second_factors: the users who turned on TOTP, by name.
    @ivar tokens: every token not revoked, not used (a refresh token) and
        not yet swept, by key.
    @ivar families: the refresh families and their used refresh tokens.
    """

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self.users: dict[str, User] = {}
        self.second_factors: second_factor.SecondFactors = {}
        self.authz = authz.AuthzTables()  # codes, browser sessions, consents
        self.keys = keys.Keys()  # signing keys
        self.uses = uses.Uses()  # registrations initial access tokens have left
        self.audit_anchor = audit_anchor.AuditAnchor()  # where the audit trail begins
        # Each token's tok record, by key; self.tokens is the read-only view.
        self._rows: dict[int, Row] = {}
        self.tokens = TokenTable(self._rows)
        # Every token key in issue order, for listings (read-only outside).
        self.token_order = TakenOrder(self._rows, floor=1024)
        self._taken = self.token_order.add
        # Token keys in issue order (oldest first) by client, user and grant
        # (the tables of self._lists, named here for replay's sake).
        self._lists = lists = TokenLists()
        self._own, self._by_client, self._by_user, self._by_grant = (
            lists.own, lists.by_client, lists.by_user, lists.by_grant)
        # Keys by the minute their token expires, so a sweep touches only
        # what has expired rather than every token; and the keys replay left
        # for the first sweeps to put there (see replay()).
        self._expiry: dict[int, list[int]] = {}
        self._unbucketed: list[int] = []
        # How many of the tokens held each client and user holds.
        self._client_count, self._user_count = lists.client_count, lists.user_count
        self.families = Families()
        self._spent = self.families.spent

    # -- reading ------------------------------------------------------------

    def token(self, key: int, now: float) -> Token | None:
        """
        The live token with C{key}, or C{None} if unknown, revoked or expired.
        """
        row = self._rows.get(key)
        if row is None:
            return None
        # (Calls inline: every token presented is looked up here.)
        token = row if type(row) is Token else parse_token(row)
        return token if not token.lifetime or now < token.issued_at + token.lifetime else None  # Token.live

    def client_tokens(self, client_id: str, now: float) -> list[Token]:
        return self._live(self._own, client_id, now) + self._live(self._by_client, client_id, now)

    def user_tokens(self, user: str, now: float) -> list[Token]:
        return self._live(self._by_user, user, now)

    def grant_tokens(self, grant: str, now: float) -> list[Token]:
        return self._live(self._by_grant, grant, now)

    def access_beyond(self, grant: str, limit: int, now: float) -> list[Token]:
        """
        The oldest live access tokens of C{grant}, as many as must go for one
        more to leave at most C{limit} (0 or more).
        """
        return access_beyond(self.families.get(grant), self._by_grant.get(grant, ()), self._rows, limit, now)

    def own_beyond(self, client_id: str, limit: int, now: float, adding: int = 1) -> list[Token]:
        """
        The client's oldest live own access tokens (no user grant: issued by
        client_credentials or an admin), as many as must go for C{adding}
        more to leave at most C{limit} (0 or more).
        """
        return self._own.beyond(client_id, self._rows, limit, now, adding)

    def _live(self, index: KeyLists, name: str, now: float) -> list[Token]:
        rows = self._rows
        held = [r if type(r) is Token else parse_token(r) for r in map(rows.get, index.get(name, ())) if r is not None]
        return [token for token in held if not token.lifetime or now < token.issued_at + token.lifetime]  # Token.live

    def token_count(self, client_id: str = "", user: str = "") -> int:
        """
        How many tokens the state holds: all of them, or one client's or one
        user's. A token leaves the count when it is revoked or used (a
        refresh token), or when the sweep drops it once it has expired.
        """
        if client_id:
            return self._client_count.get(client_id, 0)
        if user:
            return self._user_count.get(user, 0)
        return len(self._rows)

    def used_family(self, key: int) -> Family | None:
        """
        The live family that has used the refresh token with C{key}, if its
        client and user are still there.
        """
        family = self.families.of_used(key)
        if family is None or self._owners(family.client_id, family.user) is None:
            return None
        return family

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
        return (len(self.clients) + len(self.users) + len(self.second_factors) + len(self._rows) + len(self.uses)
                + self.families.records() + len(self.authz) + len(self.keys) + len(self.audit_anchor))

    # -- changing -----------------------------------------------------------

    def load(self, payloads: Iterable[bytes], now: float, replaying: bool = False, first: int = 1) -> int:
        """
        Apply event-log payloads in order (replay). A C{tok} record's token
        (and each of a C{rot} record's new ones) is taken in unless it
        expired before C{now} or its client or user is absent or disabled.

        @param replaying: hold tokens as their payloads and leave them out of
            the expiry buckets, for L{replay}.
        @param first: the number of the first payload, for error messages.
        @return: the number of payloads.
        @raise ValueError: naming the payload's number, if one is malformed.
        """
        # Replay runs this loop a million times for a big journal: a token
        # record is read without a call to decode it, each field looked at
        # once, and kept as the payload itself.
        rows = self._rows
        spent = self.families.spent
        count = first - 1
        for count, payload in enumerate(payloads, first):
            try:
                if not payload.startswith(TOKEN_TAG):
                    record = decode(payload)
                    if type(record) is TokenRotated:
                        rotation.replayed(self, record, now, replaying)
                    else:
                        self._apply(record, now)
                    continue
                _, key_hex, kind, client_id, user, scope, issued_text, lifetime_text, grant, label = (
                    payload.decode("utf-8").split("\t")
                )
                if kind not in _KINDS:
                    raise ValueError(f"unknown token kind {kind[:20]!r}")
                key = int(key_hex, 16)
                issued_at = int(issued_text)
                lifetime = int(lifetime_text)
                if (lifetime and issued_at + lifetime <= now) or key in rows or key in spent:
                    # Expired; or replayed after a snapshot that already held
                    # it, possibly in a later state (a used refresh token):
                    # the snapshot wins.
                    continue
                owners = self._owners(client_id, user)
                if owners is None:
                    continue
                client_id, user = owners
                if not self._enter_family(key, kind, grant, client_id, user, issued_at,
                                          issued_at + lifetime if lifetime else 0):
                    continue
                if replaying:
                    rows[key] = payload
                    self._index(key, client_id, user, grant, kind == ACCESS and not grant, 0)
                else:
                    self._take(Token(key, _KINDS[kind], client_id, user, scope, issued_at,
                                     lifetime, grant, label))
            except (ValueError, TypeError, KeyError, AttributeError, UnicodeError) as e:
                raise ValueError(f"record {count}: {e}") from None
        return count - first + 1

    def apply(self, records: Iterable[Record], now: float) -> None:
        """
        Apply records the committer was given, in order, at run time: each
        issued token is held as the very L{Token} its record carries.
        """
        for record in records:
            self._apply(record, now)

    def _apply(self, record: Record, now: float) -> None:
        # A token request's records first, by their type alone: no other
        # table takes them.
        if type(record) is TokenIssued:
            self._issue(record.token)
            return
        if type(record) is TokenRevoked:
            if record.key in self._rows:
                self._remove(record.key)
            return
        if type(record) is RefreshUsed:
            key = record.key
            row = self._rows.get(key)
            if row is not None and (row if type(row) is Token else parse_token(row)).kind == REFRESH:
                self._spend(key, self._remove(key).grant)
            return
        if type(record) is TokenRotated:
            rotation.rotate(self, record, now)
            return
        self.authz.apply(record, self.users, self.clients, now)
        self.keys.apply(record)
        self.uses.apply(record, self._rows)
        self.audit_anchor.apply(record)
        match record:
            case GrantRevoked(grant=grant):
                self._drop_indexed(self._by_grant, grant)
                self.families.end(grant)
            case RefreshSpent(key=key, grant=grant):
                if key in self._rows:
                    self._remove(key)
                self._spend(key, grant)
            case FamilyHeld(grant=grant, expires_at=expires_at):
                owners = self._owners(record.client_id, record.user)
                if owners is not None and not (expires_at and expires_at <= now):
                    self.families.join(grant, *owners, record.started, expires_at)
            case ClientPut(client=client):
                self.clients[client.id] = client
                if not client.enabled:
                    self._drop_client_tokens(client.id)
            case ClientRemoved(client_id=client_id):
                self.clients.pop(client_id, None)
                self._drop_client_tokens(client_id)
            case UserPut(user=user):
                self.users[user.name] = user
                if user.disabled:
                    self._drop_indexed(self._by_user, user.name)
            case UserRemoved(name=name):
                self.users.pop(name, None)
                self.second_factors.pop(name, None)
                self._drop_indexed(self._by_user, name)
            case SecondFactorEnabled() | SecondFactorDisabled() | TotpStepUsed() | RecoveryCodeUsed():
                second_factor.apply(self.second_factors, self.users, record)

    def _issue(self, token: Token) -> None:
        """
        Take in a token issued at run time, as the very L{Token} its record
        carries (see L{_enter_family}).
        """
        key = token.key
        lifetime = token.lifetime
        if key in self._rows or key in self._spent:  # expired too: the sweep drops it
            return
        owners = self._owners(token.client_id, token.user)
        if owners is None:
            return
        # Names are shared with the client and user from here on.
        token.client_id, token.user = client_id, user = owners
        expires_at = token.issued_at + lifetime if lifetime else 0
        grant = token.grant
        if not grant or self._enter_family(key, token.kind, grant, client_id, user, token.issued_at, expires_at):
            self._rows[key] = token
            self._index(key, client_id, user, grant, token.kind == ACCESS and not grant, expires_at)
            self._own.took(token)

    def _enter_family(
        self, key: int, kind: str, grant: str, client_id: str, user: str, issued_at: int,
        expires_at: int,
    ) -> bool:
        """
        Enter a token being taken in into its family, if it has one; whether
        it is then held as a token: a used refresh token (as journals from
        before family records hold them) is only a key of its family.
        """
        if grant:
            family = self.families.join(grant, client_id, user, issued_at, expires_at)
            if kind == USED_REFRESH:
                self.families.spend(family, key)
            elif kind == ACCESS:
                family.took_access(expires_at)
        return kind != USED_REFRESH

    def _spend(self, key: int, grant: str) -> None:
        family = self.families.get(grant)
        if family is not None:
            self.families.spend(family, key)

    def _owners(self, client_id: str, user: str) -> tuple[str, str] | None:
        """
        The client id and user name of a token about to be taken in, as the
        state's own strings (shared, not one copy per token); C{None} if its
        client or user is absent or disabled: a token replayed after a
        snapshot in which they are gone or disabled stays revoked.
        """
        if client_id:
            client = self.clients.get(client_id)
            if client is None or not client.enabled:
                return None
            client_id = client.id
        if user:
            owner = self.users.get(user)
            if owner is None or owner.disabled:
                return None
            user = owner.name
        return client_id, user

    def _take(self, token: Token) -> None:
        key = token.key
        self._rows[key] = token
        self._index(key, token.client_id, token.user, token.grant, token.own, token.expires_at)
        self._own.took(token)

    def _index(self, key: int, client_id: str, user: str, grant: str, own: bool, expires_at: int) -> None:
        """
        List a token's key in the indexes it belongs to, and in its expiry
        bucket if C{expires_at} is given.
        """
        # Straight-line, and get-then-insert rather than setdefault(name,
        # []): replay runs this a million times for a big journal.
        self._taken(key)
        if client_id:
            index = self._own if own else self._by_client
            listed = index.get(client_id)
            if listed is None:
                listed = index[client_id] = []
            listed.append(key)
            counts = self._client_count
            counts[client_id] = counts.get(client_id, 0) + 1
        if user:
            listed = self._by_user.get(user)
            if listed is None:
                listed = self._by_user[user] = []
            listed.append(key)
            counts = self._user_count
            counts[user] = counts.get(user, 0) + 1
        if grant:
            listed = self._by_grant.get(grant)
            if listed is None:
                listed = self._by_grant[grant] = []
            listed.append(key)
        if expires_at:
            minute = expires_at // EXPIRY_BUCKET
            listed = self._expiry.get(minute)
            if listed is None:
                listed = self._expiry[minute] = []
            listed.append(key)

    def _drop_client_tokens(self, client_id: str) -> None:
        self._drop_indexed(self._own, client_id)
        self._drop_indexed(self._by_client, client_id)

    def _drop_indexed(self, index: KeyLists, name: str) -> None:
        """
        Remove every token listed under C{name} in one index, and the list;
        the families of the tokens a client or user loses end with them.
        """
        rows = self._rows
        for key in index.take(name):
            if key in rows:
                grant = self._remove(key).grant
                if grant and index is not self._by_grant:
                    self.families.end(grant)

    def _remove(self, key: int) -> Token:
        rows = self._rows
        row = rows.pop(key)
        token = row if type(row) is Token else parse_token(row)
        self.token_order.removed()
        self._lists.remove(token, rows)
        if token.grant and token.kind == ACCESS:
            family = self.families.get(token.grant)
            if family is not None and family.access:
                family.access -= 1
        return token

    # -- housekeeping -------------------------------------------------------

    def sweep(self, now: float, limit: int = 0) -> tuple[int, bool]:
        """
        Forget tokens that expired before C{now}; they are already refused,
        this only frees their memory. Keys replay left unbucketed come first:
        each is dropped if expired, else put in its bucket.

        Then the families whose every token has expired end, and the used
        keys of ended families are forgotten (L{Families.sweep}).

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
                expires_at = row_expiry(row)
                if expires_at and expires_at <= now:
                    self._remove(key)
                    dropped += 1
                elif expires_at and minute is None:
                    # Live, so its minute is not due yet: not in this loop.
                    self._expiry.setdefault(expires_at // EXPIRY_BUCKET, []).append(key)
            if minute is not None:
                del self._expiry[minute]
        if limit and examined >= limit:
            return dropped, True
        _, more = self.families.sweep(now, limit - examined if limit else 0)
        return dropped, more

    def may_issue(self, client_id: str, user: str) -> bool:
        """
        Whether a token for C{client_id} and C{user} (C{""} for none) would be
        loaded: its client and user exist and are enabled.
        """
        return self._owners(client_id, user) is not None

    def snapshot(self, now: float) -> Iterator[bytes]:
        """
        Payloads that rebuild the live state (L{oauthd.state.snapshot}).
        """
        return snapshot_payloads(self, self._rows, now)


def replay(state: State, payloads: Iterable[bytes], now: float) -> int:
    """
    Apply event-log payloads to C{state} (L{State.load}, or L{token_runs} into an
    empty state); tokens already expired at C{now} are skipped, not loaded and swept.

    Start-up waits for this, so it does only what serving needs: tokens loaded
    into an empty state are left out of the expiry buckets, which only the
    sweep reads; the first sweeps put them there a slice at a time.

    @return: the number of records applied.
    @raise ValueError: naming the record number, if one is malformed.
    """
    empty = not state.tokens
    if empty:
        state._own.marks.clear()  # replay lists tokens without them
    count = token_runs.replay_chunks(state, payloads, now) if empty else state.load(payloads, now)
    if empty:
        # Every token held is left for the sweep, so what a rotation record
        # put in the buckets would be listed twice.
        state._expiry.clear()
        state._unbucketed = list(state.tokens)
    return count
