"""
Tests for the state model, the store and the protocol core.
"""

from __future__ import annotations

import json
import random

import attrs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthd.eventlog import MemoryJournal
from oauthd.protocol import tokens
from oauthd.protocol.errors import Conflict, InvalidValue, NotFound
from oauthd.state import model
from oauthd.state.entities import (
    ACCESS, APP_PASSWORD, REFRESH, USED_REFRESH, Client, SecondFactor, Token, User,
)
from oauthd.state.model import State
from oauthd.state.audit_anchor import AuditAnchored
from oauthd.state.records import (
    ClientPut,
    ClientRemoved,
    FamilyHeld,
    GrantRevoked,
    RecoveryCodeUsed,
    RefreshSpent,
    RefreshUsed,
    SecondFactorDisabled,
    SecondFactorEnabled,
    TokenIssued,
    TokenRevoked,
    TokenUses,
    TotpStepUsed,
    UserPut,
    UserRemoved,
    decode,
    encode,
)
from tests.helpers import START, make_server


def test_token_formats() -> None:
    """
    Access tokens are 48 hex; app passwords are PhotoPrism's 27-character
    checksummed format, and a single changed character fails the check.
    """
    access = tokens.new_access_token()
    assert tokens.is_access_token(access) and len(access) == 48
    # A fixed source makes the typo cases fixed too: a random one would keep
    # the check character by chance one time in 62.
    app = tokens.new_app_password(random.Random(7).randbytes)
    assert tokens.is_app_password(app)
    assert [app[6], app[13], app[20]] == ["-", "-", "-"]
    for i in (0, 8, 25, 26):
        swapped = "a" if app[i] != "a" else "b"
        assert not tokens.is_app_password(app[:i] + swapped + app[i + 1:])
    assert not tokens.is_app_password(access)
    client_id = tokens.new_client_id(START)
    assert tokens.is_client_id(client_id) and client_id.startswith("c")
    assert len(tokens.new_client_secret()) == 32


def test_keys_handles_and_session_ids_agree() -> None:
    """
    A token's session id (full SHA-256 hex) names the same key as its secret.
    """
    secret = tokens.new_access_token()
    key = tokens.token_key(secret)
    assert tokens.key_from_session_id(tokens.session_id(secret)) == key
    assert tokens.is_handle(tokens.handle(key))
    assert tokens.key_from_session_id("z" * 64) is None


def test_a_handle_spells_the_top_51_bits_of_its_key() -> None:
    for key in (0, 1 << tokens.HANDLE_SHIFT, (1 << tokens.HANDLE_SHIFT) - 1, 2**128 - 1,
                tokens.token_key(tokens.new_access_token())):
        handle = tokens.handle(key)
        assert tokens.is_handle(handle), handle
        assert tokens.handle_prefix(handle) == key >> tokens.HANDLE_SHIFT
    assert tokens.handle(0) == "sess0000000000"


# Payloads written by oauthd before its records were typed (b65e239): the
# on-disk format did not change, so the codec must read and write them
# byte for byte.
GOLDEN = [
    b'client\t{"id":"c0000000000000001","name":"Fotos \xc3\xa9 \xc3\xbc \xf0\x9f\x99\x82","secret_digest":"abababababababababababababababababababababababababababababababab","type":"public","grant_types":["password","refresh_token"],"scope":"openid photos","access_ttl":600,"refresh_ttl":86400,"max_tokens":-1,"redirect_uris":["https://app.example/cb","http://127.0.0.1/cb"],"enabled":false,"user":"alice","role":"admin","created_at":1800000000}',
    b'client\t{"id":"c2","name":"","secret_digest":"","type":"confidential","grant_types":["client_credentials"],"scope":"*","access_ttl":3600,"refresh_ttl":2592000,"max_tokens":10,"redirect_uris":[],"enabled":true,"user":"","role":"client","created_at":0}',
    b'user\t{"name":"alice","password_hash":"$2b$04$abc","role":"admin","disabled":true,"full_name":"Alice \xc3\x89\\"q\\\\","email":"a@example.com","created_at":1800000001}',
    b'user\t{"name":"bob","password_hash":"","role":"user","disabled":false,"full_name":"","email":"","created_at":0}',
    b'tok\tffffffffffffffffffffffffffffffff\trefresh\tc2\talice\topenid *\t1800000000\t0\t0123456789abcdef\tfrom sess0000000000',
    b'tok\t00000000000000000000000000000001\tapp\t\tbob\t*\t1800000000\t3600\t\tphone \xc3\xa9',
    b'tok-\t000000000000000000000000000000ff',
    b'used\t80000000000000000000000000000000',
    b'grant-\t0123456789abcdef',
    b'client-\tc2',
    b'user-\tbob',
]

GOLDEN_SINCE = [
    # A resource server (issue 12): "introspect" is written only when true.
    b'client\t{"id":"c3","name":"rs","secret_digest":"","type":"confidential","grant_types":["client_credentials"],"scope":"metrics","access_ttl":3600,"refresh_ttl":2592000,"max_tokens":10,"redirect_uris":[],"enabled":true,"user":"","role":"client","created_at":0,"introspect":true}',
    # OpenID Connect (issue 15): each written only when set.
    b'client\t{"id":"c4","name":"rp","secret_digest":"","type":"confidential","grant_types":["authorization_code"],"scope":"openid","access_ttl":3600,"refresh_ttl":2592000,"max_tokens":10,"redirect_uris":[],"enabled":true,"user":"","role":"client","created_at":0,"jwt_access_tokens":true,"audience":["https://api.example"],"id_token_signed_response_alg":"ES256","id_token_claims":true}',
    b'user\t{"name":"carol","password_hash":"","role":"user","disabled":false,"full_name":"Carol","email":"c@example.com","created_at":5,"uid":"u0123456789abcde","email_verified":true,"address":"1 Main St","updated_at":6}',
]


