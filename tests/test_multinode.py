"""
Several nodes over one shared log (L{MemorySharedLog}, delivered step by
step): each node's store follows the log (L{oauthd.state.follower}), and
its HTTP API runs in memory. What one node changes, the others see; what is
used once is used once across all of them.
"""

from __future__ import annotations

import json
import os
from typing import Any

from treq.testing import StubTreq

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthd.eventlog import MemorySharedLog
from oauthd.protocol.errors import Conflict
from oauthd.state.entities import Client
from oauthd.state.follower import CatchUp, follow
from oauthd.state.store import NotDurable
from oauthd.testing import MemoryServer
from oauthd.web.api import OAuthHTTP
from oauthd.protocol.browser import digest
from oauthd.state.authz_records import (
    AuthCode, BrowserSession, BrowserStarted, CodeIssued, Consent, ConsentGranted,
)
from tests.helpers import START, change, make_config, make_server
from tests.oauth_helpers import INTROSPECT, PASSWORD, REVOKE, TOKEN


class Node:
    """
    One daemon: a store following its node of the shared log, and its HTTP
    API.
    """

    def __init__(self, shared: MemorySharedLog, clock: Clock, random_bytes: Any = os.urandom) -> None:
        self.log = shared.node()
        config = make_config(registration="open", registration_scopes=["openid"])
        self.server: MemoryServer = make_server(config, clock=clock, journal=self.log,
                                                random_bytes=random_bytes)
        follow(self.server.store)
        self.treq = StubTreq(OAuthHTTP(self.server.ctx, self.server.store).resource())

    def send(self, path: str, form: dict[str, str], auth: tuple[str, str]) -> Deferred[Any]:
        return self.treq.request("POST", "http://oauthd.test" + path, data=form, auth=auth)


