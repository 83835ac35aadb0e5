"""
The authorization endpoint's state in memory (L{oauthd.state.authz_records}):
codes, browser sessions, half logins and consents. L{oauthd.state.model.State}
holds one L{AuthzTables} as C{authz}.

As for every record, applying one is idempotent and one naming something
absent does nothing. Codes, sessions and half logins that expired are
dropped from memory when a table has doubled since it was last pruned (so
pruning costs O(1) a record, amortised), and a snapshot leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TypeVar

import attrs

from oauthd.state.authz_records import (
    AUTHZ_TYPES,
    AuthCode,
    AuthzRecord,
    BrowserEnded,
    BrowserSeen,
    BrowserSession,
    BrowserStarted,
    CodeIssued,
    CodeRedeemed,
    Consent,
    ConsentGranted,
    ConsentRevoked,
    GrantLogin,
    PendingSecondFactor,
    HalfLoginEnded,
    HalfLoginStarted,
    encode,
)
from oauthd.state.device import DevicePut, DeviceTable
from oauthd.state.records import ClientRemoved, GrantRevoked, Record, UserPut, UserRemoved

_PRUNE_FLOOR = 64

_WATCHED = frozenset({*AUTHZ_TYPES, DevicePut, UserPut, UserRemoved, ClientRemoved, GrantRevoked})

_Live = TypeVar("_Live", AuthCode, BrowserSession, PendingSecondFactor, GrantLogin)


class AuthzTables:
    """
    @ivar codes: codes not yet expired (redeemed ones too), by key.
    @ivar browsers: browser sessions, by key.
    @ivar halves: half logins, by key.
    @ivar consents: each user's consents, by user and then client id.
    @ivar logins: the logins OpenID grants came from, by grant id.
    @ivar devices: the device authorization grant's codes.
    """

    def __init__(self) -> None:
        self.codes: dict[str, AuthCode] = {}
        self.browsers: dict[str, BrowserSession] = {}
        self.halves: dict[str, PendingSecondFactor] = {}
        self.consents: dict[str, dict[str, Consent]] = {}
        self.logins: dict[str, GrantLogin] = {}
        self.devices = DeviceTable()
        self._pruned_at = {"codes": _PRUNE_FLOOR, "browsers": _PRUNE_FLOOR, "halves": _PRUNE_FLOOR,
                           "logins": _PRUNE_FLOOR}

    def __len__(self) -> int:
        """
        How many records a snapshot would hold at most.
        """
        return (2 * len(self.codes) + 2 * len(self.browsers) + len(self.halves)
                + sum(map(len, self.consents.values())) + len(self.logins) + len(self.devices))

    def consent(self, user: str, client_id: str) -> Consent | None:
        return self.consents.get(user, {}).get(client_id)

    def apply(self, record: Record, users: Mapping[str, object],
              clients: Mapping[str, object], now: float) -> None:
        """
        Apply one record of any kind (the state applies every record here
        too): this table's own, and those that end a user's sessions or
        drop consents (a user disabled or removed, a client removed).
        C{users} and C{clients} are the state's, by name: nothing is taken
        in for an absent user or client.
        """
        if type(record) not in _WATCHED:
            # Most records are tokens': one lookup instead of a dozen matches.
            return
        match record:
            case UserPut(user=user):
                if user.disabled:
                    self.user_gone(user.name)
            case UserRemoved(name=name):
                self.user_gone(name)
                self.consents.pop(name, None)
            case ClientRemoved(client_id=client_id):
                self.client_removed(client_id)
            case CodeIssued(code=code):
                if code.key not in self.codes and code.live(now) and code.user in users:
                    self.codes[code.key] = code
                    self._maybe_prune("codes", self.codes, now)
            case CodeRedeemed(key=key):
                issued = self.codes.get(key)
                if issued is not None:
                    self.codes[key] = attrs.evolve(issued, redeemed=True)
            case BrowserStarted(session=session):
                if session.user in users and session.live(now) and session.key not in self.browsers:
                    self.browsers[session.key] = session
                    self._maybe_prune("browsers", self.browsers, now)
            case BrowserSeen(key=key, at=at):
                seen = self.browsers.get(key)
                if seen is not None and at > seen.last_seen:
                    self.browsers[key] = attrs.evolve(seen, last_seen=at)
            case BrowserEnded(key=key):
                self.browsers.pop(key, None)
            case HalfLoginStarted(half=half):
                if half.user in users and half.live(now):
                    self.halves[half.key] = half
                    self._maybe_prune("halves", self.halves, now)
            case HalfLoginEnded(key=key):
                self.halves.pop(key, None)
            case ConsentGranted(consent=c):
                if c.user in users and c.client_id in clients:
                    self.consents.setdefault(c.user, {})[c.client_id] = c
            case DevicePut():
                self.devices.apply(record, users, now)
            case GrantLogin(grant=grant):
                if record.live(now):
                    self.logins[grant] = record
                    self._maybe_prune("logins", self.logins, now)
            case GrantRevoked(grant=grant):
                self.logins.pop(grant, None)
            case ConsentRevoked(user=user, client_id=client_id):
                held = self.consents.get(user)
                if held is not None:
                    held.pop(client_id, None)
                    if not held:
                        del self.consents[user]

    def user_gone(self, name: str) -> None:
        """
        The user was removed or disabled: its sessions and half logins end.
        """
        for table in (self.browsers, self.halves):
            for key in [key for key, held in table.items() if held.user == name]:
                del table[key]

    def client_removed(self, client_id: str) -> None:
        for user in [user for user, held in self.consents.items() if client_id in held]:
            self.consents[user].pop(client_id)
            if not self.consents[user]:
                del self.consents[user]

    def _maybe_prune(self, name: str, table: dict[str, _Live], now: float) -> None:
        if len(table) < 2 * self._pruned_at[name]:
            return
        for key in [key for key, held in table.items() if not held.live(now)]:
            del table[key]
        self._pruned_at[name] = max(_PRUNE_FLOOR, len(table))

    def snapshot(self, now: float) -> Iterator[bytes]:
        """
        Payloads that rebuild what is live: codes (marked redeemed if they
        were), sessions (with when they were last seen), half logins and
        consents.
        """
        for code in list(self.codes.values()):
            if code.live(now):
                yield _payload(CodeIssued(code))
                if code.redeemed:
                    yield _payload(CodeRedeemed(code.key))
        for session in list(self.browsers.values()):
            if session.live(now):
                yield _payload(BrowserStarted(session))
                if session.last_seen:
                    yield _payload(BrowserSeen(session.key, session.last_seen))
        for half in list(self.halves.values()):
            if half.live(now):
                yield _payload(HalfLoginStarted(half))
        for held in list(self.consents.values()):
            for consent in list(held.values()):
                yield _payload(ConsentGranted(consent))
        for login in list(self.logins.values()):
            if login.live(now):
                yield _payload(login)
        yield from self.devices.snapshot(now)


def _payload(record: AuthzRecord) -> bytes:
    return encode(record).encode("utf-8")