def test_oidc_fields_added_since_keep_the_format() -> None:
    """
    The subject id, profile and OpenID client settings of issue 15 read
    back from their records; a record without them is byte for byte what
    it was (L{GOLDEN}), and they default to unset.
    """
    rp, carol = (decode(p) for p in GOLDEN_SINCE[1:])
    assert isinstance(rp, ClientPut) and isinstance(carol, UserPut)
    assert rp.client.audience == ("https://api.example",) and rp.client.jwt_access_tokens
    assert carol.user.uid == "u0123456789abcde" and carol.user.email_verified
    old_user = decode(GOLDEN[3])
    assert isinstance(old_user, UserPut) and old_user.user.uid == "" and old_user.user.updated_at == 0
    old_client = decode(GOLDEN[1])
    assert isinstance(old_client, ClientPut) and old_client.client.audience == ()


def test_the_format_of_records_is_unchanged() -> None:
    """
    Every kind of record reads from, and writes back to, exactly the bytes
    the untyped records had.
    """
    assert [type(decode(p)).__name__ for p in GOLDEN] == [
        "ClientPut", "ClientPut", "UserPut", "UserPut", "TokenIssued", "TokenIssued",
        "TokenRevoked", "RefreshUsed", "GrantRevoked", "ClientRemoved", "UserRemoved"]
    assert [encode(decode(p)) for p in GOLDEN] == GOLDEN
    state = State()
    model.replay(state, GOLDEN[:6], START)
    assert state.clients["c0000000000000001"].redirect_uris == ("https://app.example/cb", "http://127.0.0.1/cb")
    assert state.users["alice"].full_name == 'Alice \u00c9"q\\'


def test_fields_added_since_keep_the_format() -> None:
    """
    A client field added later is read as its default from an older record,
    and written only when set, so older records still read and write back
    byte for byte (L{GOLDEN}) while newer ones keep it.
    """
    assert [decode(p).client.introspect for p in GOLDEN[:2]] == [False, False]  # type: ignore[union-attr]
    assert [encode(decode(p)) for p in GOLDEN_SINCE] == GOLDEN_SINCE
    rs = decode(GOLDEN_SINCE[0])
    assert isinstance(rs, ClientPut) and rs.client.introspect is True
    assert encode(ClientPut(attrs.evolve(rs.client, introspect=False))) == GOLDEN_SINCE[0].replace(
        b',"introspect":true', b"")


GOLDEN_2FA = [
    # Two-factor login (issue 14): an enrollment, a TOTP step and a recovery
    # code used, and the second factor turned off.
    b'2fa\t{"user":"alice","secret":"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP","recovery":["' + b"ab" * 32
    + b'","' + b"cd" * 32 + b'"],"enabled_at":1800000000}',
    b"2fa-step\talice\t60000000",
    b"2fa-code\talice\t" + b"ab" * 32,
    b"2fa-\talice",
]


GOLDEN_USES = [
    # Limited initial access tokens (issue 16): registrations left.
    b"uses\t00000000000000000000000000000001\t3",
    b"uses\t00000000000000000000000000000001\t0",
]


def test_uses_records_keep_their_format() -> None:
    """
    A C{uses} record reads from and writes back to exactly these bytes; after
    the older records it limits their token, never raises the count it
    holds, and 0 drops the entry.
    """
    records = [TokenUses(1, 3), TokenUses(1, 0)]
    assert [encode(record) for record in records] == GOLDEN_USES
    assert [decode(payload) for payload in GOLDEN_USES] == records
    state = State()
    model.replay(state, [*GOLDEN[:6], GOLDEN_USES[0], encode(TokenUses(1, 7))], START)
    assert state.uses.left(1) == 3
    state.apply([TokenUses(1, 0)], START)
    assert state.uses.left(1) is None
    for bad in (b"uses\t1", b"uses\tx\t1", b"uses\t01\t-1", b"uses\t01\tmany"):
        with pytest.raises(ValueError):
            decode(bad)


GOLDEN_AUDIT_ANCHOR = [
    # Where the audit trail begins once retention removed its head (issue 17).
    b"audit-anchor\t1201\t" + b"9f" * 32,
]


def test_audit_anchor_records_keep_their_format() -> None:
    """
    An C{audit-anchor} record reads from and writes back to exactly these
    bytes; the anchor only moves forward, and a snapshot carries it once
    one was recorded (the genesis one, at seq 1, included).
    """
    record = AuditAnchored(1201, "9f" * 32)
    assert [encode(record)] == GOLDEN_AUDIT_ANCHOR
    assert decode(GOLDEN_AUDIT_ANCHOR[0]) == record
    state = State()
    assert [p for p in state.snapshot(START) if p.startswith(b"audit")] == []
    genesis = AuditAnchored(1, "0" * 64)
    state.apply([genesis], START)
    assert state.audit_anchor.recorded and [p for p in state.snapshot(START) if p.startswith(b"audit")] == [
        encode(genesis)]
    model.replay(state, [*GOLDEN[:6], GOLDEN_AUDIT_ANCHOR[0], encode(AuditAnchored(7, "ab" * 32))], START)
    assert (state.audit_anchor.seq, state.audit_anchor.previous) == (1201, "9f" * 32)
    assert [p for p in state.snapshot(START) if p.startswith(b"audit")] == GOLDEN_AUDIT_ANCHOR
    for bad in (b"audit-anchor\t5", b"audit-anchor\t0\t" + b"0" * 64, b"audit-anchor\t-1\t" + b"0" * 64,
                b"audit-anchor\t5\t" + b"X" * 64, b"audit-anchor\t5\tabc"):
        with pytest.raises(ValueError):
            decode(bad)


