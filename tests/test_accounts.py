"""
What changing or removing an account takes with it, over the control socket
and seen at the HTTP edge: a new password revokes the user's sessions and
grants (RFC 9700 section 4.14.2), keeping app passwords unless told; removing
a user removes the clients the user owns; and only resource servers may
introspect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted

from twisted.protocols import amp
from twisted.test import iosim

from oauthd.control import wire
from oauthd.control.server import ControlFactory
from oauthd.state import model
from oauthd.state.model import State
from tests.oauth_helpers import INTROSPECT, PASSWORD, SESSION, USERINFO, OAuthCase, bearer
from tests.test_control import ADMIN, Link
from tests.test_ctl import Live

NEW_PASSWORD = "a brand new passphrase"


class AccountCase(OAuthCase):
    """
    L{OAuthCase} with bob, a resource server, and an admin connection to the
    same server's control socket.
    """

    def setUp(self) -> None:
        super().setUp()
        self.add_user("bob", PASSWORD)
        self.rs, self.rs_secret = self.add_client("resource server", scope="metrics", introspect=True)
        factory = ControlFactory(
            self.clock, self.server.store, self.server.ctx,
            peer_credentials=lambda transport: ADMIN, allowed_uids=[ADMIN.uid],
        )
        client, server, pump = iosim.connectedServerAndClient(lambda: factory.buildProtocol(None), amp.AMP)
        self.admin = Link(client, server, pump)

    def active(self, token: str) -> bool:
        reply = self.post(INTROSPECT, {"token": token}, auth=(self.rs.id, self.rs_secret))
        assert reply.code == 200, reply
        return bool(reply.body["active"])

    def login(self, username: str, password: str) -> Any:
        reply = self.post(SESSION, json_body={"username": username, "password": password})
        assert reply.code == 200, reply
        return reply.body["access_token"]


class PasswordChangeTests(AccountCase):
    def setUp(self) -> None:
        super().setUp()
        self.session = self.login("bob", PASSWORD)
        self.grant = self.password_grant("bob").body
        self.app, _ = self.app_password(user="bob", scope="*")
        self.app_session = self.login("bob", self.app)
        self.app_grant = self.password_grant("bob", self.app).body
        owned, owned_secret = self.add_client("bob's backup", user="bob")
        self.owned = self.token({"grant_type": "client_credentials"},
                                auth=(owned.id, owned_secret)).body["access_token"]
        self.alice_session = self.login("alice", PASSWORD)

    def test_a_new_password_revokes_sessions_and_grants(self) -> None:
        """
        After users passwd, the session and the password grant bob had are
        refused at userinfo and at the token endpoint, and introspect as
        inactive; his app password and what it gave, the tokens of the
        client he owns and alice's session stay.
        """
        row = self.admin.call(wire.SetPassword, name="bob", password=NEW_PASSWORD)
        self.assert_error(self.request("GET", USERINFO, headers=bearer(self.session)), 401, "invalid_token")
        refreshed = self.token({"grant_type": "refresh_token", "refresh_token": self.grant["refresh_token"]})
        self.assert_error(refreshed, 400, "invalid_grant")
        for token in (self.session, self.grant["access_token"], self.grant["refresh_token"]):
            assert not self.active(token)
        for token in (self.app, self.app_session, self.app_grant["access_token"],
                      self.app_grant["refresh_token"], self.owned, self.alice_session):
            assert self.active(token)
        assert self.login("bob", self.app)
        self.assert_error(self.password_grant("bob"), 400, "invalid_grant")
        assert self.password_grant("bob", NEW_PASSWORD).code == 200
        assert row["revoked"] == 3  # the session, the grant's access and refresh tokens

    def test_revoke_app_passwords_too(self) -> None:
        """
        With revoke_app_passwords the app password goes too, and every token
        obtained with it; still not the client's own token.
        """
        row = self.admin.call(wire.SetPassword, name="bob", password=NEW_PASSWORD,
                              revoke_app_passwords=True)
        for token in (self.session, self.grant["refresh_token"], self.app, self.app_session,
                      self.app_grant["access_token"], self.app_grant["refresh_token"]):
            assert not self.active(token)
        assert self.active(self.owned) and self.active(self.alice_session)
        self.assert_photoprism_error(self.post(SESSION, json_body={"username": "bob", "password": self.app}),
                                     401, "invalid_grant")
        assert row["revoked"] == 7

    def test_the_revocations_survive_a_restart(self) -> None:
        self.admin.call(wire.SetPassword, name="bob", password=NEW_PASSWORD)
        self.restart()
        assert not self.active(self.session) and not self.active(self.grant["refresh_token"])
        assert self.active(self.app_session)


class RemoveUserTests(AccountCase):
    def test_removing_a_user_removes_the_clients_they_own(self) -> None:
        """
        Removing bob removes the clients he owns in the same change, with
        every token they hold (alice's grant at one of them too); the reply
        names them, and no client is left pointing at a missing user, in
        memory, after a restart, or at any point of the journal.
        """
        first, first_secret = self.add_client("bob's backup", user="bob")
        second, second_secret = self.add_client(
            "bob's app", user="bob", grant_types=("password", "refresh_token"))
        alices, _ = self.add_client("alice's backup", user="alice")
        cc = self.token({"grant_type": "client_credentials"}, auth=(first.id, first_secret)).body
        alice_at_bobs = self.token({"grant_type": "password", "username": "alice", "password": PASSWORD},
                                   auth=(second.id, second_secret)).body
        bobs = self.login("bob", PASSWORD)

        row = self.admin.call(wire.RemoveUser, name="bob")
        assert set(self.server.state.clients) == {self.client.id, self.rs.id, alices.id}
        for token in (cc["access_token"], alice_at_bobs["refresh_token"], bobs):
            assert not self.active(token)
        assert sorted(row["clients"]) == sorted([first.id, second.id])
        assert row["revoked"] == 4  # bob's session, first's token, alice's access and refresh at second

        self.restart()
        assert set(self.server.state.clients) == {self.client.id, self.rs.id, alices.id}
        payloads = self.journal.payloads
        for end in range(len(payloads) + 1):
            state = State()
            model.replay(state, payloads[:end], self.clock.seconds())
            assert all(c.user in state.users for c in state.clients.values() if c.user), end

    def test_a_user_without_clients(self) -> None:
        row = self.admin.call(wire.RemoveUser, name="bob")
        assert (row["name"], row["clients"], row["revoked"]) == ("bob", [], 0)


@pytest_twisted.ensureDeferred
async def test_oauthctl(tmp_path: Path) -> None:
    """
    oauthctl's users passwd [--revoke-app-passwords], users rm and clients
    add/mod/show --introspect, over a real socket.
    """
    live = Live(tmp_path)
    server = live.server
    try:
        await live.ok("users", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n")
        app = (await live.ok("auth", "add", "--user", "bob", "--name", "phone", "--scope", "*",
                             "--json")).json()
        passwd = await live.ok("users", "passwd", "bob", "--password-stdin", stdin=NEW_PASSWORD + "\n")
        assert passwd.out == (
            "Changed the password of bob; revoked 0 tokens (app passwords and what they gave are kept).\n")
        assert server.authenticate_token(app["secret"]) is not None
        passwd = await live.ok("users", "passwd", "bob", "--password-stdin", "--revoke-app-passwords",
                               "--json", stdin=NEW_PASSWORD + "\n")
        assert passwd.json()["revoked"] == 1
        assert server.authenticate_token(app["secret"]) is None

        rs = (await live.ok("clients", "add", "--name", "rs", "--introspect", "--user", "bob",
                            "--json")).json()
        assert rs["introspect"] is True and server.state.clients[rs["id"]].introspect
        assert "Introspection           yes" in (await live.ok("clients", "show", rs["id"])).out
        await live.ok("clients", "mod", rs["id"], "--no-introspect")
        assert not server.state.clients[rs["id"]].introspect
        await live.ok("clients", "mod", rs["id"], "--introspect")
        assert server.state.clients[rs["id"]].introspect
        refused = await live.ctl("clients", "add", "--name", "spa", "--public", "--grant", "password",
                                "--introspect")
        assert refused.code == 1 and "public client cannot be a resource server" in refused.err

        removed = await live.ctl("users", "rm", "bob", stdin="y\n")
        assert removed.out == f"Deleted user bob and the clients they owned ({rs['id']}); revoked 0 tokens.\n"
        assert "the clients they own" in removed.err
        assert rs["id"] not in server.state.clients
    finally:
        await live.stop()
