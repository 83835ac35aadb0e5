"""
oauthd behaves as PhotoPrism's own tests and web UI expect, over HTTP. Each
test names the PhotoPrism source or test it comes from; where oauthd follows
an RFC instead, docs/photoprism.md says so and why.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from oauthd.protocol import tokens
from oauthd.state.entities import APP_PASSWORD, SESSION, Token
from oauthd.state.records import TokenIssued
from tests.helpers import change
from tests.oauth_helpers import PASSWORD, REVOKE, SESSION as SESSION_PATH, TOKEN, USERINFO, OAuthCase, Reply, bearer

PHOTOPRISM_CHECK_CHARSET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
"""
C{checksum.CharsetBase62} of PhotoPrism's C{pkg/checksum/charset.go}.
"""


def photoprism_accepts(value: str) -> bool:
    """
    PhotoPrism's C{rnd.IsAppPassword(s, true)} (C{pkg/rnd/auth.go}), written
    from its source independently of oauthd's check.
    """
    if len(value) != 27 or value.count("-") != 3:
        return False
    if not all(c == "-" or c in PHOTOPRISM_CHECK_CHARSET for c in value):
        return False
    return value[26] == PHOTOPRISM_CHECK_CHARSET[zlib.crc32(value[:26].encode()) % 62]


class AppPasswordFormatTests(OAuthCase):
    """
    C{pkg/rnd/auth_test.go} C{TestIsAppPasswordt} and C{TestAppPassword}.
    """

    def test_photoprism_vectors(self) -> None:
        for valid in ("MPkOqm-RtKGOi-ctIvXm-Qv3XhN", "9q2JHc-P0LzNE-xzvY9j-vMoefj"):
            assert tokens.is_app_password(valid) and photoprism_accepts(valid)
        for wrong_check in ("MPkOqm-RtKGOi-ctIvXm-Qv3Xha", "9q2JHc-P0LzNE-xzvY9j-vMoef2"):
            assert not tokens.is_app_password(wrong_check)
        for other in ("69be27ac5ca305b394046a83f6fda18167ca3d3f2dbe7ac2",
                      "55785BAC-9H4B-4747-B090-EE123FFEE437", "4B1FEF2D1CF4A5BE38B263E0637EDEAD", ""):
            assert not tokens.is_app_password(other)

    def test_every_minted_app_password_passes_photoprism_check(self) -> None:
        for _ in range(100):
            secret, _ = self.app_password()
            assert photoprism_accepts(secret), secret

    def test_photoprism_minted_app_password_works(self) -> None:
        """
        An app password PhotoPrism minted (its test vector), imported into the
        journal by its digest, logs in.
        """
        self.import_app_password("MPkOqm-RtKGOi-ctIvXm-Qv3XhN")
        reply = self.post(SESSION_PATH, json_body={"username": "alice", "password": "MPkOqm-RtKGOi-ctIvXm-Qv3XhN"})
        assert reply.code == 200, reply

    def test_app_password_with_the_old_check_character_keeps_working(self) -> None:
        """
        Journals written before the change hold app passwords whose check
        character came from digits + lower + upper: the lookup decides.
        """
        first26 = "MPkOqm-RtKGOi-ctIvXm-Qv3Xh"
        legacy_charset = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        legacy = first26 + legacy_charset[zlib.crc32(first26.encode()) % 62]
        assert not photoprism_accepts(legacy)
        self.import_app_password(legacy)
        reply = self.post(SESSION_PATH, json_body={"username": "alice", "password": legacy})
        assert reply.code == 200, reply
        unknown = self.post(SESSION_PATH, json_body={"username": "alice", "password": "9q2JHc-P0LzNE-xzvY9j-vMoefj"})
        self.assert_photoprism_error(unknown, 401, "invalid_grant")

    def import_app_password(self, secret: str) -> None:
        token = Token(tokens.token_key(secret), APP_PASSWORD, "", "alice", "*", self.clock.seconds(), 0, "", "phone")
        self.successResultOf(self.server.store.commit(change([TokenIssued(token)])))


class AppsAndDevicesTests(OAuthCase):
    """
    C{internal/api/oauth_token_test.go} C{TestOAuthToken/User*}: the web UI's
    "Apps and Devices" dialog (C{session.js} C{createApp}) mints an app
    password at the token endpoint with the login session in
    C{X-Auth-Token}, the password again, and no client credentials.
    """

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        super().setUp()
        self.bob = self.add_user("bob", "bob's own password")

    def login(self, username: str = "alice", password: str = PASSWORD) -> str:
        reply = self.post(SESSION_PATH, json_body={"username": username, "password": password})
        assert reply.code == 200, reply
        return str(reply.body["access_token"])

    def create_app(self, session: str | None, **fields: Any) -> Reply:
        body = {"grant_type": "password", "client_name": "My Phone", "scope": "*", "expires_in": 0,
                "username": "alice", "password": PASSWORD, **fields}
        headers = {"X-Auth-Token": session} if session is not None else {}
        return self.post(TOKEN, json_body=body, headers=headers)

    def test_user_success(self) -> None:
        reply = self.create_app(self.login(), scope="photos sessions", expires_in=86400)
        assert reply.code == 200, reply
        body = reply.body
        secret = body["access_token"]
        assert tokens.is_app_password(secret) and photoprism_accepts(secret)
        assert body == {
            "status": "success", "session_id": tokens.session_id(secret), "access_token": secret,
            "token_type": "Bearer", "expires_in": 86400, "client_name": "My Phone",
            "client_role": "client", "scope": "photos sessions",
        }
        token = self.server.authenticate_token(secret)
        assert token is not None and (token.kind, token.user, token.label) == (APP_PASSWORD, "alice", "My Phone")
        (issued,) = [e for e in self.events if e.get("audit_event") == "token.issue"]
        assert (issued["user"], issued["token"], issued["kind"]) == ("alice", token.handle, APP_PASSWORD)
        # It works as an app password: it logs in (its scope allows sessions).
        assert self.post(SESSION_PATH, json_body={"username": "alice", "password": secret}).code == 200

    def test_never_expires_with_zero(self) -> None:
        """
        C{expires_in} 0 is the dialog's "Never" (C{options.js} Expires).
        """
        reply = self.create_app(self.login(), expires_in=0)
        assert reply.code == 200 and reply.body["expires_in"] == 0, reply
        self.clock.advance(400 * 86400)
        assert self.server.authenticate_token(reply.body["access_token"]) is not None

    def test_user_no_session(self) -> None:
        reply = self.create_app(None)
        self.assert_error(reply, 401, "invalid_client")
        assert self.app_passwords() == []

    def test_users_dont_match(self) -> None:
        reply = self.create_app(self.login(), username="bob", password="bob's own password")
        self.assert_error(reply, 401, "invalid_grant")
        assert reply.header("www-authenticate")
        assert self.app_passwords() == []

    def test_wrong_password(self) -> None:
        self.assert_error(self.create_app(self.login(), password="wrong"), 401, "invalid_grant")
        assert self.app_passwords() == []

    def test_deleted_user(self) -> None:
        """
        Removing a user ends the user's sessions, so the request is refused
        at its credential.
        """
        session = self.login("bob", "bob's own password")
        self.successResultOf(self.server.store.commit(self.remove_user("bob")))
        reply = self.create_app(session, username="bob", password="bob's own password")
        self.assert_error(reply, 401, "invalid_token")
        assert self.app_passwords("bob") == []

    def test_session_ended_while_the_password_is_checked(self) -> None:
        session = self.login()
        held = self.hasher.hold()
        pending = self.treq.post("http://oauthd.test" + TOKEN, json={
            "grant_type": "password", "client_name": "x", "scope": "*", "username": "alice",
            "password": PASSWORD}, headers={"X-Auth-Token": session})
        assert self.request("DELETE", SESSION_PATH, headers={"X-Auth-Token": session}).code == 200
        self.assertNoResult(pending)
        held.callback(True)
        self.treq.flush()
        response = self.successResultOf(pending)
        body = json.loads(self.successResultOf(response.content()))
        assert (response.code, body["error"]) == (401, "invalid_grant"), body
        assert self.app_passwords() == []

    def test_wrong_passwords_are_limited(self) -> None:
        """
        Confirming with a password is a login: guesses charge the same
        limits as the session and token endpoints.
        """
        session = self.login()
        codes = [self.create_app(session, password=f"guess {i}").code for i in range(12)]
        assert codes[0] == 401 and codes[-1] == 429, codes
        assert self.app_passwords() == []

    def test_session_grant_type(self) -> None:
        """
        C{session.js} sends C{grant_type=session} when the user has no
        password; oauthd users always have one, which it asks for.
        """
        session = self.login()
        self.assert_error(self.create_app(session, grant_type="session", password="wrong"), 401, "invalid_grant")
        assert self.create_app(session, grant_type="session").code == 200

    def test_no_secret_reaches_the_log(self) -> None:
        session = self.login()
        secret = self.create_app(session).body["access_token"]
        self.create_app(session, password="a wrong one")
        logged = json.dumps([{k: str(v) for k, v in e.items()} for e in self.events])
        for value in (session, secret, PASSWORD, "a wrong one"):
            assert value not in logged

    def test_an_app_cannot_mint_apps(self) -> None:
        """
        PhotoPrism refuses a client session (C{s.IsClient()}): an app password,
        a session opened with one, or an access token.
        """
        app, _ = self.app_password()
        from_app = self.post(SESSION_PATH, json_body={"username": "alice", "password": app}).body["access_token"]
        access = self.password_grant().body["access_token"]
        for credential in (app, from_app, access):
            self.assert_error(self.create_app(credential), 401, "invalid_grant")
        self.assert_error(self.create_app(self.login(), password=app), 401, "invalid_grant")
        assert len(self.app_passwords()) == 1

    def test_oauth_clients_keep_the_rfc_password_grant(self) -> None:
        """
        A request that identifies a client is RFC 6749's password grant, even
        with a login session in a header.
        """
        reply = self.password_grant(headers={"X-Auth-Token": self.login()})
        assert reply.code == 200 and "refresh_token" in reply.body, reply
        public = self.post(TOKEN, {"grant_type": "password", "client_id": "cnotaclient00000",
                                   "username": "alice", "password": PASSWORD},
                           headers={"X-Auth-Token": self.login()})
        self.assert_error(public, 401, "invalid_client")

    def test_bad_expires_in(self) -> None:
        """
        C{expires_in} is a whole number of seconds, 0 to ten years, as a
        JSON number or a string; anything else is refused precisely.
        """
        session = self.login()
        for value in (-1, 1.5, True, [], {}, 10 * 366 * 86400, str(10 * 366 * 86400), "soon", "-5"):
            reply = self.create_app(session, expires_in=value)
            self.assert_error(reply, 400, "invalid_request")
        form = {"grant_type": "password", "client_name": "x", "scope": "*", "username": "alice",
                "password": PASSWORD, "expires_in": "9" * 40}
        self.assert_error(self.post(TOKEN, form, headers={"X-Auth-Token": session}), 400, "invalid_request")
        assert self.create_app(session, expires_in="3600").body["expires_in"] == 3600
        assert len(self.app_passwords()) == 1

    def test_name_that_would_link_to_another_app_is_refused(self) -> None:
        session = self.login()
        _, other = self.app_password()
        reply = self.create_app(session, client_name=f"from {other.handle}")
        self.assert_error(reply, 400, "invalid_request")
        assert len(self.app_passwords()) == 1

    def test_missing_fields(self) -> None:
        session = self.login()
        for missing in ("client_name", "scope", "password", "username"):
            body = {"grant_type": "password", "client_name": "x", "scope": "*", "username": "alice",
                    "password": PASSWORD}
            del body[missing]
            reply = self.post(TOKEN, json_body=body, headers={"X-Auth-Token": session})
            self.assert_error(reply, 400, "invalid_request")
        assert self.app_passwords() == []

    def app_passwords(self, user: str = "alice") -> list[Token]:
        return [t for t in self.server.state.user_tokens(user, self.clock.seconds()) if t.kind == APP_PASSWORD]

    def remove_user(self, name: str) -> Any:
        from oauthd.protocol.admin.users import remove_user
        return remove_user(self.server.ctx, name)


class JsonShapeTests(OAuthCase):
    """
    C{internal/api/api_test.go} binds a session body as JSON whatever its
    Content-Type; C{internal/form/oauth_create_token.go} reads
    C{ExpiresIn int64}.
    """

    def test_json_login_without_content_type(self) -> None:
        body = json.dumps({"username": "alice", "password": PASSWORD}).encode()
        reply = self.post(SESSION_PATH, body=body)
        assert reply.code == 200, reply

    def test_oauth_endpoints_stay_strict(self) -> None:
        body = json.dumps({"grant_type": "client_credentials"}).encode()
        reply = self.post(TOKEN, body=body, auth=(self.client.id, self.secret))
        self.assert_error(reply, 400, "invalid_request")

    def test_untyped_body_that_is_not_json_is_refused(self) -> None:
        for body in (b"username=alice&password=x", b"[1]", b"{not json"):
            reply = self.post(SESSION_PATH, body=body)
            self.assert_photoprism_error(reply, 400, "invalid_request")

    def test_numbers_only_where_photoprism_sends_them(self) -> None:
        reply = self.post(TOKEN, json_body={"grant_type": "client_credentials", "scope": 5},
                          auth=(self.client.id, self.secret))
        self.assert_error(reply, 400, "invalid_request")


class LoginAnswerTests(OAuthCase):
    """
    C{internal/api/auth_session_test.go} C{TestCreateSession}: a failed
    login is 401 with C{error} "Invalid credentials" (C{i18n.ErrInvalidCredentials}).
    """

    def test_failed_logins_are_401_and_alike(self) -> None:
        replies = [
            self.post(SESSION_PATH, json_body={"username": "alice", "password": "xxx"}),
            self.post(SESSION_PATH, json_body={"username": "nobody", "password": "xxx"}),
            self.post(SESSION_PATH, json_body={"username": "alice", "password": ""}),
        ]
        for reply in replies:
            assert reply.code == 401, reply
            assert reply.body["error"] == "Invalid credentials" and reply.body["code"] == 401
            assert reply.header("www-authenticate")
        assert replies[0].body == replies[1].body

    def test_token_endpoint_keeps_rfc_errors(self) -> None:
        reply = self.password_grant(password="xxx")
        assert reply.body == {"error": "invalid_grant", "error_description": "the username or password is wrong"}


class SessionsScopeTests(OAuthCase):
    """
    C{internal/entity/auth_session_login.go}: an app password opens a session
    only if its scope allows C{sessions}.
    """

    def test_webdav_only_app_password_cannot_log_in(self) -> None:
        app, _ = self.app_password(scope="webdav")
        reply = self.post(SESSION_PATH, json_body={"username": "alice", "password": app})
        self.assert_photoprism_error(reply, 401, "invalid_grant")
        assert reply.body["error"] == "Invalid credentials"
        live = [t for t in self.server.state.user_tokens("alice", self.clock.seconds()) if t.kind == SESSION]
        assert live == []

    def test_app_password_with_sessions_scope_logs_in(self) -> None:
        for scope in ("*", "webdav sessions"):
            app, _ = self.app_password(scope=scope)
            assert self.post(SESSION_PATH, json_body={"username": "alice", "password": app}).code == 200

    def test_photoprism_scopes_are_offered(self) -> None:
        listed = self.request("GET", "/.well-known/oauth-authorization-server").body["scopes_supported"]
        assert {"sessions", "shares", "services", "passcode", "password", "feedback"} <= set(listed)


class RevokeAndLogoutTests(OAuthCase):
    """
    C{internal/api/oauth_revoke.go}: a browser login session is not revoked
    at the revocation endpoint (403); C{session_delete.go}: a token ends its
    own session at C{DELETE /api/v1/session}.
    """

    def login(self) -> str:
        return str(self.post(SESSION_PATH, json_body={"username": "alice", "password": PASSWORD}).body["access_token"])

    def test_login_session_cannot_revoke_itself(self) -> None:
        session = self.login()
        for form in ({}, {"token": session}):
            reply = self.post(REVOKE, form, headers={"X-Auth-Token": session})
            self.assert_error(reply, 403, "access_denied")
        assert self.request("GET", USERINFO, headers=bearer(session)).code == 200

    def test_full_scope_app_password_cannot_revoke_a_login_session(self) -> None:
        session = self.login()
        app, _ = self.app_password()
        reply = self.post(REVOKE, {"token": session}, headers={"X-Auth-Token": app})
        self.assert_error(reply, 403, "access_denied")
        assert self.server.authenticate_token(session) is not None

    def test_login_session_deletes_an_app(self) -> None:
        """
        The dialog's "delete app" (C{session.js} C{deleteApp}) names the app
        password from the login session.
        """
        session = self.login()
        app, token = self.app_password()
        reply = self.post(REVOKE, {"token": token.handle}, headers={"X-Auth-Token": session})
        assert reply.code == 200, reply
        assert self.server.authenticate_token(app) is None

    def test_app_password_ends_itself_at_delete_session(self) -> None:
        app, _ = self.app_password()
        reply = self.request("DELETE", SESSION_PATH, headers={"X-Auth-Token": app})
        assert reply.body == {"status": "deleted", "session_id": tokens.session_id(app)}, reply
        assert self.server.authenticate_token(app) is None
