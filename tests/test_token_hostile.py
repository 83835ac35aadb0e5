"""
Hostile and malformed input at every endpoint: each gets its precise
standard error, never a 500, and changes no state.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from oauthd.web.site import OAuthSite
from tests.oauth_helpers import (
    INTROSPECT,
    REVOKE,
    SESSION,
    TOKEN,
    USERINFO,
    OAuthCase,
)

FORM = "application/x-www-form-urlencoded"

BODY_CASES: list[tuple[str, bytes, str | list[str] | None, int]] = [
    # (what, body, content type, status); the error is invalid_request.
    ("repeated parameter", b"grant_type=client_credentials&grant_type=client_credentials", FORM, 400),
    ("repeated empty parameter", b"scope=&scope=", FORM, 400),
    ("percent-encoded non-UTF-8", b"grant_type=%ff%fe", FORM, 400),
    ("raw non-ASCII bytes", b"grant_type=\xff", FORM, 400),
    ("too many parameters", b"&".join(b"p%d=1" % i for i in range(100)), FORM, 400),
    ("overlong value", b"scope=" + b"a" * 5000, FORM, 400),
    ("text/plain", b"grant_type=client_credentials", "text/plain", 400),
    ("multipart", b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--x--\r\n",
     "multipart/form-data; boundary=x", 400),
    ("no content type", b"grant_type=client_credentials", None, 400),
    ("latin-1 charset", b"grant_type=client_credentials", FORM + "; charset=iso-8859-1", 400),
    ("repeated content type", b"grant_type=client_credentials", [FORM, FORM], 400),
    ("JSON array", b"[]", "application/json", 400),
    ("JSON string", b'"grant_type"', "application/json", 400),
    ("JSON number value", b'{"grant_type": 1}', "application/json", 400),
    ("JSON boolean value", b'{"token": true}', "application/json", 400),
    ("JSON nested object", b'{"grant_type": {"a": "b"}}', "application/json", 400),
    ("JSON duplicate key", b'{"token": "a", "token": "b"}', "application/json", 400),
    ("JSON syntax error", b'{"grant_type": ', "application/json", 400),
    ("JSON nested deeply", b"[" * 60_000, "application/json", 400),
    ("JSON huge integer", b'{"a": ' + b"1" * 5000 + b"}", "application/json", 400),
    ("JSON NaN", b'{"a": NaN}', "application/json", 400),
    ("JSON in UTF-16", '{"token": "x"}'.encode("utf-16"), "application/json", 400),
    ("JSON invalid UTF-8", b'{"token": "\xff"}', "application/json", 400),
    ("body over max_body", b"a=" + b"b" * 70_000, FORM, 413),
]

ENDPOINTS = [TOKEN, REVOKE, INTROSPECT, USERINFO, SESSION]


class HostileBodyTests(OAuthCase):
    """
    Every body that cannot be read is refused the same way at every endpoint
    that reads a body, before any credential is looked at.
    """

    def check(self, path: str, body: bytes, ctype: str | list[str] | None, status: int) -> None:
        headers: dict[str, Any] = {}
        if ctype is not None:
            headers["Content-Type"] = ctype
        if path == USERINFO:
            headers["X-Auth-Token"] = self.access
        before = self.journal_size()
        reply = self.request("POST", path, body=body, headers=headers, auth=(self.client.id, self.secret)
                             if path in (TOKEN, REVOKE, INTROSPECT) else None)
        if path == SESSION:
            self.assert_photoprism_error(reply, status, "invalid_request")
        else:
            self.assert_error(reply, status, "invalid_request")
        assert self.journal_size() == before

    def setUp(self) -> None:
        super().setUp()
        self.access = self.password_grant(scope="openid").body["access_token"]

    def test_every_case_at_every_endpoint(self) -> None:
        for what, body, ctype, status in BODY_CASES:
            for path in ENDPOINTS:
                with self.subTest(what=what, path=path):
                    self.check(path, body, ctype, status)


HEADER_CASES: list[tuple[str, dict[str, Any], dict[str, tuple[int, str | None]]]] = [
    # (what, headers, {path: (status, error)}); the body is a valid request
    # without client credentials. No error: no token was presented, and the
    # answer is only the challenge (RFC 6750 section 3.1).
    ("repeated Authorization", {"Authorization": ["Basic eDp5", "Basic eDp5"]},
     {TOKEN: (400, "invalid_request"), USERINFO: (400, "invalid_request")}),
    ("repeated X-Auth-Token", {"X-Auth-Token": ["a", "b"]},
     {REVOKE: (400, "invalid_request"), USERINFO: (400, "invalid_request")}),
    ("Basic not base64", {"Authorization": "Basic %%%"},
     {TOKEN: (401, "invalid_client"), REVOKE: (401, "invalid_client"), USERINFO: (401, None)}),
    ("Basic without colon", {"Authorization": "Basic YWJj"}, {TOKEN: (401, "invalid_client")}),
    ("Basic with empty id", {"Authorization": "Basic OnNlY3JldA=="}, {TOKEN: (401, "invalid_client")}),
    ("Basic non-UTF-8", {"Authorization": b"Basic /w=="}, {TOKEN: (401, "invalid_client")}),
    ("Basic bad percent-escape", {"Authorization": "Basic JWZmOiVmZg=="}, {TOKEN: (401, "invalid_client")}),
    ("non-ASCII Authorization", {"Authorization": b"Bearer \xff\xfe"},
     {USERINFO: (401, "invalid_token"), REVOKE: (401, "invalid_token")}),
    ("unknown scheme", {"Authorization": "Negotiate abc"},
     {TOKEN: (401, "invalid_client"), INTROSPECT: (401, "invalid_client"), USERINFO: (401, None)}),
    ("bare scheme", {"Authorization": "Bearer"}, {USERINFO: (401, "invalid_token")}),
    ("overlong token", {"X-Auth-Token": "a" * 8000}, {USERINFO: (401, "invalid_token")}),
    ("control characters", {"X-Session-ID": "\x01\x02\x7f"}, {USERINFO: (401, "invalid_token")}),
    ("token with a space", {"Authorization": "Bearer abc def"}, {USERINFO: (401, "invalid_token")}),
]


class HostileHeaderTests(OAuthCase):
    def test_header_cases(self) -> None:
        for what, headers, expected in HEADER_CASES:
            for path, (status, error) in expected.items():
                with self.subTest(what=what, path=path):
                    before = self.journal_size()
                    form = {"grant_type": "client_credentials", "token": "x"} if path != USERINFO else None
                    reply = self.request("POST", path, form=form, headers=headers)
                    if error is None:
                        assert (reply.code, reply.body) == (status, {}), reply
                    else:
                        self.assert_error(reply, status, error)
                    assert self.journal_size() == before


class HostileParameterTests(OAuthCase):
    """
    Parameters that parse but make no sense.
    """

    def test_parameter_cases(self) -> None:
        cases: list[tuple[dict[str, str], int, str]] = [
            ({"grant_type": "password", "username": "a" * 4000, "password": "x"}, 400, "invalid_grant"),
            ({"grant_type": "password", "username": "alice\x00", "password": "x"}, 400, "invalid_grant"),
            ({"grant_type": "password", "username": "alice", "password": "\x00" * 10}, 400, "invalid_grant"),
            ({"grant_type": "password", "username": "alice", "password": "p" * 73}, 400, "invalid_request"),
            ({"grant_type": "client_credentials", "scope": "\x00"}, 400, "invalid_scope"),
            ({"grant_type": "client_credentials", "scope": "metrics\"\\"}, 400, "invalid_scope"),
            ({"grant_type": "client_credentials", "scope": "é" * 700}, 400, "invalid_scope"),
            ({"grant_type": "\"quoted\"\\"}, 400, "unsupported_grant_type"),
            ({"grant_type": "refresh_token", "refresh_token": "\x00" * 48}, 400, "invalid_grant"),
            ({"grant_type": "refresh_token", "refresh_token": "g" * 48}, 400, "invalid_grant"),
        ]
        for form, status, error in cases:
            with self.subTest(form=json.dumps(form)[:60]):
                before = self.journal_size()
                reply = self.token(form)
                self.assert_error(reply, status, error)
                assert reply.body["error_description"].isascii()
                assert '"' not in reply.body["error_description"]
                assert self.journal_size() == before

    def test_lone_surrogates_in_json(self) -> None:
        """
        JSON can carry lone UTF-16 surrogates (invalid Unicode); they are
        refused like any other bad value, never crash an encoder.
        """
        for body in ({"grant_type": "password", "username": "alice", "password": "\udc80"},
                     {"grant_type": "password", "username": "\udc80", "password": "x"},
                     {"grant_type": "client_credentials", "scope": "\udc80"},
                     {"grant_type": "\ud800"},
                     {"grant_type": "client_credentials", "client_id": self.client.id,
                      "client_secret": "\udc80"}):
            raw = json.dumps(body).encode()
            auth = None if "client_id" in body else (self.client.id, self.secret)
            reply = self.post(TOKEN, body=raw, headers={"Content-Type": "application/json"}, auth=auth)
            assert reply.code == 400, (body, reply)
            assert reply.body["error"] == "invalid_request"
            for path in (REVOKE, INTROSPECT):
                reply = self.post(path, body=raw, headers={"Content-Type": "application/json"}, auth=auth)
                assert reply.code == 400, (path, body, reply)
            reply = self.post(SESSION, body=raw, headers={"Content-Type": "application/json"})
            assert reply.code == 400, (body, reply)

    def test_wrong_methods_and_paths(self) -> None:
        for method, path in (("GET", TOKEN), ("PUT", REVOKE), ("GET", INTROSPECT), ("DELETE", USERINFO),
                             ("GET", SESSION), ("POST", TOKEN + "/"),
                             ("POST", TOKEN.replace("/v1/", "//v1/")), ("POST", TOKEN.replace("/token", "//token"))):
            reply = self.request(method, path)
            assert reply.code in (404, 405), (method, path, reply)
            error = reply.body["reason"] if path == SESSION else reply.body["error"]
            assert error in ("not_found", "method_not_allowed")


def _raw_exchange(site: OAuthSite, raw: bytes) -> bytes:
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4321))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4321))
    channel.makeConnection(transport)
    channel.dataReceived(raw)
    return transport.value()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_site_caps_bodies_while_they_arrive(framing: str) -> None:
    """
    Over real HTTP framing, a body over max_body is answered 413 and not
    kept in memory: announced by Content-Length or sent chunked.
    """
    from oauthd.web.api import OAuthHTTP
    from oauthd.web.site import CappedBody
    from tests.helpers import make_server, make_config

    config = make_config(max_body=1024)
    server = make_server(config)
    site = OAuthSite(OAuthHTTP(server.ctx, server.store).resource(), config.max_body, reactor=server.ctx.clock)
    assert isinstance(site.getContentFile(10), CappedBody)
    body = b"a=" + b"b" * 5000
    if framing == "chunked":
        head = b"Transfer-Encoding: chunked\r\n"
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                           for i in range(0, len(body), 1000)) + b"0\r\n\r\n"
    else:
        head = b"Content-Length: %d\r\n" % len(body)
        payload = body
    response = _raw_exchange(site, b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/x-www-form-urlencoded\r\n" + head + b"\r\n" + payload)
    assert response.startswith(b"HTTP/1.1 413 "), response[:200]
    assert b'"invalid_request"' in response
    assert server.state.tokens == {}


def test_an_answered_request_lets_go_of_what_it_holds() -> None:
    """
    Klein keeps each request in closures that only the cyclic garbage
    collector frees: once answered (and logged), a request holds none of its
    headers, addresses or Klein adapters, which are then freed at once.
    """
    from twisted.internet.task import Clock
    from twisted.logger import formatEvent, globalLogPublisher
    from twisted.internet.testing import EventLoggingObserver

    from oauthd.web.site import _Request
    from tests.helpers import make_config, make_http

    site = make_http(make_config(access_log=True)).site()
    site.reactor = Clock()
    made: list[_Request] = []

    def request_factory(*args: Any) -> _Request:
        made.append(_Request(*args))
        return made[-1]

    site.requestFactory = request_factory
    log = EventLoggingObserver()
    globalLogPublisher.addObserver(log)
    try:
        site.startFactory()
        response = _raw_exchange(site, b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: probe/1\r\n\r\n")
        site.stopFactory()
    finally:
        globalLogPublisher.removeObserver(log)
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b'{"status":"ok"}'), response
    (request,) = made
    assert request.finished
    assert [name for name in _Request._HELD if name in vars(request)] == []
    assert any('"GET /healthz HTTP/1.1" 200' in formatEvent(e) and "probe/1" in formatEvent(e) for e in log)
