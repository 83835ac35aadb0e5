"""
Fixtures for the HTTP tests of the token endpoint and its neighbours: the
whole server in memory (StubTreq over the Klein app, an in-memory journal, an
injected clock, bcrypt inline at cost 4), driven synchronously.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from attrs import define
from treq.testing import StubTreq

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthd.testing import MemoryServer
from oauthd.config import Config
from oauthd.testing import ControlledHasher, HeldJournal
from oauthd.web.api import OAuthHTTP
from oauthd.eventlog import MemoryJournal
from oauthd.state.entities import Client, Token, User
from tests.helpers import START, make_server, make_config

TOKEN = "/api/v1/oauth/token"
REVOKE = "/api/v1/oauth/revoke"
INTROSPECT = "/api/v1/oauth/introspect"
USERINFO = "/api/v1/oauth/userinfo"
SESSION = "/api/v1/session"

PASSWORD = "correct horse battery staple"


@define
class Reply:
    """
    A response, read: status, headers (lower-case names, first value) and
    the JSON body.
    """

    code: int
    headers: dict[str, str]
    body: Any

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class OAuthCase(SynchronousTestCase):
    """
    A server with one confidential client (C{self.client}, C{self.secret})
    allowed every grant, and one user, alice, with password L{PASSWORD}.
    """

    config_values: Mapping[str, Any] = {}

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.journal = HeldJournal()
        self.config: Config = make_config(**self.config_values)
        self.server: MemoryServer = make_server(self.config, clock=self.clock, journal=self.journal)
        self.hasher = ControlledHasher(self.server.ctx.hasher)
        self.server.ctx.hasher = self.hasher
        self.http = OAuthHTTP(self.server.ctx, self.server.store)
        self.treq = StubTreq(self.http.resource())
        self.alice = self.add_user("alice", PASSWORD, full_name="Alice Liddell", email="alice@example.com")
        self.client, self.secret = self.add_client(
            "Photo App", scope="*",
            grant_types=("client_credentials", "password", "refresh_token"),
        )

    def restart(self) -> None:
        """
        A new server on what the journal holds: every token is then one the
        state replayed, not one it issued.
        """
        self.journal = HeldJournal(self.journal.payloads)
        self.server = make_server(self.config, clock=self.clock, journal=self.journal)
        self.server.ctx.hasher = self.hasher
        self.http = OAuthHTTP(self.server.ctx, self.server.store)
        self.treq = StubTreq(self.http.resource())

    # -- state ------------------------------------------------------------------

    def add_client(self, name: str = "client", **fields: Any) -> tuple[Client, str]:
        client, secret = self.successResultOf(self.server.add_client(name, **fields))
        return client, secret

    def add_user(self, name: str, password: str, **fields: Any) -> User:
        return self.successResultOf(self.server.add_user(name, password, **fields))

    def app_password(self, user: str = "alice", scope: str = "*", lifetime: int = 0) -> tuple[str, Token]:
        return self.successResultOf(self.server.issue_token(
            scope=scope, lifetime=lifetime, user=user, label="phone", kind="app"))

    def journal_size(self) -> int:
        return self.journal.record_count

    # -- requests ---------------------------------------------------------------

    def request(
        self, method: str, path: str, *, form: Mapping[str, str] | None = None,
        json_body: object = None, body: bytes | None = None,
        headers: Mapping[str, Any] | None = None, auth: tuple[str, str] | None = None,
    ) -> Reply:
        return self.read(self.send(method, path, form=form, json_body=json_body, body=body,
                                   headers=headers, auth=auth))

    def send(
        self, method: str, path: str, *, form: Mapping[str, str] | None = None,
        json_body: object = None, body: bytes | None = None,
        headers: Mapping[str, Any] | None = None, auth: tuple[str, str] | None = None,
    ) -> Deferred[Any]:
        """
        Send a request; the response comes when the server answers (see
        L{read}).
        """
        kwargs: dict[str, Any] = {"headers": dict(headers or {})}
        if form is not None:
            kwargs["data"] = dict(form)
        elif json_body is not None:
            kwargs["data"] = json.dumps(json_body).encode()
            kwargs["headers"].setdefault("Content-Type", "application/json")
        elif body is not None:
            kwargs["data"] = body
        if auth is not None:
            kwargs["auth"] = auth
        return self.treq.request(method, "http://oauthd.test" + path, **kwargs)

    def read(self, sent: Deferred[Any]) -> Reply:
        """
        The reply to a request L{send} sent, which must have come.
        """
        self.treq.flush()
        response = self.successResultOf(sent)
        raw = self.successResultOf(response.content())
        headers_out = {
            k.decode().lower(): v[0].decode("latin-1")
            for k, v in response.headers.getAllRawHeaders()
        }
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return Reply(response.code, headers_out, parsed)

    def post(self, path: str, form: Mapping[str, str] | None = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, form=form, **kwargs)

    def token(self, form: Mapping[str, str] | None = None, **kwargs: Any) -> Reply:
        kwargs.setdefault("auth", (self.client.id, self.secret))
        return self.post(TOKEN, form, **kwargs)

    def password_grant(
        self, username: str = "alice", password: str = PASSWORD, *,
        headers: Mapping[str, str] | None = None, **extra: str,
    ) -> Reply:
        return self.token({"grant_type": "password", "username": username, "password": password, **extra},
                          headers=headers)

    def assert_error(self, reply: Reply, code: int, error: str) -> None:
        """
        C{reply} refuses with C{code} and the RFC error C{error}, in RFC 6749's
        shape.
        """
        body = reply.body
        assert isinstance(body, dict) and set(body) <= {"error", "error_description"}, reply
        assert (reply.code, body.get("error")) == (code, error), reply
        assert reply.header("content-type") == "application/json"
        assert reply.header("cache-control") == "no-store"

    def assert_photoprism_error(self, reply: Reply, code: int, reason: str) -> None:
        """
        C{reply} refuses with C{code} in the shape of PhotoPrism's session
        endpoints, the RFC error code kept as C{reason}.
        """
        body = reply.body
        assert isinstance(body, dict) and set(body) == {"code", "error", "details", "reason"}, reply
        assert (reply.code, body["code"], body["reason"]) == (code, code, reason), reply
        assert reply.header("content-type") == "application/json"
        assert reply.header("cache-control") == "no-store"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