def test_second_factor_records_keep_their_format() -> None:
    """
    The second-factor records read from and write back to exactly these
    bytes, and a journal of them after the older records replays.
    """
    factor = SecondFactor("alice", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
                          frozenset({"ab" * 32, "cd" * 32}), 1800000000)
    records = [SecondFactorEnabled(factor), TotpStepUsed("alice", 60000000),
               RecoveryCodeUsed("alice", "ab" * 32), SecondFactorDisabled("alice")]
    assert [encode(record) for record in records] == GOLDEN_2FA
    assert [decode(payload) for payload in GOLDEN_2FA] == records
    state = State()
    model.replay(state, GOLDEN[:6] + GOLDEN_2FA[:3], START)
    assert state.second_factors["alice"] == attrs.evolve(
        factor, recovery=frozenset({"cd" * 32}), last_step=60000000)
    for bad in (b"2fa-step\talice", b"2fa-step\talice\tx", b'2fa\t{"user":"alice"}', b"2fa\t[]",
                b'2fa\t{"user":"a","secret":"S","recovery":"ab","enabled_at":1}'):
        with pytest.raises(ValueError):
            decode(bad)
    with pytest.raises(ValueError):
        encode(TotpStepUsed("b\tob", 1))


# The records a snapshot writes for refresh families (since family records):
# a family, then a used refresh token of it.
GOLDEN_FAMILIES = [
    b'family\t0123456789abcdef\tc2\talice\t1800000000\t1802592000',
    b'spent\t80000000000000000000000000000000\t0123456789abcdef',
]


def test_family_records_have_a_fixed_format() -> None:
    assert [decode(p) for p in GOLDEN_FAMILIES] == [
        FamilyHeld("0123456789abcdef", "c2", "alice", 1800000000, 1802592000),
        RefreshSpent(1 << 127, "0123456789abcdef"),
    ]
    assert [encode(decode(p)) for p in GOLDEN_FAMILIES] == GOLDEN_FAMILIES
    for bad in (b"family\tg\tc\tu\t1", b"family\tg\tc\tu\tsoon\t0", b"family\tg\tc\tu\t-1\t0",
                b"spent\tzz\tg", b"spent\t1", b"spent\t1\tg\t2"):
        with pytest.raises(ValueError):
            decode(bad)


def test_a_journal_from_before_family_records_keeps_its_used_tokens() -> None:
    """
    A journal written before family records holds used refresh tokens as
    C{used} records, and compacted ones as C{tok} records of kind
    C{refresh-used}: replay keeps each as a used key of its family (not a
    token), and takes the family's start from the first of its tokens.
    """
    def tok(key: int, kind: str, issued: int) -> bytes:
        return encode(TokenIssued(Token(key, kind, "c2", "bob", "*", issued, 30 * 86400, "g", "")))

    payloads = GOLDEN[1:2] + GOLDEN[3:4] + [
        tok(1, USED_REFRESH, START - 2000), tok(2, REFRESH, START - 1000), b"used\t" + b"%032x" % 2,
        tok(3, ACCESS, START - 1000), tok(4, REFRESH, START - 1000),
    ]
    state = State()
    model.replay(state, payloads, START)
    assert set(state.tokens) == {3, 4}
    family = state.families.get("g")
    assert family is not None and family.started == START - 2000
    assert state.used_family(1) is state.used_family(2) is family
    assert state.token_count(client_id="c2") == state.token_count(user="bob") == 2


def test_records_round_trip() -> None:
    token = Token(123, ACCESS, "cabc", "alice", "metrics", START, 3600, "", "my label")
    payload = encode(TokenIssued(token))
    assert encode(decode(payload)) == payload
    assert [getattr(model.parse_token(payload), name) for name in Token.__slots__] == [
        getattr(token, name) for name in Token.__slots__]
    for record in (ClientPut(Client(id="c1", name="one", redirect_uris=("https://a/cb",))),
                   UserPut(User(name="bob", full_name="Bob\ttab")), TokenRevoked(5), RefreshUsed(7),
                   GrantRevoked("g"), ClientRemoved("c1")):
        assert decode(encode(record)) == record, record
    with pytest.raises(ValueError):
        encode(TokenIssued(Token(1, ACCESS, "a\tb", "", "*", START, 1, "", "")))


class StateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.state = State()
        self.state.apply([ClientPut(Client(id="c1", name="one"))], START)

    def issue(self, key: int, **kw: object) -> Token:
        fields: dict[str, object] = dict(
            kind=ACCESS, client_id="c1", user="", scope="*", issued_at=START,
            lifetime=3600, grant="", label="",
        )
        fields.update(kw)
        token = Token(key, **fields)  # type: ignore[arg-type]
        self.state.apply([TokenIssued(token)], START)
        return self.state.tokens.get(key, token)

    def test_expiry_is_exact(self) -> None:
        """
        A token is valid until the instant before issued_at + lifetime.
        """
        self.issue(1)
        assert self.state.token(1, START + 3599) is not None
        assert self.state.token(1, START + 3600) is None

    def test_never_expiring(self) -> None:
        self.issue(1, lifetime=0)
        assert self.state.token(1, START + 10**9) is not None

    def test_apply_is_idempotent(self) -> None:
        """
        Records replayed twice leave the same state (compaction relies on it),
        and a revocation of an unknown token does nothing.
        """
        token = self.issue(1, kind=REFRESH, grant="g")
        self.state.apply([RefreshUsed(1)], START)
        self.state.apply([TokenIssued(token), RefreshUsed(1)], START)
        assert 1 not in self.state.tokens
        assert self.state.used_family(1) is self.state.families.get("g") is not None
        self.issue(2)
        self.state.apply([TokenRevoked(99)], START)
        self.state.apply([TokenRevoked(2)], START)
        self.state.apply([TokenRevoked(2)], START)
        assert 2 not in self.state.tokens

    def test_grant_revocation_takes_the_family(self) -> None:
        self.issue(1, kind=REFRESH, grant="g")
        self.issue(2, grant="g")
        self.issue(3, grant="other")
        self.state.apply([GrantRevoked("g")], START)
        assert set(self.state.tokens) == {3}

    def rotate(self, grant: str, times: int, lifetime: int = 3600) -> int:
        """
        A family of C{grant} whose refresh token is used C{times} times;
        the key of its current one.
        """
        self.issue(1000, kind=REFRESH, grant=grant, lifetime=lifetime)
        for key in range(1000, 1000 + times):
            self.state.apply([RefreshUsed(key)], START)
            self.issue(key + 1, kind=REFRESH, grant=grant, lifetime=lifetime)
        return 1000 + times

    def test_a_used_refresh_token_is_a_key_of_its_family(self) -> None:
        """
        Used refresh tokens leave the tokens and the counts; the family
        knows each of them.
        """
        current = self.rotate("g", 500)
        assert set(self.state.tokens) == {current}
        assert self.state.token_count() == self.state.token_count(client_id="c1") == 1
        assert self.state.grant_tokens("g", START) == [self.state.tokens[current]]
        assert all(self.state.used_family(key) is self.state.families.get("g") for key in range(1000, current))
        assert self.state.used_family(current) is None

    def test_ending_a_family_leaves_its_used_keys_to_the_sweep(self) -> None:
        """
        Revoking a family does not walk what it used: its used keys stop
        counting at once and the sweep forgets them a slice at a time.
        """
        current = self.rotate("g", 250)
        self.issue(1, kind=REFRESH, grant="other")
        self.state.apply([RefreshUsed(1)], START)
        self.state.apply([GrantRevoked("g")], START)
        assert self.state.families.get("g") is None and set(self.state.tokens) == set()
        assert self.state.used_family(1000) is None and self.state.used_family(1) is not None
        assert len(self.state.families.spent) == 251
        assert self.state.sweep(START, limit=100) == (0, True)
        assert self.state.sweep(START, limit=100) == (0, True)
        assert self.state.sweep(START) == (0, False)
        assert set(self.state.families.spent) == {1}
        del current

    def test_a_family_ends_when_its_last_token_expires(self) -> None:
        """
        The sweep ends a family once every token it issued (used ones too)
        has expired, and forgets what it used.
        """
        self.rotate("g", 10, lifetime=100)
        self.issue(1, kind=REFRESH, grant="long", lifetime=10_000)
        assert self.state.sweep(START + 200) == (1, False)
        assert self.state.families.get("g") is None and self.state.families.get("long") is not None
        assert self.state.families.spent == {}
        assert self.state.live_records == 1 + 1 + 1  # the client, the family "long", its token

    def test_a_rotation_while_a_snapshot_is_taken_keeps_its_used_key(self) -> None:
        """
        Compaction takes its snapshot in slices while the state changes, and
        replays the records appended meanwhile after it: wherever a rotation
        falls in the snapshot, the rebuilt state knows the used key.
        """
        held = [TokenIssued(Token(key, kind, "c1", "", "*", START, 3600, grant, ""))
                for key, kind, grant in ((1, REFRESH, "g"), (2, ACCESS, "g"), (4, REFRESH, "h"))]
        rotation = [RefreshUsed(1), TokenIssued(Token(3, REFRESH, "c1", "", "*", START, 3600, "g", ""))]
        self.state.apply(held, START)
        length = len(list(self.state.snapshot(START)))
        for split in range(length + 1):
            state = State()
            state.apply([ClientPut(Client(id="c1", name="one")), *held], START)
            snapshot = state.snapshot(START)
            payloads = [next(snapshot) for _ in range(split)]
            state.apply(rotation, START)
            payloads += list(snapshot) + [encode(r) for r in rotation]
            rebuilt = State()
            model.replay(rebuilt, payloads, START)
            assert set(rebuilt.tokens) == {2, 3, 4}, split
            assert rebuilt.used_family(1) is rebuilt.families.get("g") is not None, split

    def test_a_family_lives_as_long_as_its_last_token(self) -> None:
        """
        A rotation extends its family; the sweep ends it only once the last
        token has expired, and a family rotated every minute stays listed
        for the sweep once, not once a minute.
        """
        for minute in range(100):
            now = START + 60 * minute
            self.state.apply([RefreshUsed(1000 + minute), TokenIssued(
                Token(1001 + minute, REFRESH, "c1", "", "*", now, 3600, "g", ""))], now)
            self.state.sweep(now)
        assert sum(len(listed) for listed in self.state.families._expiry.values()) == 1
        last = START + 60 * 99 + 3600
        self.state.sweep(last - 1)
        assert self.state.families.get("g") is not None
        self.state.sweep(last + 60)
        assert self.state.families.get("g") is None and self.state.families.spent == {}

    def test_a_family_ends_with_its_client_or_user(self) -> None:
        self.state.apply([UserPut(User(name="bob"))], START)
        self.issue(1, kind=REFRESH, grant="g", user="bob")
        self.state.apply([RefreshUsed(1)], START)
        self.issue(2, kind=REFRESH, grant="g", user="bob")
        self.state.apply([UserPut(User(name="bob", disabled=True))], START)
        assert self.state.families.get("g") is None and self.state.used_family(1) is None
        assert self.state.token_count(user="bob") == self.state.token_count(client_id="c1") == 0

    def test_disabling_or_deleting_a_client_drops_its_tokens(self) -> None:
        self.state.apply([ClientPut(Client(id="c2", name="two"))], START)
        self.issue(1)
        self.issue(2, client_id="c2")
        self.issue(3, kind=REFRESH, grant="g")
        self.state.apply([ClientPut(Client(id="c1", name="one", enabled=False))], START)
        assert set(self.state.tokens) == {2}
        self.state.apply([ClientRemoved("c2")], START)
        assert self.state.tokens == {}

    def test_tokens_of_absent_or_disabled_owners_are_not_loaded(self) -> None:
        """
        A token record replayed after its client was disabled or deleted, or
        its user disabled, stays revoked (compaction's tail can hold one).
        """
        self.state.apply([ClientPut(Client(id="c1", name="one", enabled=False))], START)
        self.state.apply([UserPut(User(name="bob", disabled=True))], START)
        self.issue(1, client_id="c1")
        self.issue(2, client_id="gone")
        self.issue(3, client_id="", user="bob")
        self.issue(4, client_id="", user="nobody")
        assert self.state.tokens == {}

    def test_sweep_frees_expired_tokens_and_prunes_indexes(self) -> None:
        for key in range(100):
            self.issue(key, lifetime=60 + key)
        self.issue(1000, lifetime=0)
        assert self.state.sweep(START + 60 + 50) == (0, False)  # its minute is not over yet
        assert self.state.sweep(START + 10_000, limit=30) == (30, True)
        assert self.state.sweep(START + 10_000) == (70, False)
        assert set(self.state.tokens) == {1000}
        assert [t.key for t in self.state.client_tokens("c1", START + 10_000)] == [1000]
        assert len(self.state._own["c1"]) == 1

    def test_replayed_tokens_are_bucketed_by_the_first_sweeps(self) -> None:
        """
        Replay leaves the tokens it loads out of the expiry buckets; the
        sweep then drops those that have expired and buckets the others, and
        the count of tokens held follows.
        """
        payloads = [encode(ClientPut(Client(id="c1", name="one")))]
        payloads += [
            encode(TokenIssued(Token(key, ACCESS, "c1", "", "*", START, lifetime, "", "")))
            for key, lifetime in ((1, 100), (2, 200), (3, 0), (4, 100))
        ]
        state = State()
        model.replay(state, payloads, START)
        assert state._expiry == {} and sorted(state._unbucketed) == [1, 2, 3, 4]
        assert state.token_count() == state.token_count(client_id="c1") == 4
        assert state.sweep(START + 150, limit=3) == (1, True)
        assert state.sweep(START + 150) == (1, False)
        assert set(state.tokens) == {2, 3} and state._unbucketed == []
        assert state.token_count() == state.token_count(client_id="c1") == 2
        assert state.sweep(START + 10_000) == (1, False)
        assert state.token_count() == state.token_count(client_id="c1") == 1
        assert set(state.tokens) == {3}

    def test_malformed_records_are_refused(self) -> None:
        def payload(fields: list[object]) -> bytes:
            return "\t".join(json.dumps(f) if isinstance(f, dict) else str(f) for f in fields).encode()

        for bad in (["nope"], [], ["tok", "zz"], ["tok", "1", "alien", "", "", "", 1, 1, "", ""],
                    ["client", {"id": "x"}], ["tok", "1", ACCESS, "", "", "", "soon", 1, "", ""],
                    ["tok", "key", ACCESS, "", "", "", 1, 1, "", ""], ["grant-"], ["user-"], ["client-"],
                    ["user", {"name": "bob"}, ""], ["client", '{"id": "x"}\t'], ["tok-", "1", "2"],
                    ["foo", "bar"], ["tok"], ["client", {"id": ["x"], "name": "n"}],
                    ["user", {"name": {"a": 1}}]):
            with pytest.raises(ValueError):
                self.state.load([payload(bad)], START)

    def test_replay_skips_expired_tokens(self) -> None:
        payloads = [encode(TokenIssued(Token(k, ACCESS, "", "", "*", START, 10, "", "")))
                    for k in range(5)]
        state = State()
        assert model.replay(state, payloads, START + 10) == 5
        assert state.tokens == {}

    def test_snapshot_rebuilds_the_live_state(self) -> None:
        self.issue(1)
        self.issue(2, lifetime=10)
        self.issue(3, kind=REFRESH, grant="g")
        self.state.apply([RefreshUsed(3)], START)
        rebuilt = State()
        model.replay(rebuilt, self.state.snapshot(START + 100), START + 100)
        assert set(rebuilt.tokens) == {1}
        assert rebuilt.used_family(3) is not None
        assert rebuilt.clients == self.state.clients


class AuthorityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.journal = MemoryJournal()
        self.server = make_server(clock=self.clock, journal=self.journal)

    def restart(self) -> None:
        self.server = make_server(clock=self.clock, journal=MemoryJournal(self.journal.payloads))

    def test_client_secret_is_checked_and_never_stored(self) -> None:
        client, secret = self.successResultOf(self.server.add_client("Prometheus", scope="metrics"))
        assert self.server.authenticate_client(client.id, secret) == client
        wrong = secret[:-1] + ("x" if secret[-1] != "x" else "y")
        assert self.server.authenticate_client(client.id, wrong) is None
        assert self.server.authenticate_client("c" + "0" * 15, secret) is None
        assert not any(secret.encode() in p for p in self.journal.payloads)
        self.restart()
        assert self.server.authenticate_client(client.id, secret) == client

    def test_token_limit_revokes_the_oldest(self) -> None:
        client, _ = self.successResultOf(self.server.add_client("c", max_tokens=2))
        issued = [self.successResultOf(self.server.issue_token(scope="*", lifetime=60, client=client))
                  for _ in range(3)]
        assert self.server.authenticate_token(issued[0][0]) is None
        assert all(self.server.authenticate_token(s) is not None for s, _ in issued[1:])

    def test_tokens_survive_restart_and_revocation_too(self) -> None:
        secret, token = self.successResultOf(self.server.issue_token(scope="*", lifetime=0, label="cli"))
        other, _ = self.successResultOf(self.server.issue_token(scope="*", lifetime=0))
        self.successResultOf(self.server.revoke(token))
        self.restart()
        assert self.server.authenticate_token(secret) is None
        assert self.server.authenticate_token(other) is not None
        assert not any(secret.encode() in p or other.encode() in p for p in self.journal.payloads)

    def test_find_token_by_secret_session_id_or_handle(self) -> None:
        secret, token = self.successResultOf(self.server.issue_token(scope="*", lifetime=60))
        for reference in (secret, tokens.session_id(secret), token.handle):
            assert encode(TokenIssued(self.server.find_token(reference))) == encode(TokenIssued(token))  # type: ignore[arg-type]
        assert self.server.find_token("sess0000000000") is None
        assert self.server.find_token("garbage") is None

    def test_users(self) -> None:
        user = self.successResultOf(self.server.add_user("Alice", "correct horse", role="admin"))
        assert user.name == "alice"
        assert self.successResultOf(self.server.check_password("alice", "correct horse")) == user
        assert self.successResultOf(self.server.check_password("alice", "wrong")) is None
        assert self.successResultOf(self.server.check_password("bob", "x")) is None
        self.failureResultOf(self.server.add_user("alice", "x"), Conflict)
        self.failureResultOf(self.server.add_user("no spaces", "x"), InvalidValue)
        secret, _ = self.successResultOf(self.server.issue_token(
            scope="*", lifetime=0, user="alice", kind=APP_PASSWORD))
        assert tokens.is_app_password(secret)
        self.successResultOf(self.server.update_user("alice", disabled=True))
        assert self.server.authenticate_token(secret) is None
        assert self.successResultOf(self.server.check_password("alice", "correct horse")) is None

    def test_bad_client_values(self) -> None:
        for fields in ({"scope": "nonsense"}, {"grant_types": ("implicit",)}, {"max_tokens": 0},
                       {"redirect_uris": ("http://example.com/cb",)}, {"access_ttl": 0},
                       {"type": "public"}):
            with pytest.raises(InvalidValue):
                self.server.add_client("c", **fields)
        with pytest.raises(InvalidValue):
            self.server.add_client("bad\x00name")
        with pytest.raises(NotFound):
            self.server.add_client("c", user="nobody")
        assert self.journal.payloads == []


