"""
Refresh token families over time: what a family keeps in memory as it
rotates, its absolute lifetime, and reuse detection for every used token of
a long family, across a restart and a compaction.
"""

from __future__ import annotations

from typing import Any

from twisted.protocols import amp
from twisted.test import iosim

from oauthd.control import wire
from oauthd.control.server import ControlFactory
from oauthd.protocol import tokens
from oauthd.state.entities import ACCESS, REFRESH
from tests.helpers import make_config
from tests.oauth_helpers import PASSWORD, OAuthCase
from tests.test_control import ADMIN, Link

DAY = 86400


class RefreshFamilyTests(OAuthCase):
    def refresh(self, refresh_token: str) -> Any:
        return self.token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def rotate(self, times: int) -> list[dict[str, Any]]:
        """
        A new family, refreshed C{times} times; every answer, oldest first.
        """
        bodies = [self.password_grant().body]
        for _ in range(times):
            reply = self.refresh(bodies[-1]["refresh_token"])
            assert reply.code == 200, reply
            bodies.append(reply.body)
        return bodies

    def control(self) -> Link:
        factory = ControlFactory(self.clock, self.server.store, self.server.ctx,
                                 peer_credentials=lambda transport: ADMIN, allowed_uids=[ADMIN.uid])
        client, server, pump = iosim.connectedServerAndClient(lambda: factory.buildProtocol(None), amp.AMP)
        return Link(client, server, pump)

    def test_a_long_family_holds_only_its_live_tokens(self) -> None:
        """
        After many rotations the state holds the family's current refresh
        token and its live access tokens (at most the client's limit), not
        one token per rotation.
        """
        bodies = self.rotate(150)
        grant = self.server.authenticate_token(bodies[-1]["access_token"]).grant  # type: ignore[union-attr]
        held = self.server.state.grant_tokens(grant, self.server.ctx.now())
        assert sorted(t.kind for t in held).count(REFRESH) == 1
        assert [t.kind for t in held].count(ACCESS) == self.client.max_tokens
        assert len(self.server.state.tokens) == self.client.max_tokens + 1
        for body in bodies[:-1]:
            assert tokens.token_key(body["refresh_token"]) not in self.server.state.tokens

    def test_counts_leave_out_used_refresh_tokens(self) -> None:
        """
        The control socket's status and client and user rows count live
        tokens only: a used refresh token is not one.
        """
        self.rotate(20)
        link = self.control()
        live = self.client.max_tokens + 1
        assert link.call(wire.Status)["tokens"] == live
        assert link.call(wire.ShowClient, id=self.client.id)["tokens"] == live
        assert link.call(wire.ShowUser, name="alice")["tokens"] == live

    def test_reuse_of_any_used_token_of_a_long_family_revokes_it(self) -> None:
        """
        Every used refresh token of a long family is still recognised, and
        presenting one revokes the whole family.
        """
        bodies = self.rotate(60)
        other = self.password_grant().body
        for body in bodies[:-1]:
            assert self.server.state.used_family(tokens.token_key(body["refresh_token"])) is not None
        self.assert_error(self.refresh(bodies[7]["refresh_token"]), 400, "invalid_grant")
        for body in bodies:
            assert self.server.authenticate_token(body["access_token"]) is None
        self.assert_error(self.refresh(bodies[-1]["refresh_token"]), 400, "invalid_grant")
        assert self.server.authenticate_token(other["access_token"]) is not None
        assert self.refresh(other["refresh_token"]).code == 200

    def test_reuse_is_detected_after_a_restart(self) -> None:
        bodies = self.rotate(30)
        self.restart()
        for body in bodies[:-1]:
            assert self.server.state.used_family(tokens.token_key(body["refresh_token"])) is not None
        self.assert_error(self.refresh(bodies[3]["refresh_token"]), 400, "invalid_grant")
        self.assert_error(self.refresh(bodies[-1]["refresh_token"]), 400, "invalid_grant")
        self.restart()
        self.assert_error(self.refresh(bodies[-1]["refresh_token"]), 400, "invalid_grant")

    def test_reuse_is_detected_after_compaction(self) -> None:
        """
        A compacted journal keeps each live family's used tokens (and its
        start), so reuse detection survives compaction and a restart.
        """
        bodies = self.rotate(30)
        self.clock.advance(2 * 3600)  # every access token but the last ones expired
        self.successResultOf(self.server.store.compact())
        compacted = self.journal.record_count
        self.restart()
        assert self.journal.record_count == compacted
        for body in bodies[:-1]:
            assert self.server.state.used_family(tokens.token_key(body["refresh_token"])) is not None
        self.assert_error(self.refresh(bodies[0]["refresh_token"]), 400, "invalid_grant")
        self.assert_error(self.refresh(bodies[-1]["refresh_token"]), 400, "invalid_grant")

    def test_a_revoked_family_is_dropped_by_compaction(self) -> None:
        """
        Once a family is revoked, a compaction keeps nothing of it, and its
        used tokens stay refused (as unknown) after a restart.
        """
        bodies = self.rotate(30)
        self.assert_error(self.refresh(bodies[0]["refresh_token"]), 400, "invalid_grant")
        self.server.store.sweep()
        self.successResultOf(self.server.store.compact())
        # The client and the user (and the signing keys): nothing of the family.
        assert self.journal.record_count == 2 + len(self.server.state.keys.all())
        self.restart()
        for body in bodies:
            self.assert_error(self.refresh(body["refresh_token"]), 400, "invalid_grant")