class MultiNodeCase(SynchronousTestCase):
    """
    Two nodes, A and B, over one log; a confidential client allowed the
    password and refresh grants, which may introspect; a user, alice.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.shared = MemorySharedLog()
        self.a = Node(self.shared, self.clock)
        self.b = Node(self.shared, self.clock)
        self.settled(self.a.server.add_user("alice", PASSWORD))
        self.client, self.secret = self.settled(self.a.server.add_client(
            "Photo App", scope="*", introspect=True,
            grant_types=("client_credentials", "password", "refresh_token")))

    def settled(self, d: Deferred[Any]) -> Any:
        """
        What C{d} gives once every node delivered everything.
        """
        self.shared.deliver()
        return self.successResultOf(d)

    def read(self, node: Node, sent: Deferred[Any]) -> tuple[int, Any]:
        node.treq.flush()
        response = self.successResultOf(sent)
        raw = self.successResultOf(response.content())
        return response.code, json.loads(raw) if raw else None

    def call(self, node: Node, path: str, form: dict[str, str]) -> tuple[int, Any]:
        """
        A request to C{node}, answered once every node delivered everything.
        """
        sent = node.send(path, form, (self.client.id, self.secret))
        self.shared.deliver()
        return self.read(node, sent)

    def login(self, node: Node) -> dict[str, Any]:
        code, body = self.call(node, TOKEN, {"grant_type": "password", "username": "alice",
                                             "password": PASSWORD})
        assert code == 200, body
        return dict(body)

    def active(self, node: Node, token: str) -> bool:
        code, body = self.call(node, INTROSPECT, {"token": token})
        assert code == 200, body
        return bool(body["active"])


class SeenEverywhereTests(MultiNodeCase):
    """
    A change made on one node is seen on the others.
    """

    def test_issued_on_a_introspects_on_b(self) -> None:
        """
        A token issued on A is active on B as soon as A answered: B's
        introspection misses it, waits for the log, and finds it.
        """
        sent = self.a.send(TOKEN, {"grant_type": "password", "username": "alice", "password": PASSWORD},
                           (self.client.id, self.secret))
        self.a.log.step()
        code, body = self.read(self.a, sent)
        self.assertEqual(code, 200, body)
        asked = self.b.send(INTROSPECT, {"token": body["access_token"]}, (self.client.id, self.secret))
        self.b.treq.flush()
        self.assertNoResult(asked)
        self.b.log.step()
        code, answer = self.read(self.b, asked)
        self.assertEqual((code, answer["active"]), (200, True))

    def hold_b_behind(self) -> None:
        """
        A commits a change that B has not delivered yet.
        """
        self.a.server.issue_token(scope="*", lifetime=3600, client=self.client)
        self.a.log.step()

    def ask_b(self, token: str) -> Deferred[Any]:
        asked = self.b.send(INTROSPECT, {"token": token}, (self.client.id, self.secret))
        self.b.treq.flush()
        return asked

    def test_introspection_misses_budget_per_caller(self) -> None:
        """
        A caller's misses wait for the log within a budget of twenty a
        second: past it, a miss is answered from memory at once, until the
        budget refills.
        """
        self.hold_b_behind()
        waiting = [self.ask_b(f"{i:048x}") for i in range(20)]
        for asked in waiting:
            self.assertNoResult(asked)
        self.assertEqual(self.read(self.b, self.ask_b("f" * 48)), (200, {"active": False}))
        self.b.log.step()
        for asked in waiting:
            self.assertEqual(self.read(self.b, asked), (200, {"active": False}))
        self.hold_b_behind()
        self.clock.advance(0.06)
        self.assertNoResult(self.ask_b("e" * 48))
        self.assertEqual(self.read(self.b, self.ask_b("d" * 48)), (200, {"active": False}))

    def test_miss_waits_a_bounded_time(self) -> None:
        """
        A log that does not catch up keeps a missed lookup waiting two
        seconds at most; then it is answered from memory.
        """
        self.hold_b_behind()
        asked = self.ask_b("0" * 48)
        self.clock.advance(1.9)
        self.assertNoResult(asked)
        self.clock.advance(0.1)
        self.assertEqual(self.read(self.b, asked), (200, {"active": False}))

    def test_issued_on_a_opens_userinfo_on_b(self) -> None:
        """
        A token A just issued is a bearer on B before B delivered it: B's
        userinfo waits for the log, then answers.
        """
        sent = self.a.send(TOKEN, {"grant_type": "password", "username": "alice", "password": PASSWORD,
                                   "scope": "openid"}, (self.client.id, self.secret))
        self.a.log.step()
        code, body = self.read(self.a, sent)
        self.assertEqual(code, 200, body)
        asked = self.b.treq.request("GET", "http://oauthd.test/api/v1/oauth/userinfo",
                                    headers={"Authorization": "Bearer " + body["access_token"]})
        self.b.treq.flush()
        self.assertNoResult(asked)
        self.b.log.step()
        code, info = self.read(self.b, asked)
        self.assertEqual(code, 200, info)

    def test_revoked_on_b_seen_on_a(self) -> None:
        """
        A token revoked on B is inactive on A once the log delivered it.
        """
        issued = self.login(self.a)
        self.assertTrue(self.active(self.b, issued["access_token"]))
        code, _ = self.call(self.b, REVOKE, {"token": issued["access_token"]})
        self.assertEqual(code, 200)
        self.assertFalse(self.active(self.a, issued["access_token"]))

    def test_states_agree(self) -> None:
        """
        After logins and refreshes on both nodes, both hold the same tokens.
        """
        for node in (self.a, self.b, self.a):
            issued = self.login(node)
            self.call(self.b, TOKEN, {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
        self.assertEqual(sorted(self.a.server.state.tokens), sorted(self.b.server.state.tokens))
        self.assertEqual(len(self.a.server.state.tokens), 9)


class RefreshAcrossNodesTests(MultiNodeCase):
    """
    A refresh token rotates once, whichever node it is presented to.
    """

    def refresh(self, node: Node, token: str) -> Deferred[Any]:
        return node.send(TOKEN, {"grant_type": "refresh_token", "refresh_token": token},
                         (self.client.id, self.secret))

    def test_replayed_on_b_revokes_the_family_on_both(self) -> None:
        """
        A refresh token rotated on A and presented again on B is a reuse: the
        whole family is revoked, on both nodes.
        """
        issued = self.login(self.a)
        code, rotated = self.call(self.a, TOKEN, {"grant_type": "refresh_token",
                                                  "refresh_token": issued["refresh_token"]})
        self.assertEqual(code, 200)
        code, body = self.call(self.b, TOKEN, {"grant_type": "refresh_token",
                                               "refresh_token": issued["refresh_token"]})
        self.assertEqual((code, body["error"]), (400, "invalid_grant"))
        for node in (self.a, self.b):
            self.assertFalse(self.active(node, rotated["access_token"]))
            self.assertFalse(self.active(node, rotated["refresh_token"]))

    def test_raced_on_a_and_b_one_wins(self) -> None:
        """
        The same refresh token presented to A and B at once (each decides
        before it has seen the other's): exactly one gets tokens, the other
        is refused as a reuse and the family is revoked on both; every time.
        """
        for _ in range(20):
            issued = self.login(self.a)
            on_a = self.refresh(self.a, issued["refresh_token"])
            on_b = self.refresh(self.b, issued["refresh_token"])
            self.a.treq.flush()
            self.b.treq.flush()
            self.shared.deliver()
            answers = [self.read(self.a, on_a), self.read(self.b, on_b)]
            self.assertEqual(sorted(code for code, _ in answers), [200, 400], answers)
            winner = next(body for code, body in answers if code == 200)
            for node in (self.a, self.b):
                self.assertFalse(self.active(node, winner["refresh_token"]))
        # Each loser was refused by the log's claim (what the metrics count).
        conflicts = [node.server.store.follower.conflicts for node in (self.a, self.b)]
        self.assertEqual(sum(conflicts), 20, conflicts)

    def test_revoked_on_a_while_rotating_on_b(self) -> None:
        """
        A family revoked on A while B rotates its refresh token: whichever
        the log takes first, no token of the family is left alive.
        """
        issued = self.login(self.a)
        revoking = self.a.send(REVOKE, {"token": issued["refresh_token"]}, (self.client.id, self.secret))
        self.a.treq.flush()
        rotating = self.refresh(self.b, issued["refresh_token"])
        self.b.treq.flush()
        self.shared.deliver()
        self.assertEqual(self.read(self.a, revoking)[0], 200)
        code, body = self.read(self.b, rotating)
        self.assertEqual(code, 400, body)
        for node in (self.a, self.b):
            self.assertEqual(node.server.state.user_tokens("alice", self.clock.seconds()), [])


class CodeAcrossNodesTests(MultiNodeCase):
    """
    An authorization code is redeemed once, whichever node it is sent to.
    """

    def issue_code(self, secret: str) -> None:
        """
        A code for alice at the test's client, as the authorization
        endpoint of A would have issued it, seen by both nodes.
        """
        now = int(self.clock.seconds())
        browser = BrowserSession("b" * 64, "alice", now, ("pwd",), now, 3600, 86400)
        code = AuthCode(digest(secret), self.client.id, "alice", "*", "https://rp.example/cb", "", "", "",
                        now, browser.key, secret[-16:], now, 60)
        self.settled(self.a.server.store.commit(change([
            BrowserStarted(browser), ConsentGranted(Consent("alice", self.client.id, "*", now)),
            CodeIssued(code)])))

    def test_raced_on_a_and_b_one_wins(self) -> None:
        """
        The same code sent to A and B at once: exactly one gets tokens, the
        other is refused, and the tokens issued from it are revoked on both
        (RFC 6749 section 4.1.2); every time.
        """
        self.settled(self.a.server.update_client(
            self.client.id, grant_types=("authorization_code", "refresh_token", "password"),
            redirect_uris=("https://rp.example/cb",)))
        for n in range(10):
            secret = f"{n:064x}"
            self.issue_code(secret)
            form = {"grant_type": "authorization_code", "code": secret}
            on_a = self.a.send(TOKEN, form, (self.client.id, self.secret))
            on_b = self.b.send(TOKEN, form, (self.client.id, self.secret))
            self.a.treq.flush()
            self.b.treq.flush()
            self.shared.deliver()
            answers = [self.read(self.a, on_a), self.read(self.b, on_b)]
            self.assertEqual(sorted(code for code, _ in answers), [200, 400], answers)
            self.assertEqual(next(body for code, body in answers if code == 400)["error"], "invalid_grant")
            winner = next(body for code, body in answers if code == 200)
            for node in (self.a, self.b):
                self.assertFalse(self.active(node, winner["access_token"]))


class DeviceAcrossNodesTests(MultiNodeCase):
    """
    A device code's approval on one node is not undone by a poll recorded
    on another that had not seen it.
    """

    def test_poll_on_b_while_approved_on_a(self) -> None:
        """
        The user approves on A while the device polls B: B answers
        authorization_pending (it decided before it saw the approval), its
        poll record is dropped on both nodes, and the next poll gets tokens.
        """
        from attrs import evolve

        from oauthd.state.device import APPROVED, DeviceCode, DevicePut

        self.settled(self.a.server.update_client(
            self.client.id, grant_types=("urn:ietf:params:oauth:grant-type:device_code", "password")))
        now = int(self.clock.seconds())
        code = DeviceCode(digest("d" * 40), "u" * 64, self.client.id, "*", "g" * 16, now, 600, 5)
        self.settled(self.a.server.store.commit(change([DevicePut(code)])))
        approving = self.a.server.store.commit(change([DevicePut(evolve(
            code, status=APPROVED, user="alice", auth_time=now))]))
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": "d" * 40}
        polling = self.b.send(TOKEN, form, (self.client.id, self.secret))
        self.b.treq.flush()
        self.shared.deliver()
        self.successResultOf(approving)
        code_, body = self.read(self.b, polling)
        self.assertEqual((code_, body["error"]), (400, "authorization_pending"))
        for node in (self.a, self.b):
            self.assertEqual(node.server.state.authz.devices.codes[code.key].status, APPROVED)
        self.clock.advance(10)
        self.assertEqual(self.call(self.b, TOKEN, form)[0], 200)


class SecondFactorAcrossNodesTests(MultiNodeCase):
    """
    A TOTP code is accepted once, and only for a step later than the last
    one accepted, whichever node checks it.
    """

    SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

    def setUp(self) -> None:
        super().setUp()
        from oauthd.state.entities import SecondFactor
        from oauthd.state.records import SecondFactorEnabled

        factor = SecondFactor("alice", self.SECRET, frozenset(), int(self.clock.seconds()))
        self.settled(self.a.server.store.commit(change([SecondFactorEnabled(factor)])))

    def verifying(self, node: Node, code: str) -> Deferred[Any]:
        from oauthd.protocol import second_factor

        return node.server.store.commit(second_factor.verify(node.server.ctx, "alice", code, "192.0.2.1"))

    def code(self, offset: int = 0) -> str:
        import pyotp

        return str(pyotp.TOTP(self.SECRET).at(int(self.clock.seconds()) + offset))

    def test_same_code_on_both(self) -> None:
        """
        The same code checked on A and B at once: one login completes, the
        other is refused as a wrong code.
        """
        from oauthd.protocol.errors import OAuthError

        on_a = self.verifying(self.a, self.code())
        on_b = self.verifying(self.b, self.code())
        self.shared.deliver()
        self.successResultOf(on_a)
        self.assertEqual(self.failureResultOf(on_b, OAuthError).value.error, "invalid_grant")

    def test_earlier_step_after_a_later_one(self) -> None:
        """
        A code of the next step accepted on A while B checks one of this
        step: B's is earlier than the last accepted at its position, so it
        is refused on both.
        """
        from oauthd.protocol.errors import OAuthError

        on_a = self.verifying(self.a, self.code(30))
        on_b = self.verifying(self.b, self.code())
        self.shared.deliver()
        self.successResultOf(on_a)
        self.failureResultOf(on_b, OAuthError)
        steps = {node.server.state.second_factors["alice"].last_step for node in (self.a, self.b)}
        self.assertEqual(steps, {int(self.clock.seconds()) // 30 + 1})


class CreatedOnceTests(MultiNodeCase):
    """
    A user name or a client id created on two nodes at once exists once.
    """

    def test_user_name_created_on_both(self) -> None:
        """
        The same user name created on A and B at once: one wins, the other
        is refused as taken; both nodes hold the winner.
        """
        on_a = self.a.server.add_user("bob", PASSWORD)
        on_b = self.b.server.add_user("bob", PASSWORD)
        self.shared.deliver()
        made = self.successResultOf(on_a)
        self.failureResultOf(on_b, Conflict)
        self.assertEqual(self.a.server.state.users["bob"], self.b.server.state.users["bob"])
        self.assertEqual(self.b.server.state.users["bob"].uid, made.uid)

    def test_client_id_created_on_both(self) -> None:
        """
        Two nodes whose id sources give the same client id at the same
        moment: the log lets one create it, the other is refused.
        """
        same = lambda n: b"\x07" * n  # noqa: E731
        c = Node(self.shared, self.clock, random_bytes=same)
        d = Node(self.shared, self.clock, random_bytes=same)
        on_c = c.server.add_client("One")
        on_d = d.server.add_client("Other")
        self.shared.deliver()
        made, _ = self.successResultOf(on_c)
        self.failureResultOf(on_d, Conflict)
        for node in (self.a, self.b, c, d):
            self.assertEqual(node.server.state.clients[made.id].name, "One")


class RacesAtApplyTests(MultiNodeCase):
    """
    Records whose preconditions no longer hold at their log position are
    dropped on every node, and their writer refuses.
    """

    def test_client_removed_on_a_while_b_issues(self) -> None:
        """
        A client removed on A while B issues it a token: the token is
        dropped on both nodes, and B answers that it could not make it.
        """
        from oauthd.protocol.admin import clients

        removing = self.a.server.store.commit(clients.remove_client(self.a.server.ctx, self.client.id))
        issuing = self.b.server.issue_token(scope="*", lifetime=3600, client=self.client)
        self.shared.deliver()
        self.successResultOf(removing)
        failure = self.failureResultOf(issuing, NotDurable)
        self.assertFalse(failure.value.made)
        for node in (self.a, self.b):
            self.assertEqual(node.server.state.token_count(client_id=self.client.id), 0)
            self.assertNotIn(self.client.id, node.server.state.clients)

    def test_token_limit_raced(self) -> None:
        """
        A client at its token limit gets a token on A and one on B at once:
        each node evicted the same oldest one, so the later token, applied
        where the limit is reached, evicts the earlier on both nodes, as one
        after the other would have; both requests get their token.
        """
        limited: Client
        limited, _ = self.settled(self.a.server.add_client("Limited", max_tokens=1))
        self.settled(self.a.server.issue_token(scope="*", lifetime=3600, client=limited))
        on_a = self.a.server.issue_token(scope="*", lifetime=3600, client=limited)
        on_b = self.b.server.issue_token(scope="*", lifetime=3600, client=limited)
        self.shared.deliver()
        _, earlier = self.successResultOf(on_a)
        _, later = self.successResultOf(on_b)
        now = self.clock.seconds()
        for node in (self.a, self.b):
            self.assertEqual(node.server.state.token_count(client_id=limited.id), 1)
            self.assertIsNone(node.server.state.token(earlier.key, now))
            self.assertIsNotNone(node.server.state.token(later.key, now))

    def test_token_limit_reached_by_requests_on_one_node(self) -> None:
        """
        Requests for a client at its token limit that one node decides
        before the log delivers the others' records each evict the same
        oldest token; all of them get a token, and the limit holds.
        """
        limited: Client
        limited, _ = self.settled(self.a.server.add_client("Limited", max_tokens=3))
        for _ in range(3):
            self.settled(self.a.server.issue_token(scope="*", lifetime=3600, client=limited))
        issuing = [self.a.server.issue_token(scope="*", lifetime=3600, client=limited) for _ in range(5)]
        self.shared.deliver()
        issued = [self.successResultOf(d)[1] for d in issuing]
        now = self.clock.seconds()
        for node in (self.a, self.b):
            self.assertEqual(node.server.state.token_count(client_id=limited.id), 3)
            self.assertEqual([node.server.state.token(t.key, now) is not None for t in issued],
                             [False, False, True, True, True])

    def test_token_limit_raced_then_a_node_starts(self) -> None:
        """
        A node started after the race of L{test_token_limit_raced} holds
        the same state as the nodes that followed it.
        """
        limited: Client
        limited, _ = self.settled(self.a.server.add_client("Limited", max_tokens=1))
        self.settled(self.a.server.issue_token(scope="*", lifetime=3600, client=limited))
        on_a = self.a.server.issue_token(scope="*", lifetime=3600, client=limited)
        on_b = self.b.server.issue_token(scope="*", lifetime=3600, client=limited)
        self.shared.deliver()
        self.successResultOf(on_a)
        self.successResultOf(on_b)
        started = Node(self.shared, self.clock)
        self.shared.deliver()
        self.assertEqual(started.server.state.token_count(client_id=limited.id), 1)
        now = self.clock.seconds()
        self.assertEqual(list(started.server.state.snapshot(now)), list(self.a.server.state.snapshot(now)))

    def test_user_disabled_on_a_while_b_opens_a_session(self) -> None:
        """
        A user disabled on A while B opens a browser session for them: the
        session is dropped on both nodes, and B refuses.
        """
        now = int(self.clock.seconds())
        session = BrowserSession("s" * 64, "alice", now, ("pwd",), now, 3600, 86400)
        disabling = self.a.server.update_user("alice", disabled=True)
        opening = self.b.server.store.commit(change([BrowserStarted(session)]))
        self.shared.deliver()
        self.successResultOf(disabling)
        self.failureResultOf(opening, NotDurable)
        for node in (self.a, self.b):
            self.assertEqual(node.server.state.authz.browsers, {})


class TokenEndpointMissTests(MultiNodeCase):
    """
    The token endpoint waits for the log when it does not know what it is
    given.
    """

    def test_refresh_on_b_of_a_token_just_issued_on_a(self) -> None:
        """
        A refresh token A just issued, presented to B before B delivered it:
        B waits for the log, then rotates it.
        """
        sent = self.a.send(TOKEN, {"grant_type": "password", "username": "alice", "password": PASSWORD},
                           (self.client.id, self.secret))
        self.a.log.step()
        _, issued = self.read(self.a, sent)
        asked = self.b.send(TOKEN, {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]},
                            (self.client.id, self.secret))
        self.b.treq.flush()
        self.assertNoResult(asked)
        self.shared.deliver()  # B catches up and rotates it
        self.b.treq.flush()
        self.shared.deliver()  # B's rotation
        self.assertEqual(self.read(self.b, asked)[0], 200)


    def test_password_login_on_b_of_a_user_just_made_on_a(self) -> None:
        """
        A user A just created logs in on B before B delivered it: B waits
        for the log, then logs the user in.
        """
        made = self.a.server.add_user("carol", PASSWORD)
        self.a.log.step()
        self.successResultOf(made)
        asked = self.b.send(TOKEN, {"grant_type": "password", "username": "carol", "password": PASSWORD},
                            (self.client.id, self.secret))
        self.b.treq.flush()
        self.assertNoResult(asked)
        self.shared.deliver()
        self.b.treq.flush()
        self.shared.deliver()
        self.assertEqual(self.read(self.b, asked)[0], 200)

    def test_browser_session_made_on_a_used_on_b(self) -> None:
        """
        A browser whose login A just recorded opens the authorization
        endpoint on B before B delivered it: B waits for the log (the page
        it then shows knows the session).
        """
        from oauthd.web.pages import security

        now = int(self.clock.seconds())
        cookie = "c" * 43
        session = BrowserSession(digest(cookie), "alice", now, ("pwd",), now, 3600, 86400)
        self.a.server.store.commit(change([BrowserStarted(session)]))
        self.a.log.step()
        name = security.cookie_name(self.b.server.ctx.config, security.SESSION_COOKIE)
        asked = self.b.treq.request("GET", "http://oauthd.test/api/v1/oauth/authorize?client_id="
                                    + self.client.id, cookies={name: cookie})
        self.b.treq.flush()
        self.assertNoResult(asked)
        self.b.log.step()
        self.b.treq.flush()
        self.successResultOf(asked)
        self.assertIn(digest(cookie), self.b.server.state.authz.browsers)

    def test_registration_read_on_b_just_after_a(self) -> None:
        """
        A client registered on A is read through its management URI on B
        before B delivered it: B waits for the log.
        """
        sent = self.a.treq.request("POST", "http://oauthd.test/api/v1/oauth/register",
                                   data=json.dumps({"redirect_uris": ["https://rp.example/cb"]}).encode(),
                                   headers={"Content-Type": "application/json"})
        self.a.log.step()
        code, registered = self.read(self.a, sent)
        self.assertEqual(code, 201, registered)
        asked = self.b.treq.request(
            "GET", "http://oauthd.test/api/v1/oauth/register/" + registered["client_id"],
            headers={"Authorization": "Bearer " + registered["registration_access_token"]})
        self.b.treq.flush()
        self.assertNoResult(asked)
        self.b.log.step()
        code, read = self.read(self.b, asked)
        self.assertEqual((code, read["client_id"]), (200, registered["client_id"]))


class CountingLog:
    """
    A log whose sync() calls are counted and fired by hand.
    """

    def __init__(self) -> None:
        self.syncs: list[Deferred[None]] = []

    def sync(self) -> Deferred[None]:
        self.syncs.append(Deferred())
        return self.syncs[-1]


class CatchUpTests(SynchronousTestCase):
    """
    Lookups that miss share the log's sync() calls.
    """

    def test_coalesced(self) -> None:
        """
        Misses while a sync runs share one more, started when it ends (it
        may not cover what they missed); none fails when the log does.
        """
        log = CountingLog()
        catch_up = CatchUp(log, Clock())  # type: ignore[arg-type]
        first = catch_up()
        later = [catch_up() for _ in range(5)]
        self.assertEqual(len(log.syncs), 1)
        log.syncs[0].callback(None)
        self.successResultOf(first)
        for waiting in later:
            self.assertNoResult(waiting)
        self.assertEqual(len(log.syncs), 2)
        log.syncs[1].errback(RuntimeError("the log failed"))
        for waiting in later:
            self.assertIsNone(self.successResultOf(waiting))
        self.assertEqual(len(log.syncs), 2)


class OwnRecordsTests(MultiNodeCase):
    """
    What the follower keeps of this node's appends while they are pending.
    """

    def test_refused_at_once_leaves_nothing_pending(self) -> None:
        """
        An append the log refuses at once (a payload over its cap) raises,
        and leaves nothing waiting to be matched with a later delivery.
        """
        from oauthd.state.records import ClientPut

        huge = Client(id="c" + "0" * 15, name="x" * 2_000_000)
        follower = self.a.server.store.follower
        assert follower is not None
        with self.assertRaises(ValueError):
            self.a.server.store.commit(change([ClientPut(huge)]))
        self.assertEqual(follower._mine, {})


class AckLostNode:
    """
    A node of the shared log whose next append is committed but reported
    as L{LogUnavailable} (the connection broke before the acknowledgement),
    or, with C{commit=False}, refused before it was sent.
    """

    def __init__(self, node: Any, commit: bool = True) -> None:
        self._node = node
        self._commit = commit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)

    def append(self, payloads: Any, claims: Any = ()) -> Deferred[None]:
        from twisted.internet.defer import fail

        from oauthd.eventlog import LogUnavailable

        if self._commit:
            self._node.append(payloads, claims)
        return fail(LogUnavailable("the connection broke"))


class UnknownOutcomeTests(MultiNodeCase):
    """
    An append whose outcome was unknown when the connection broke is
    resolved by following the log.
    """

    def test_committed_before_the_break(self) -> None:
        """
        The records were committed: once the log delivers them here, the
        change is answered as made (a refresh token rotated so is not then
        mistaken for a reuse by the client's retry of a 503).
        """
        store = self.a.server.store
        store.log = AckLostNode(self.a.log)
        issuing = self.a.server.issue_token(scope="*", lifetime=3600, client=self.client)
        self.assertNoResult(issuing)
        self.shared.deliver()
        secret, token = self.successResultOf(issuing)
        self.assertIsNotNone(self.b.server.state.token(token.key, self.clock.seconds()))

    def test_not_committed(self) -> None:
        """
        The records were not committed: once the log has caught up without
        them, the change is refused as not made.
        """
        store = self.a.server.store
        store.log = AckLostNode(self.a.log, commit=False)
        issuing = self.a.server.issue_token(scope="*", lifetime=3600, client=self.client)
        self.shared.deliver()
        failure = self.failureResultOf(issuing, NotDurable)
        self.assertFalse(failure.value.made)