_names = st.sampled_from(["", "c1", "c2"])
_users = st.sampled_from(["", "alice", "bob"])
_state_operations = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), st.integers(1, 6), _names, _users, st.sampled_from(["", "g1", "g2"]),
                  st.sampled_from([0, 60, 600])),
        st.tuples(st.just("revoke"), st.integers(1, 6)),
        st.tuples(st.just("revoke_grant"), st.sampled_from(["g1", "g2"])),
        st.tuples(st.just("use"), st.integers(1, 6)),
        st.tuples(st.just("client"), st.sampled_from(["c1", "c2"]), st.sampled_from(["on", "off", "gone"])),
        st.tuples(st.just("user"), st.sampled_from(["alice", "bob"]), st.sampled_from(["on", "off", "gone"])),
        st.tuples(st.just("sweep"), st.integers(0, 700)),
    ),
    max_size=50,
)


@settings(max_examples=300, deadline=None)
@given(_state_operations)
def test_token_counts_agree_with_a_count_of_the_tokens(ops: list[tuple[object, ...]]) -> None:
    """
    After any sequence of changes, each client's and user's token count and
    the total are what counting the tokens held gives.
    """
    state = State()
    state.apply([ClientPut(Client(id=c, name=c)) for c in ("c1", "c2")]
                + [UserPut(User(name=u)) for u in ("alice", "bob")], START)
    now = START
    for op in ops:
        match op:
            case ("issue", int(key), str(client_id), str(user), str(grant), int(lifetime)):
                kind = REFRESH if grant and key % 2 else ACCESS
                state.apply([TokenIssued(Token(key, kind, client_id, user, "*", now, lifetime, grant, ""))], now)
            case ("revoke", int(key)):
                state.apply([TokenRevoked(key)], now)
            case ("revoke_grant", str(grant)):
                state.apply([GrantRevoked(grant)], now)
            case ("use", int(key)):
                state.apply([RefreshUsed(key)], now)
            case ("client", str(client_id), "gone"):
                state.apply([ClientRemoved(client_id)], now)
            case ("client", str(client_id), str(how)):
                state.apply([ClientPut(Client(id=client_id, name=client_id, enabled=how == "on"))], now)
            case ("user", str(name), "gone"):
                state.apply([UserRemoved(name)], now)
            case ("user", str(name), str(how)):
                state.apply([UserPut(User(name=name, disabled=how == "off"))], now)
            case ("sweep", int(seconds)):
                now += seconds
                state.sweep(now, limit=3)
        held = list(state.tokens.values())
        assert state.token_count() == len(held)
        for client_id in ("c1", "c2"):
            assert state.token_count(client_id=client_id) == sum(1 for t in held if t.client_id == client_id)
        for user in ("alice", "bob"):
            assert state.token_count(user=user) == sum(1 for t in held if t.user == user)
# ---------------------------------------------------------------------------
# The authorization endpoint's records (issue 14)

from oauthd.state.authz_records import (  # noqa: E402 -- kept beside their tests
    AuthCode,
    BrowserEnded,
    BrowserSeen,
    BrowserSession,
    BrowserStarted,
    CodeIssued,
    CodeRedeemed,
    Consent,
    ConsentGranted,
    ConsentRevoked,
    HalfLoginEnded,
    HalfLoginStarted,
    PendingSecondFactor,
)

_K = "ab" * 32
GOLDEN_AUTHZ = [
    b'code\t{"key":"' + _K.encode() + b'","client_id":"c1","user":"alice","scope":"openid photos",'
    b'"redirect_uri":"https://rp.example/cb","redirect_given":"","challenge":"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",'
    b'"nonce":"n\\t\xc3\xa9","auth_time":1800000000,"browser":"' + _K.encode() + b'","grant":"0123456789abcdef",'
    b'"issued_at":1800000010,"lifetime":60}',
    b"code-\t" + _K.encode(),
    b'browser\t{"key":"' + _K.encode() + b'","user":"alice","auth_time":1800000000,"amr":["pwd","otp"],'
    b'"issued_at":1800000000,"idle":604800,"max_age":1209600}',
    b"browser~\t" + _K.encode() + b"\t1800003600",
    b"browser-\t" + _K.encode(),
    b"half\t" + _K.encode() + b"\talice\t1800000000\t1800000300",
    b"half-\t" + _K.encode(),
    b"consent\talice\tc1\topenid photos\t1800000000",
    b"consent-\talice\tc1",
]

