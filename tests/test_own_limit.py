"""
A client's token limit over its own tokens (L{State.own_beyond}): the same
revocations as reading every live token of the client and revoking the
oldest (the reference here), after any sequence of changes; and how few
tokens it reads to decide.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from oauthd.state import model
from oauthd.state.admission import apply_at
from oauthd.state.entities import ACCESS, APP_PASSWORD, REFRESH, Client, Token, User
from oauthd.state.indexes import HORIZON, OwnLists
from oauthd.state.model import State
from oauthd.state.records import (
    ClientPut, ClientRemoved, GrantRevoked, Record, TokenIssued, TokenRevoked, UserPut, UserRemoved, encode,
    oldest_beyond,
)
from oauthd.state.rows import Row
from tests.helpers import START
from tests.oauth_helpers import OAuthCase

CLIENTS = ("c1", "c2")


def reference(state: State, client_id: str, limit: int, now: float, adding: int = 1) -> list[Record]:
    """
    The revocations a token limit makes, the straightforward way: every live
    own token of the client the state holds, in the order it took them in,
    the oldest revoked until C{adding} more leave at most C{limit}.
    """
    order = state.token_order
    keys, _ = order.run(0, order.end, len(order))
    held = [state.tokens[key] for key in keys if key in state.tokens]
    live = [t for t in held if t.client_id == client_id and t.own and t.live(now)]
    return oldest_beyond(live, limit, adding)


def decided(state: State, client_id: str, limit: int, now: float, adding: int = 1) -> list[Record]:
    return [TokenRevoked(t.key) for t in state.own_beyond(client_id, limit, now, adding)]


def new_state() -> State:
    state = State()
    state.apply([ClientPut(Client(id=c, name=c, max_tokens=3)) for c in CLIENTS]
                + [UserPut(User(name="alice"))], START)
    return state


_lifetimes = st.sampled_from([0, 1, 30, HORIZON, HORIZON + 1, 600, 3600])
_operations = st.lists(
    st.one_of(
        # A client's own token, issued now or a while ago (decided on another
        # node, or replayed), for the client alone or on behalf of its user.
        st.tuples(st.just("own"), st.sampled_from(CLIENTS), st.sampled_from(["", "alice"]), _lifetimes,
                  st.sampled_from([0, 0, 0, 20, 90])),
        # Tokens the limit does not count: a grant's, an app password.
        st.tuples(st.just("other"), st.sampled_from(CLIENTS), st.sampled_from([ACCESS, REFRESH, APP_PASSWORD]),
                  _lifetimes),
        st.tuples(st.just("revoke"), st.integers(0, 40)),
        st.tuples(st.just("revoke_oldest"), st.sampled_from(CLIENTS), st.integers(0, 4)),
        st.tuples(st.just("revoke_grant"), st.sampled_from(["g1", "g2"])),
        st.tuples(st.just("client"), st.sampled_from(CLIENTS), st.sampled_from(["on", "off", "gone"]),
                  st.sampled_from([-1, 0, 1, 2, 3, 5])),
        st.tuples(st.just("user"), st.sampled_from(["on", "off", "gone"])),
        st.tuples(st.just("tick"), st.sampled_from([1, 29, 30, 31, HORIZON, 61, 120, 700])),
        st.tuples(st.just("sweep"), st.sampled_from([0, 2, 5])),
        st.tuples(st.just("check"), st.sampled_from(CLIENTS), st.integers(0, 6), st.integers(0, 2),
                  st.sampled_from([0, 0, 1, 30, 200])),
        st.tuples(st.just("admit"), st.sampled_from(CLIENTS), _lifetimes, st.sampled_from([0, 0, 30, 200])),
        st.tuples(st.just("snapshot"),),
        st.tuples(st.just("replay"),),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(_operations)
def test_a_token_limit_decides_as_reading_every_token_does(ops: list[tuple[object, ...]]) -> None:
    """
    After any sequence of changes (tokens issued with any lifetime, at any
    time, revoked, expired but not swept, swept; clients and users
    disabled, removed, put back; records admitted at their log position;
    the state rebuilt from a snapshot or from its journal), the token limit
    revokes what the reference does, at the state's time or an earlier one
    (a record decided earlier, admitted at its position).
    """
    state = new_state()
    journal = [encode(ClientPut(c)) for c in state.clients.values()] + [encode(UserPut(state.users["alice"]))]
    now = START
    issued: list[int] = []

    def apply(*records: Record) -> None:
        state.apply(records, now)
        journal.extend(map(encode, records))

    for op in ops:
        match op:
            case ("own", str(client_id), str(user), int(lifetime), int(ago)):
                issued.append(len(issued) + 1)
                apply(TokenIssued(Token(issued[-1], ACCESS, client_id, user, "*", now - ago, lifetime, "", "")))
            case ("other", str(client_id), str(kind), int(lifetime)):
                issued.append(len(issued) + 1)
                grant = "" if kind == APP_PASSWORD else f"g{len(issued) % 2 + 1}"
                apply(TokenIssued(Token(issued[-1], kind, "" if kind == APP_PASSWORD else client_id, "alice", "*",
                                        now, lifetime, grant, "")))
            case ("revoke", int(index)):
                if issued:
                    apply(TokenRevoked(issued[index % len(issued)]))
            case ("revoke_oldest", str(client_id), int(limit)):
                # As a token request does: its decision, then its records.
                apply(*decided(state, client_id, limit, now))
            case ("revoke_grant", str(grant)):
                apply(GrantRevoked(grant))
            case ("client", str(client_id), "gone", int()):
                apply(ClientRemoved(client_id))
            case ("client", str(client_id), str(how), int(max_tokens)):
                apply(ClientPut(Client(id=client_id, name=client_id, enabled=how == "on", max_tokens=max_tokens)))
            case ("user", "gone"):
                apply(UserRemoved("alice"))
            case ("user", str(how)):
                apply(UserPut(User(name="alice", disabled=how == "off")))
            case ("tick", int(seconds)):
                now += seconds
            case ("sweep", int(limit)):
                state.sweep(now, limit)
            case ("check", str(client_id), int(limit), int(adding), int(ago)):
                expected = reference(state, client_id, limit, now - ago, adding)
                assert decided(state, client_id, limit, now - ago, adding) == expected
            case ("admit", str(client_id), int(lifetime), int(ago)):
                # A token decided elsewhere, admitted at its log position,
                # makes room for itself as of when it was issued.
                issued.append(len(issued) + 1)
                token = Token(issued[-1], ACCESS, client_id, "", "*", now - ago, lifetime, "", "")
                client = state.clients.get(client_id)
                admitted = client is not None and client.enabled
                room = reference(state, client_id, client.max_tokens, now - ago) if admitted else []
                made_room: list[Record] = []
                assert apply_at(state, encode(TokenIssued(token)), now, made_room) == admitted
                assert made_room == room
                if admitted:
                    journal.extend(map(encode, [*made_room, TokenIssued(token)]))
            case ("snapshot",):
                journal = list(state.snapshot(now))
                state = State()
                model.replay(state, journal, now)
            case ("replay",):
                state = State()
                model.replay(state, journal, now)
        for client_id in CLIENTS:
            for limit in (0, 1, 3):
                assert decided(state, client_id, limit, now) == reference(state, client_id, limit, now)


class CountingRows(Mapping[int, Row]):
    """
    Rows that count how many times a token is looked up.
    """

    def __init__(self, rows: dict[int, Row]) -> None:
        self.rows = rows
        self.reads = 0

    def __getitem__(self, key: int) -> Row:
        self.reads += 1
        return self.rows[key]

    def get(self, key: int, default: object = None) -> Row | None:  # type: ignore[override]
        self.reads += 1
        return self.rows.get(key)

    def __contains__(self, key: object) -> bool:
        self.reads += 1
        return key in self.rows

    def __iter__(self) -> Iterator[int]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


class ReadsTests(SynchronousTestCase):
    """
    How many tokens a limit check reads: none under the limit, the oldest
    that must go at it, every one only when time has passed what it knew.
    """

    def setUp(self) -> None:
        self.own = OwnLists()
        self.rows: dict[int, Row] = {}
        self.counting = CountingRows(self.rows)

    def take(self, count: int, lifetime: int = 3600, issued_at: int = START) -> None:
        for _ in range(count):
            key = len(self.rows) + 1
            token = self.rows[key] = Token(key, ACCESS, "c", "", "*", issued_at, lifetime, "", "")
            self.own.setdefault("c", []).append(key)
            self.own.took(token)

    def revoke(self, key: int) -> None:
        token = self.rows.pop(key)
        assert isinstance(token, Token)
        self.own.left(token, self.rows)

    def beyond(self, limit: int, now: float) -> list[int]:
        self.counting.reads = 0
        return [t.key for t in self.own.beyond("c", self.counting, limit, now, 1)]

    def test_under_the_limit_nothing_is_read(self) -> None:
        self.take(1000)
        assert self.beyond(100000, START) == []
        assert self.counting.reads == 0

    def test_at_the_limit_the_oldest_only_are_read(self) -> None:
        self.take(1000)
        assert self.beyond(1000, START) == [1]
        assert self.counting.reads >= 1000  # the first check reads them all
        for n in range(2, 600):
            self.revoke(n - 1)
            self.take(1)
            assert self.beyond(1000, START + n) == [n]
            # The oldest held, after a cursor past those revoked before it
            # (none here: each check's revocation is the next one's start).
            assert self.counting.reads <= 3, (n, self.counting.reads)

    def test_expired_tokens_are_known_without_a_read(self) -> None:
        """
        Tokens expiring within the horizon of the last full read are known
        by their expiry times: expired ones are skipped, not counted, and
        the next full read comes no sooner than the horizon.
        """
        self.take(10, lifetime=30)
        self.take(990)
        assert self.beyond(1000, START) == [1]
        # Ten expired but not swept: 990 live leave room for one more.
        assert self.beyond(1000, START + 30) == []
        assert self.counting.reads == 0
        self.take(10)
        assert self.beyond(1000, START + 40) == [11]
        assert self.counting.reads <= 12  # the expired ten, then the oldest live
        # Past the horizon, but the others expire later still.
        assert self.beyond(1000, START + HORIZON + 1) == [11]
        assert self.counting.reads <= 12
        # When they do, one read of them all.
        assert self.beyond(1000, START + 3600) == []
        assert self.counting.reads >= 1010

    def test_expiry_times_are_counted_per_second(self) -> None:
        """
        The mark keeps a count per expiry second, not an entry per token: a
        token leaving (thousands a sweep) shifts no list as long as the
        client's tokens, however many expire together.
        """
        self.take(1000, lifetime=30)
        self.take(1000, lifetime=40)
        assert self.beyond(2000, START) == [1]
        mark = self.own.marks["c"]
        assert len(mark.known) == 2
        for key in range(1, 501):
            self.revoke(key)
        assert self.beyond(1500, START + 30) == []
        assert self.beyond(1000, START + 29) == list(range(501, 1002))

    def test_a_never_expiring_token_is_never_expired(self) -> None:
        self.take(1, lifetime=0, issued_at=0)
        self.take(2, lifetime=1)
        assert self.beyond(1, START + 10 ** 9) == [1]
        # An earlier time than the last check's (a record decided earlier).
        assert self.beyond(1, START) == [1, 2, 3]
        assert self.beyond(2, START + 1) == []


class EdgeTests(SynchronousTestCase):
    """
    Each case the limit must decide as the reference does, at every limit.
    """

    def setUp(self) -> None:
        self.state = new_state()
        self.next_key = 0

    def own(self, lifetime: int = 3600, issued_at: int = START, client_id: str = "c1", user: str = "") -> int:
        self.next_key += 1
        self.state.apply([TokenIssued(Token(self.next_key, ACCESS, client_id, user, "*", issued_at, lifetime,
                                            "", ""))], issued_at)
        return self.next_key

    def check(self, now: float, state: State | None = None) -> None:
        state = state or self.state
        for limit in range(0, len(state.tokens) + 2):
            for adding in (0, 1, 2):
                assert decided(state, "c1", limit, now, adding) == reference(state, "c1", limit, now, adding), (
                    limit, adding)

    def test_a_shorter_lifetime_taken_in_after_a_full_read(self) -> None:
        """
        An admin's token that expires before those the last full read saw
        (beyond its horizon): once it has expired it is not counted.
        """
        first, second = self.own(), self.own()
        assert decided(self.state, "c1", 2, START) == [TokenRevoked(first)]  # the full read
        short = self.own(lifetime=600)
        self.own()
        self.check(START + 599)
        assert decided(self.state, "c1", 3, START + 600) == [TokenRevoked(first)]
        assert short in self.state.tokens  # expired, not swept
        self.check(START + 600)
        assert decided(self.state, "c1", 3, START + 601) == [TokenRevoked(first)], second

    def test_never_expiring_tokens(self) -> None:
        for lifetime in (0, 60, 0, 3600, 0):
            self.own(lifetime)
        decided(self.state, "c1", 0, START)
        for now in (START, START + 60, START + 3600, START + 10 ** 8):
            self.check(now)

    def test_expired_tokens_count_neither_before_nor_after_the_sweep(self) -> None:
        for lifetime in (30, 3600, 30, 3600):
            self.own(lifetime)
        self.check(START)
        self.check(START + 30)
        self.state.sweep(START + 120)
        self.check(START + 120)
        self.own(90)
        self.state.sweep(START + 200)
        self.check(START + 200)
        for lifetime in (30, 3600):
            self.own(lifetime, START + 200)
        self.check(START + 240)

    def test_revocations_in_any_order(self) -> None:
        keys = [self.own(lifetime) for lifetime in (3600, 60, 3600, 0, 120, 3600)]
        self.check(START)
        for key in (keys[2], keys[0], keys[4]):
            self.state.apply([TokenRevoked(key)], START)
            self.check(START + 61)
        self.state.apply([TokenRevoked(k) for k in keys], START)
        self.check(START)
        self.own()
        self.check(START)

    def test_a_client_removed_or_disabled_and_put_back(self) -> None:
        for lifetime in (3600, 60, 0, 3600, 3600, 3600, 3600, 3600, 3600, 3600):
            self.own(lifetime)
        self.own(client_id="c2")
        self.state.apply(decided(self.state, "c1", 8, START), START)
        self.check(START)  # its cursor past the three revoked
        for change in (ClientRemoved("c1"), ClientPut(Client(id="c1", name="c1", enabled=False))):
            self.state.apply([change], START)
            self.check(START)
            self.state.apply([ClientPut(Client(id="c1", name="c1"))], START)
            for lifetime in (60, 3600):
                self.own(lifetime)
            self.check(START + 60)

    def test_tokens_of_a_user_removed(self) -> None:
        """
        A client's own tokens on behalf of its user go with the user.
        """
        self.own(user="alice")
        self.own()
        self.own(60, user="alice")
        self.check(START)
        self.state.apply([UserRemoved("alice")], START)
        self.check(START)

    def test_a_snapshot_and_a_journal_replayed(self) -> None:
        """
        After a restart from a snapshot or from a journal of thousands of
        tokens (taken in a chunk at a time), the limit decides as before.
        """
        journal = [encode(ClientPut(c)) for c in self.state.clients.values()]
        for n in range(5000):
            lifetime = (0, 60, 3600, 7200)[n % 4]
            token = Token(n + 1, ACCESS, "c1" if n % 3 else "c2", "", "*", START + n // 10, lifetime, "", "")
            journal.append(encode(TokenIssued(token)))
            if n % 7 == 0:
                journal.append(encode(TokenRevoked(n)))
        for source in (journal, list(self.replayed(journal, START + 500).snapshot(START + 500))):
            state = self.replayed(source, START + 500)
            for now in (START + 500, START + 561, START + 3700):
                limit = len(reference(state, "c1", 0, now, 0))
                for adding in (1, 50):
                    assert decided(state, "c1", limit, now, adding) == reference(state, "c1", limit, now, adding)

    @staticmethod
    def replayed(payloads: list[bytes], now: float) -> State:
        state = State()
        model.replay(state, payloads, now)
        return state

    def test_two_decided_at_once_evict_at_apply(self) -> None:
        """
        Two nodes each decided a token with one revocation of the same
        oldest token: the later record, admitted at its position, makes room
        by the next oldest, as of when it was issued.
        """
        self.state.apply([ClientPut(Client(id="c1", name="c1", max_tokens=2))], START)
        first, second = self.own(), self.own()
        decided_a = decided(self.state, "c1", 2, START + 1)
        assert decided_a == [TokenRevoked(first)]
        self.state.apply([*decided_a, TokenIssued(Token(100, ACCESS, "c1", "", "*", START + 1, 3600, "", ""))],
                         START + 1)
        made_room: list[Record] = []
        late = Token(101, ACCESS, "c1", "", "*", START + 1, 3600, "", "")
        assert apply_at(self.state, encode(TokenIssued(late)), START + 2, made_room)
        assert made_room == [TokenRevoked(second)]
        assert set(self.state.tokens) == {100, 101}


class TokenEndpointTests(OAuthCase):
    """
    The limit as a client sees it: client_credentials requests beside
    tokens an admin issued for the client with other lifetimes, over time
    and across a restart.
    """

    def test_the_oldest_live_token_goes(self) -> None:
        client, secret = self.add_client("limited", scope="metrics", max_tokens=3, access_ttl=60)

        def cc() -> str:
            reply = self.token({"grant_type": "client_credentials"}, auth=(client.id, secret))
            assert reply.code == 200, reply
            return str(reply.body["access_token"])

        def active() -> set[str]:
            return {name for name, secret in held.items() if self.server.authenticate_token(secret) is not None}

        held = {name: self.successResultOf(self.server.issue_token(scope="metrics", lifetime=lifetime,
                                                                   client=client))[0]
                for name, lifetime in (("never", 0), ("short", 30))}
        held["c1"] = cc()
        held["c2"] = cc()
        assert active() == {"short", "c1", "c2"}
        self.clock.advance(30)
        # The short one expired, not yet swept: room for one more.
        held["c3"] = cc()
        assert active() == {"c1", "c2", "c3"}
        held["c4"] = cc()
        assert active() == {"c2", "c3", "c4"}
        self.restart()
        held["c5"] = cc()
        assert active() == {"c3", "c4", "c5"}
        self.clock.advance(60)  # c1 to c5 have expired
        held["c6"] = cc()
        held["c7"] = cc()
        self.server.store.sweep()
        held["c8"] = cc()
        held["c9"] = cc()
        assert active() == {"c7", "c8", "c9"}
