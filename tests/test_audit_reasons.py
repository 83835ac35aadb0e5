"""
What the audit trail keeps of a refused token request's own words: a fixed
reason, and of the value the caller sent at most a name oauthd itself
knows, never the text (which may be a pasted secret, or control characters
meant to forge log lines).
"""

from __future__ import annotations

import json

from typing import Any

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from oauthd.protocol import tokens
from tests.oauth_helpers import OAuthCase


class AuditReasonTests(OAuthCase):
    def setUp(self) -> None:
        super().setUp()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.leak = tokens.new_access_token()
        self.seen = 0

    def refusals(self) -> list[dict[str, Any]]:
        """
        The refusals audited since the last call.
        """
        new = list(self.events)[self.seen:]
        self.seen = len(self.events)
        return [
            e for e in new
            if e.get("log_namespace") == "oauthd.audit"
            and str(e.get("audit_event", "")).endswith(".refuse")
        ]

    def assert_nothing_echoed(self, event: dict[str, Any], sent: str) -> None:
        for name in ("reason", "grant", "scope", "details"):
            text = str(event.get(name, ""))
            assert self.leak[:8] not in text, (name, text)
            assert sent[:8] not in text or name == "grant", (name, text)
            assert all(" " <= c <= "~" for c in text), (name, text)

    def test_an_unknown_grant_type_is_audited_without_its_value(self) -> None:
        for hostile in (
            self.leak,
            self.secret,
            "\x1b[31mevil\r\naudit: token.issue ok " + "x" * 300,
        ):
            reply = self.token({"grant_type": hostile})
            self.assert_error(reply, 400, "unsupported_grant_type")
            (event,) = self.refusals()
            assert event["reason"] == "unsupported grant type"
            assert "grant" not in event
            self.assert_nothing_echoed(event, hostile)

    def test_a_grant_type_the_client_may_not_use_is_named(self) -> None:
        # Every grant type oauthd knows is served since the device code
        # grant (issue 16): one the client is not allowed is named.
        reply = self.token({"grant_type": "urn:ietf:params:oauth:grant-type:device_code"})
        self.assert_error(reply, 400, "unauthorized_client")
        (event,) = self.refusals()
        assert event["grant"] == "urn:ietf:params:oauth:grant-type:device_code"

    def test_an_unknown_scope_word_is_audited_without_it(self) -> None:
        for hostile in (self.leak, self.secret, "photos\x07\x1b]0;pwned\x07"):
            reply = self.token({"grant_type": "client_credentials", "scope": f"photos {hostile}"})
            self.assert_error(reply, 400, "invalid_scope")
            (event,) = self.refusals()
            assert event["reason"] == "unknown scope"
            self.assert_nothing_echoed(event, hostile.removeprefix("photos"))

    def test_an_overlong_scope_is_audited_as_such(self) -> None:
        reply = self.token({"grant_type": "client_credentials", "scope": "photos " * 200})
        self.assert_error(reply, 400, "invalid_scope")
        (event,) = self.refusals()
        assert event["reason"] == "scope too long"

    def test_an_unknown_parameter_name_is_not_echoed(self) -> None:
        """
        A refusal of a malformed parameter names it only if it is one an
        endpoint reads: any other name (a pasted secret) is "a parameter",
        in the answer and in the audit trail.
        """
        for path, body in (
            ("/api/v1/session", {self.leak: 1}),
            ("/api/v1/oauth/token", {self.leak: ["x"]}),
        ):
            reply = self.post(path, json_body=body, auth=(self.client.id, self.secret))
            assert reply.code in (400, 401), reply
            assert self.leak[:8] not in json.dumps(reply.body)
            (event,) = self.refusals()
            self.assert_nothing_echoed(event, self.leak)
        reply = self.post("/api/v1/oauth/token", json_body={"scope": 5}, auth=(self.client.id, self.secret))
        assert "the parameter scope must be a string" in json.dumps(reply.body)