class FamilyLifetimeTests(OAuthCase):
    config_values = {"refresh_family_lifetime": 10 * DAY}

    def refresh(self, refresh_token: str) -> Any:
        return self.token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def test_a_family_ends_at_its_absolute_lifetime(self) -> None:
        """
        A family refreshed every day, each refresh token well within its own
        (sliding) lifetime, cannot be refreshed once the family is as old as
        refresh_family_lifetime; a new login starts a new family.
        """
        body = self.password_grant().body
        for _ in range(9):
            self.clock.advance(DAY)
            reply = self.refresh(body["refresh_token"])
            assert reply.code == 200, reply
            body = reply.body
        self.clock.advance(DAY)
        self.assert_error(self.refresh(body["refresh_token"]), 400, "invalid_grant")
        assert self.refresh(self.password_grant().body["refresh_token"]).code == 200

    def test_refresh_tokens_end_with_their_family(self) -> None:
        """
        A refresh token never outlives its family: the last ones issued
        expire when the family does.
        """
        body = self.password_grant().body
        started = self.clock.seconds()
        self.clock.advance(9 * DAY)
        body = self.refresh(body["refresh_token"]).body
        token = self.server.authenticate_token(body["refresh_token"])
        assert token is not None and token.expires_at == started + 10 * DAY
        assert self.client.refresh_ttl > DAY

    def test_the_first_refresh_token_ends_with_its_family(self) -> None:
        """
        The login's own refresh token is capped too, when the client's
        refresh lifetime is longer than a family's.
        """
        client, secret = self.add_client("long-lived", scope="*", refresh_ttl=30 * DAY,
                                         grant_types=("password", "refresh_token"))
        body = self.token({"grant_type": "password", "username": "alice", "password": PASSWORD},
                          auth=(client.id, secret)).body
        token = self.server.authenticate_token(body["refresh_token"])
        assert token is not None and token.expires_at == self.clock.seconds() + 10 * DAY

    def test_the_start_of_a_family_survives_restart_and_compaction(self) -> None:
        """
        A compacted journal keeps when each family started: after a restart
        with a shorter family lifetime, a family that started before its
        oldest held token ends at its real start plus that lifetime.
        """
        body = self.password_grant().body
        for _ in range(2):
            self.clock.advance(3 * DAY)
            body = self.refresh(body["refresh_token"]).body
        self.successResultOf(self.server.store.compact())
        self.config = make_config(refresh_family_lifetime=7 * DAY)
        self.restart()
        self.clock.advance(DAY)
        token = self.server.authenticate_token(body["refresh_token"])
        assert token is not None and token.live(self.clock.seconds())
        self.assert_error(self.refresh(body["refresh_token"]), 400, "invalid_grant")


class GrantTokenLimitTests(OAuthCase):
    """
    A refresh keeps at most the client's C{max_tokens} live access tokens in
    its grant, revoking the oldest live ones; the grant's family counts what
    it holds, and the count must tell the same as reading every token.
    """

    refresh = RefreshFamilyTests.refresh
    rotate = RefreshFamilyTests.rotate

    def setUp(self) -> None:
        super().setUp()
        self.successResultOf(self.server.update_client(self.client.id, max_tokens=2))

    def live(self, bodies: list[dict[str, Any]]) -> list[int]:
        """
        Which of C{bodies}' access tokens are live, by their position.
        """
        return [i for i, body in enumerate(bodies)
                if self.server.authenticate_token(body["access_token"]) is not None]

    def test_expired_access_tokens_do_not_count(self) -> None:
        bodies = self.rotate(3)
        assert self.live(bodies) == [2, 3]
        self.clock.advance(3600)  # all four expired; none swept
        bodies.append(self.refresh(bodies[-1]["refresh_token"]).body)
        bodies.append(self.refresh(bodies[-1]["refresh_token"]).body)
        assert self.live(bodies) == [4, 5]
        bodies.append(self.refresh(bodies[-1]["refresh_token"]).body)
        assert self.live(bodies) == [5, 6]

    def test_a_later_token_that_expires_first_does_not_count(self) -> None:
        """
        A grant's tokens need not expire in the order they were issued (the
        client's access lifetime shortened between two refreshes): one that
        expired is not counted, whatever its place.
        """
        bodies = self.rotate(0)
        self.successResultOf(self.server.update_client(self.client.id, access_ttl=60))
        bodies.append(self.refresh(bodies[-1]["refresh_token"]).body)
        self.clock.advance(120)
        assert self.live(bodies) == [0]
        bodies.append(self.refresh(bodies[-1]["refresh_token"]).body)
        assert self.live(bodies) == [0, 2]
        bodies.append(self.refresh(bodies[-1]["refresh_token"]).body)
        assert self.live(bodies) == [2, 3]

    def test_a_revoked_access_token_leaves_room(self) -> None:
        bodies = self.rotate(1)
        reply = self.post("/api/v1/oauth/revoke", {"token": bodies[1]["access_token"]},
                          auth=(self.client.id, self.secret))
        assert reply.code == 200
        bodies.append(self.refresh(bodies[-1]["refresh_token"]).body)
        assert self.live(bodies) == [0, 2]
        bodies.append(self.refresh(bodies[-1]["refresh_token"]).body)
        assert self.live(bodies) == [2, 3]

    def test_the_count_is_rebuilt_by_a_restart_and_the_sweep(self) -> None:
        bodies = self.rotate(1)
        self.restart()
        bodies.append(self.refresh(bodies[-1]["refresh_token"]).body)
        assert self.live(bodies) == [1, 2]
        self.clock.advance(3600)
        self.server.store.sweep()
        self.restart()
        bodies.append(self.refresh(bodies[-1]["refresh_token"]).body)
        bodies.append(self.refresh(bodies[-1]["refresh_token"]).body)
        assert self.live(bodies) == [3, 4]
        bodies.append(self.refresh(bodies[-1]["refresh_token"]).body)
        assert self.live(bodies) == [4, 5]
