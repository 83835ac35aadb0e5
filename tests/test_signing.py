"""
The signing keys (issue 15): made at first start, used by
L{oauthd.protocol.signing}, rotated with a publish delay, retired keys
leaving once what they signed has expired; all on an injected clock, and
across restarts and compaction. The JWKS and every reply carry public parts
only.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet
from twisted.internet.defer import Deferred, succeed
from treq.testing import StubTreq
from twisted.internet.task import Clock

from oauthd.control.keys import UPKEEP_INTERVAL, KeyKeeper
from oauthd.eventlog import MemoryJournal
from oauthd.protocol import key_rotation, signing
from oauthd.protocol.errors import InvalidValue
from oauthd.interfaces import AuditedEvent, IAuditSink
from oauthd.state.decision import Decision
from oauthd.state.keys import RESERVE_STEP
from oauthd.testing import START, MemoryServer, config_for_tests
from oauthd.web.api import OAuthHTTP

import pytest
from zope.interface import implementer

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")


@implementer(IAuditSink)
class Events:
    """
    An audit sink that keeps what it is given.
    """

    failure: str | None = None

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, str]]] = []

    def record_change(self, event: str, outcome: str, fields: Mapping[str, str]) -> Deferred[None]:
        self(event, outcome, fields)
        return succeed(None)

    def record_changes(self, events: Sequence[AuditedEvent]) -> None:
        for e in events:
            self(e.event, e.outcome, e.fields)

    def __call__(self, event: str, outcome: str, fields: Mapping[str, str]) -> None:
        self.events.append((event, outcome, dict(fields)))


def done(d: Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the deferred has not fired"
    if isinstance(results[0], Exception) or hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


class Server:
    """
    A server in memory with its first keys, on a clock the test moves, and
    the audit events it recorded.
    """

    def __init__(self, **config: Any) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.config = config_for_tests(**config)
        self.journal = MemoryJournal()
        self.audit = Events()
        self.start()
        done(self.server.store.commit(key_rotation.first_keys(self.server.ctx)))

    def start(self) -> None:
        self.server = MemoryServer.build(self.config, self.clock, self.journal,
                                         audit=self.audit)
        self.ctx = self.server.ctx

    def restart(self) -> None:
        self.journal = MemoryJournal(self.journal.payloads)
        self.start()

    def rotate(self, alg: str = "", now: bool = False) -> list[str]:
        decision = done(Deferred.fromCoroutine(key_rotation.rotate(self.ctx, alg, now)))
        return [key.kid for key in done(self.server.store.commit(decision))]

    def kids(self) -> list[str]:
        return [key["kid"] for key in signing.jwks(self.ctx)["keys"]]

    def states(self) -> dict[str, str]:
        return {row.kid: row.state for row in key_rotation.listing(self.ctx)}

    def token(self, alg: str = "RS256", lifetime: int = 600) -> str:
        now = self.ctx.now()
        return signing.sign(self.ctx, {"sub": "u1", "iat": now, "exp": now + lifetime}, alg)

    def commit_marks(self) -> None:
        done(self.server.store.commit(Decision(None, records=signing.pending(self.ctx))))




def header(token: str) -> dict[str, Any]:
    from joserfc import jws
    return dict(jws.extract_compact(token.encode()).headers())


def test_first_start_makes_a_signing_key_per_algorithm() -> None:
    server = Server()
    assert signing.algorithms(server.ctx) == ("RS256", "ES256", "EdDSA")
    assert sorted(server.states().values()) == ["signing"] * 3
    assert [fields["by"] for event, _, fields in server.audit.events if event == "key.added"] == ["start"] * 3
    # A start with keys makes none.
    assert key_rotation.first_keys(server.ctx) is None


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize("alg", signing.ALGORITHMS)
def test_tokens_verify_with_the_jwks_alone(alg: str) -> None:
    server = Server()
    token = server.token(alg)
    assert header(token) == {"alg": alg, "kid": header(token)["kid"], "typ": "JWT"}
    # An independent check: joserfc with nothing but the published JWKS.
    published = KeySet.import_key_set(signing.jwks(server.ctx))
    assert jwt.decode(token, published, algorithms=[alg]).claims["sub"] == "u1"
    assert signing.verify(server.ctx, token) == {"sub": "u1", "iat": START, "exp": START + 600}


def test_the_jwks_has_public_parts_only() -> None:
    server = Server()
    keys = signing.jwks(server.ctx)["keys"]
    assert [(key["alg"], key["use"], key["kty"]) for key in keys] == [
        ("RS256", "sig", "RSA"), ("ES256", "sig", "EC"), ("EdDSA", "sig", "OKP")]
    for key in keys:
        assert not set(PRIVATE_MEMBERS) & set(key)
        assert key["kid"] == KeySet.import_key_set({"keys": [key]}).keys[0].thumbprint()


def test_verify_refuses_what_it_should() -> None:
    server = Server()
    token = server.token(lifetime=60)
    head, body, signature = token.split(".")
    forged = ".".join((head, body, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")))
    assert signing.verify(server.ctx, forged) is None
    for garbage in ("", "a.b.c", "é.é.é", token + "x", "..."):
        assert signing.verify(server.ctx, garbage) is None
    # Another server's key with our kid, or our kid with another algorithm.
    other = Server()
    foreign = other.token()
    assert signing.verify(server.ctx, foreign) is None
    es_kid = header(server.token("ES256"))["kid"]
    mixed = jwt.encode({"alg": "RS256", "kid": es_kid}, {"exp": START + 60},
                       signing._imported(server.ctx, server.ctx.state.keys.signing("RS256", START)))
    assert signing.verify(server.ctx, mixed) is None
    server.clock.advance(60)
    assert signing.verify(server.ctx, token) is None
    assert signing.verify(server.ctx, token, accept_expired=True) == {
        "sub": "u1", "iat": START, "exp": START + 60}


def test_unknown_algorithm_and_missing_exp_are_refused() -> None:
    server = Server()
    with pytest.raises(signing.UnknownAlgorithm):
        server.token("HS256")
    with pytest.raises(KeyError):
        signing.sign(server.ctx, {"sub": "u1"})
    with pytest.raises(InvalidValue):
        done(Deferred.fromCoroutine(key_rotation.rotate(server.ctx, "none")))


def test_rotation_publishes_first_then_switches_then_retires() -> None:
    """
    A new key is in the JWKS at once but signs only after the publish
    delay; the old key then stays, verifying, until every token it signed
    has expired (the mark, a step past the last), and then leaves.
    """
    server = Server(key_publish_delay=3600)
    old = header(server.token("RS256"))["kid"]
    before = server.kids()
    (new,) = server.rotate("RS256")
    assert server.kids() == [*before, new]
    assert server.states()[new] == "next"
    assert header(server.token())["kid"] == old

    server.clock.advance(3599)
    last_old = server.token(lifetime=7200)
    assert header(last_old)["kid"] == old
    server.clock.advance(1)
    assert header(server.token())["kid"] == new
    assert server.states()[old] == "retired"
    rows = {row.kid: row for row in key_rotation.listing(server.ctx)}
    leaves_at = START + 3599 + 7200 + RESERVE_STEP
    assert rows[old].leaves_at == leaves_at
    assert rows[new].leaves_at == 0

    server.clock.advance(leaves_at - 1 - server.ctx.now())
    assert signing.verify(server.ctx, last_old, accept_expired=True) is not None
    assert old in server.kids()
    server.clock.advance(1)
    assert old not in server.kids()
    assert server.kids() == [*before[1:], new]
    assert signing.verify(server.ctx, last_old, accept_expired=True) is None


def test_a_retired_keys_tokens_verify_until_they_expire() -> None:
    server = Server(key_publish_delay=0)
    token = server.token(lifetime=900)
    server.rotate("RS256")
    assert header(server.token())["kid"] != header(token)["kid"]
    server.clock.advance(899)
    assert signing.verify(server.ctx, token) is not None
    server.clock.advance(1)
    assert signing.verify(server.ctx, token) is None


def test_now_skips_the_publish_delay_and_rotates_every_algorithm() -> None:
    server = Server()
    new = server.rotate(now=True)
    assert [server.states()[kid] for kid in new] == ["signing"] * 3
    assert {header(server.token(alg))["kid"] for alg in signing.ALGORITHMS} == set(new)


def test_a_key_superseded_before_it_signed_leaves_at_once() -> None:
    server = Server()
    (waiting,) = server.rotate("ES256")
    (now,) = server.rotate("ES256", now=True)
    assert waiting not in server.kids()
    server.clock.advance(7200)
    assert header(server.token("ES256"))["kid"] == now


def test_keys_and_marks_survive_restart_and_compaction() -> None:
    server = Server(key_publish_delay=0)
    token = server.token(lifetime=7200)
    server.commit_marks()
    kids = server.kids()
    server.restart()
    assert server.kids() == kids
    assert signing.verify(server.ctx, token) is not None
    server.rotate("RS256")
    done(server.server.store.compact())
    server.restart()
    assert server.kids() == kids + [server.kids()[-1]]
    leaves = {row.kid: row.leaves_at for row in key_rotation.listing(server.ctx)}
    assert leaves[kids[0]] == START + 7200 + RESERVE_STEP
    assert signing.verify(server.ctx, token) is not None
    # Once the retired key has left, compaction drops its record.
    server.clock.advance(7200 + RESERVE_STEP)
    done(server.server.store.compact())
    assert not any(kids[0].encode() in payload for payload in server.journal.payloads)


def test_marks_are_recorded_only_as_they_grow_past_a_step() -> None:
    server = Server()
    server.token(lifetime=600)
    server.commit_marks()
    for _ in range(10):
        server.clock.advance(60)
        server.token(lifetime=600)
        assert signing.pending(server.ctx) == []
    server.clock.advance(RESERVE_STEP)
    server.token(lifetime=600)
    assert len(signing.pending(server.ctx)) == 1


def test_the_private_key_is_in_no_repr_or_audit_event() -> None:
    server = Server()
    server.rotate(now=True)
    keys = server.ctx.state.keys
    for key in keys.all():
        secret = key.jwk["d"]
        assert secret not in repr(key)
        assert secret not in repr(key_rotation.KeyAdded(key))
        assert secret not in repr(keys)
        assert secret not in repr(key_rotation.listing(server.ctx))
        assert not any(secret in repr(event) for event in server.audit.events)
        assert secret not in repr(signing.jwks(server.ctx))


def test_the_keeper_makes_keys_commits_marks_and_rotates_on_schedule() -> None:
    clock = Clock()
    clock.advance(START)
    server = MemoryServer.build(config_for_tests(key_rotation_days=30, key_publish_delay=3600), clock)
    keeper = KeyKeeper(server.ctx, server.store)
    keeper.startService()
    assert signing.algorithms(server.ctx) == ()
    clock.advance(0)
    assert signing.algorithms(server.ctx) == signing.ALGORITHMS
    now = server.ctx.now()
    signing.sign(server.ctx, {"exp": now + 600})
    clock.advance(UPKEEP_INTERVAL)
    assert signing.pending(server.ctx) == []
    assert len(server.state.keys) == 3
    clock.advance(30 * 86400)
    assert len(server.state.keys) == 6
    assert sorted(row.state for row in key_rotation.listing(server.ctx)) == ["next"] * 3 + ["signing"] * 3
    clock.advance(3600)
    # The old keys' tokens expired long ago: they leave as they are superseded.
    assert sorted(row.state for row in key_rotation.listing(server.ctx)) == ["signing"] * 3
    # Marks left at a stop are committed then.
    signing.sign(server.ctx, {"exp": server.ctx.now() + 600})
    keeper.stopService()
    assert signing.pending(server.ctx) == []


def test_the_jwks_over_http_before_and_after_a_rotation() -> None:
    """
    C{GET /.well-known/jwks.json} serves the published keys, cacheable for
    less than the publish delay; both discovery documents point at it.
    """
    server = Server(key_publish_delay=3600)
    treq = StubTreq(OAuthHTTP(server.ctx, server.server.store).resource())

    def get(path: str) -> tuple[Any, Any]:
        response = done(treq.get("https://auth.example.com" + path))
        return response, json.loads(done(response.content()))

    response, before = get("/.well-known/jwks.json")
    assert response.code == 200
    assert response.headers.getRawHeaders("Cache-Control") == ["public, max-age=900"]
    assert before == signing.jwks(server.ctx)
    assert [key["alg"] for key in before["keys"]] == ["RS256", "ES256", "EdDSA"]
    old = header(server.token(lifetime=60))["kid"]
    (new,) = server.rotate("RS256")
    _, after = get("/.well-known/jwks.json")
    assert [key["kid"] for key in after["keys"]] == [key["kid"] for key in before["keys"]] + [new]
    assert all(not set(PRIVATE_MEMBERS) & set(key) for key in after["keys"])
    server.clock.advance(3600 + 60 + RESERVE_STEP)
    _, later = get("/.well-known/jwks.json")
    assert old not in [key["kid"] for key in later["keys"]]
    assert new in [key["kid"] for key in later["keys"]]
    for document in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        assert get(document)[1]["jwks_uri"] == "https://auth.example.com/.well-known/jwks.json"


def test_no_publish_delay_means_no_caching() -> None:
    server = Server(key_publish_delay=0)
    treq = StubTreq(OAuthHTTP(server.ctx, server.server.store).resource())
    response = done(treq.get("https://auth.example.com/.well-known/jwks.json"))
    assert response.headers.getRawHeaders("Cache-Control") == ["no-cache"]


def test_verify_answers_none_to_hostile_tokens() -> None:
    """
    Malformed headers and payloads (a list for a header, a kid that is not
    text, a payload that is not an object, a critical extension) are
    refused, never raised: logout hands verify whatever a browser sent.
    """
    server = Server()
    kid = server.ctx.state.keys.all()[0].kid
    _, payload, signature = server.token().split(".")

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    for head, body in (
        ([], payload), (None, payload), ({"alg": "RS256", "kid": kid}, part([1])),
        ({"alg": "RS256", "kid": [1]}, payload), ({"alg": ["RS256"], "kid": kid}, payload),
        ({"alg": "RS256", "kid": kid, "crit": ["x"]}, payload),
        ({"alg": "none", "kid": kid}, payload), ({"alg": "HS256", "kid": kid}, payload),
    ):
        assert signing.verify(server.ctx, ".".join((part(head), body, signature))) is None
    for garbage in ("\x00.\x00.\x00", "a" * 100_000, ".".join(["a"] * 5)):
        assert signing.verify(server.ctx, garbage) is None


def test_no_key_that_signs_yet_is_a_temporary_refusal() -> None:
    """
    Before the first keys are made (or with the clock stepped back past
    their start), signing is refused as temporarily unavailable, which the
    edges answer 503, never as a server error.
    """
    from oauthd.protocol.errors import OAuthError
    from tests.helpers import make_server

    server = make_server(signing_keys=False)
    with pytest.raises(OAuthError) as refused:
        signing.sign(server.ctx, {"sub": "u1", "exp": int(server.ctx.now()) + 60})
    assert (refused.value.error, refused.value.status) == ("temporarily_unavailable", 503)


def test_a_rotation_makes_its_keys_off_the_reactor() -> None:
    """
    An RSA key takes tens of milliseconds to make: a rotation hands that
    work to C{ctx.off_reactor} (a thread in the daemon) and decides only
    once it is done; nothing is made while the work waits.
    """
    server = Server()
    waiting: list[tuple[Any, Deferred[Any]]] = []

    def held(work: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        waiting.append((work, d))
        return d

    server.ctx.off_reactor = held
    before = server.kids()
    rotation = Deferred.fromCoroutine(key_rotation.rotate(server.ctx, "RS256"))
    assert not rotation.called and len(waiting) == 1 and server.kids() == before
    work, d = waiting[0]
    d.callback(work())
    decision = done(rotation)
    done(server.server.store.commit(decision))
    assert len(server.kids()) == len(before) + 1