AUTHZ_RECORDS = [
    CodeIssued(AuthCode(_K, "c1", "alice", "openid photos", "https://rp.example/cb", "",
                        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "n\t\u00e9", START, _K,
                        "0123456789abcdef", START + 10, 60)),
    CodeRedeemed(_K),
    BrowserStarted(BrowserSession(_K, "alice", START, ("pwd", "otp"), START, 604800, 1209600)),
    BrowserSeen(_K, START + 3600),
    BrowserEnded(_K),
    HalfLoginStarted(PendingSecondFactor(_K, "alice", START, START + 300)),
    HalfLoginEnded(_K),
    ConsentGranted(Consent("alice", "c1", "openid photos", START)),
    ConsentRevoked("alice", "c1"),
]


def test_authorization_records_keep_their_format() -> None:
    """
    The authorization endpoint's records read from and write back to
    exactly these bytes; a journal of them after the older records
    replays; malformed ones are refused.
    """
    assert [encode(record) for record in AUTHZ_RECORDS] == GOLDEN_AUTHZ
    assert [decode(payload) for payload in GOLDEN_AUTHZ] == AUTHZ_RECORDS
    state = State()
    model.replay(state, [encode(ClientPut(Client(id="c1", name="one"))), *GOLDEN[2:4],
                         *GOLDEN_AUTHZ[:4], GOLDEN_AUTHZ[5], GOLDEN_AUTHZ[7]], START + 20)
    authz = state.authz
    assert authz.codes[_K].redeemed and authz.codes[_K].nonce == "n\t\u00e9"
    assert authz.browsers[_K].last_seen == START + 3600 and _K in authz.halves
    assert authz.consent("alice", "c1") == Consent("alice", "c1", "openid photos", START)
    for bad in (b"code\t{}", b'code\t{"key":1}', b"code-", b"code-\ta\tb", b"browser~\tk\tx",
                b'browser\t{"key":"k","user":"u","auth_time":1,"amr":"pwd","issued_at":1,"idle":1,"max_age":1}',
                b"half\tk\tu\t1", b"consent\tu\tc\ts", b"consent-\tu"):
        with pytest.raises(ValueError):
            decode(bad)
    with pytest.raises(ValueError):
        encode(ConsentGranted(Consent("a\tb", "c1", "x", START)))


def test_the_pkce_field_is_written_only_when_optional() -> None:
    client = Client(id="c1", name="one")
    assert b"pkce" not in encode(ClientPut(client))
    exempt = encode(ClientPut(attrs.evolve(client, pkce="optional")))
    assert exempt.endswith(b',"pkce":"optional"}')
    assert decode(exempt) == ClientPut(attrs.evolve(client, pkce="optional"))


def test_compaction_keeps_live_codes_sessions_and_consents_and_drops_dead_ones() -> None:
    """
    A snapshot holds the live codes (a redeemed one marked so), sessions
    (with their last use), half logins and consents; expired ones, ended
    ones and those of removed users or clients are gone.
    """
    state = State()
    now = START + 20
    users = [UserPut(User(name)) for name in ("alice", "bob")]
    clients = [ClientPut(Client(id=c, name=c)) for c in ("c1", "c2")]

    def key(n: int) -> str:
        return f"{n:064x}"

    def code(n: int, issued_at: int, user: str = "alice") -> CodeIssued:
        return CodeIssued(AuthCode(key(n), "c1", user, "photos", "https://a/cb", "", "", "", START,
                                   key(100), "g", issued_at, 60))

    def session(n: int, issued_at: int, user: str = "alice") -> BrowserStarted:
        return BrowserStarted(BrowserSession(key(n), user, issued_at, ("pwd",), issued_at, 3600, 7200))

    state.apply([*users, *clients,
                 code(1, now), code(2, now), CodeRedeemed(key(2)), code(3, now - 60),
                 session(10, now), BrowserSeen(key(10), now + 5), session(11, now - 7200),
                 session(12, now), BrowserEnded(key(12)), session(13, now, "bob"),
                 HalfLoginStarted(PendingSecondFactor(key(20), "alice", now, now + 300)),
                 HalfLoginStarted(PendingSecondFactor(key(21), "alice", now, now - 1)),
                 ConsentGranted(Consent("alice", "c1", "photos", now)),
                 ConsentGranted(Consent("alice", "c2", "photos", now)),
                 ConsentGranted(Consent("bob", "c1", "photos", now)),
                 UserPut(User("bob", disabled=True)), ClientRemoved("c2")], now)
    payloads = list(state.snapshot(now + 10))
    fresh = State()
    fresh.load(payloads, now + 10)
    assert sorted(fresh.authz.codes) == [key(1), key(2)] and fresh.authz.codes[key(2)].redeemed
    assert list(fresh.authz.browsers) == [key(10)] and fresh.authz.browsers[key(10)].last_seen == now + 5
    assert list(fresh.authz.halves) == [key(20)]
    assert {u: list(held) for u, held in fresh.authz.consents.items()} == {"alice": ["c1"], "bob": ["c1"]}
    # Once they expire, a snapshot drops them.
    later = [p for p in state.snapshot(now + 7200) if p.split(b"\t")[0] in (b"code", b"browser", b"half")]
    assert later == []


def test_expired_codes_and_sessions_do_not_pile_up_in_memory() -> None:
    """
    Codes and sessions that expire are dropped once their table has doubled
    since it was last pruned, so a busy endpoint's memory stays bounded by
    what is live.
    """
    state = State()
    state.apply([UserPut(User("alice"))], START)
    for n in range(1000):
        now = START + 2 * n
        state.apply([
            CodeIssued(AuthCode(f"{n:064x}", "c1", "alice", "photos", "https://a/cb", "", "", "", now,
                                "b", "g", now, 1)),
            BrowserStarted(BrowserSession(f"{n:064x}", "alice", now, ("pwd",), now, 1, 1)),
        ], now)
    assert len(state.authz.codes) <= 128 and len(state.authz.browsers) <= 128


# The signing-key records (issue 15): a key with its private JWK, and the
# mark of when what it signed has expired.
GOLDEN_KEYS = [
    b'key\t{"alg":"EdDSA","created":1800000000,"jwk":{"crv":"Ed25519","d":"c2VjcmV0","kty":"OKP",'
    b'"x":"cHVibGlj"},"kid":"k1","signs_from":1800003600}',
    b'key~\tk1\t1800007200',
]


def test_key_records_keep_their_format() -> None:
    """
    The signing-key records read from and write back to exactly these
    bytes, replay after the older records, and malformed ones are refused
    without quoting the key.
    """
    from oauthd.state.keys import KeyAdded, KeySignedUntil, SigningKey

    key = SigningKey("k1", "EdDSA", 1800000000, 1800003600,
                     {"crv": "Ed25519", "d": "c2VjcmV0", "kty": "OKP", "x": "cHVibGlj"})
    records = [KeyAdded(key), KeySignedUntil("k1", 1800007200)]
    assert [encode(record) for record in records] == GOLDEN_KEYS
    assert [decode(payload) for payload in GOLDEN_KEYS] == records
    assert decode(GOLDEN_KEYS[0]).key.jwk == key.jwk  # type: ignore[union-attr]
    state = State()
    model.replay(state, GOLDEN[:6] + GOLDEN_KEYS, START)
    assert state.keys.all() == [key]
    assert state.keys.signed_until("k1") == 1800007200
    for bad in (b"key~\tk1", b"key~\tk1\tx", b'key\t{"kid":"k1","jwk":{"d":"c2VjcmV0"}}', b"key\t[]",
                b'key\t{"kid":1,"alg":"a","created":1,"signs_from":1,"jwk":{"d":"c2VjcmV0"}}'):
        with pytest.raises(ValueError) as raised:
            decode(bad)
        assert "c2VjcmV0" not in str(raised.value)


GOLDEN_LOGOUT = (
    # RP-initiated logout (issue 15): "post_logout_redirect_uris" is written
    # only when the client has some.
    b'client\t{"id":"c4","name":"rp","secret_digest":"","type":"public","grant_types":["authorization_code"],"scope":"openid","access_ttl":3600,"refresh_ttl":2592000,"max_tokens":10,"redirect_uris":["https://rp.example/cb"],"enabled":true,"user":"","role":"client","created_at":0,"post_logout_redirect_uris":["https://rp.example/bye"]}'
)


def test_post_logout_redirect_uris_keep_the_format() -> None:
    """
    A client's post-logout redirect URIs are read as none from an older
    record, which writes back byte for byte; a client with some keeps them.
    """
    assert [decode(p).client.post_logout_redirect_uris for p in GOLDEN[:2]] == [(), ()]  # type: ignore[union-attr]
    assert [encode(decode(p)) for p in GOLDEN] == GOLDEN
    rp = decode(GOLDEN_LOGOUT)
    assert isinstance(rp, ClientPut) and rp.client.post_logout_redirect_uris == ("https://rp.example/bye",)
    assert encode(rp) == GOLDEN_LOGOUT
    assert encode(ClientPut(attrs.evolve(rp.client, post_logout_redirect_uris=()))) == GOLDEN_LOGOUT.replace(
        b',"post_logout_redirect_uris":["https://rp.example/bye"]', b"")


GOLDEN_REGISTERED = (
    # A client that registered itself (issue 16): its registration access
    # token's digest and its registered metadata, written only when set.
    b'client\t{"id":"c5","name":"Frame","secret_digest":"","type":"public","grant_types":["authorization_code"],"scope":"photos","access_ttl":3600,"refresh_ttl":2592000,"max_tokens":10,"redirect_uris":["https://rp.example/cb"],"enabled":true,"user":"","role":"client","created_at":0,"registration_digest":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd","registration_metadata":"{\\"contacts\\": [\\"ops@rp.example\\"]}"}'
)


def test_registration_fields_keep_the_format() -> None:
    """
    A registered client's registration fields read back from its record;
    an older client reads as made by an administrator, and writes back byte
    for byte.
    """
    assert [decode(p).client.registration_digest for p in GOLDEN[:2]] == ["", ""]  # type: ignore[union-attr]
    assert [encode(decode(p)) for p in GOLDEN] == GOLDEN
    frame = decode(GOLDEN_REGISTERED)
    assert isinstance(frame, ClientPut) and frame.client.registration_metadata == '{"contacts": ["ops@rp.example"]}'
    assert encode(frame) == GOLDEN_REGISTERED
    unregistered = attrs.evolve(frame.client, registration_digest="", registration_metadata="")
    assert encode(ClientPut(unregistered)) == GOLDEN_REGISTERED.split(b',"registration_digest"')[0] + b"}"


def test_a_key_is_written_as_32_hex_digits() -> None:
    from oauthd.state.entities import key_hex

    assert key_hex(1) == "0" * 31 + "1"
    assert key_hex(0xABC << 116) == "abc" + "0" * 29
    assert key_hex((1 << 128) - 1) == "f" * 32
    assert int(key_hex(0x1234), 16) == 0x1234
    for odd in (-5, 1 << 130):
        assert int(key_hex(odd), 16) == odd
