"""
Audit: every issue, refusal and revocation is a structured event, and no
secret (client secret, password, token, refresh token, app password) ever
appears in the log output of a whole scenario, nor in the journal.
"""

from __future__ import annotations

from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from zope.interface import provider

from tests.oauth_helpers import (
    INTROSPECT,
    PASSWORD,
    REVOKE,
    SESSION,
    TOKEN,
    USERINFO,
    OAuthCase,
    bearer,
)


class AuditTests(OAuthCase):
    def setUp(self) -> None:
        self.events: list[LogEvent] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        super().setUp()

    def audits(self, name: str) -> list[LogEvent]:
        return [e for e in self.events if e.get("audit_event") == name]

    def scenario(self) -> list[str]:
        """
        A day in the life, including mistakes; returns every secret used.
        """
        secrets = [PASSWORD, self.secret]
        prom, prom_secret = self.add_client("Prometheus", scope="metrics introspect")
        secrets.append(prom_secret)
        # Client credentials, both ways, and wrong.
        cc = self.token({"grant_type": "client_credentials"}, auth=(prom.id, prom_secret)).body
        cc2 = self.post(TOKEN, {"client_id": prom.id, "client_secret": prom_secret}).body
        secrets += [cc["access_token"], cc2["access_token"]]
        self.token({"grant_type": "client_credentials"}, auth=(prom.id, prom_secret[:-1] + "!"))
        # A secret typed into the id field, a password into the username field.
        self.post(TOKEN, {"client_id": prom_secret, "client_secret": prom_secret})
        self.password_grant(username=PASSWORD, password=PASSWORD)
        self.password_grant(password=PASSWORD + "x")
        # Password grant, app password, refresh, reuse.
        grant = self.password_grant(scope="openid profile").body
        secrets += [grant["access_token"], grant["refresh_token"]]
        app, _ = self.app_password(scope="openid webdav")
        secrets.append(app)
        via_app = self.password_grant(password=app).body
        secrets += [via_app["access_token"], via_app["refresh_token"]]
        second = self.token({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}).body
        secrets += [second["access_token"], second["refresh_token"]]
        self.token({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})
        # Resource side.
        self.request("GET", USERINFO, headers=bearer(via_app["access_token"]))
        self.request("GET", USERINFO, headers=bearer(grant["access_token"]))
        self.request("GET", USERINFO, headers={"X-Auth-Token": cc["access_token"]})
        self.post(INTROSPECT, {"token": via_app["access_token"]}, auth=(prom.id, prom_secret))
        self.post(INTROSPECT, {"token": via_app["access_token"]}, headers=bearer(cc["access_token"]))
        # Sessions.
        session = self.post(SESSION, json_body={"username": "alice", "password": PASSWORD}).body
        secrets.append(session["access_token"])
        self.request("DELETE", SESSION, headers={"X-Session-ID": session["access_token"]})
        # Revocation.
        self.post(REVOKE, {"token": cc2["access_token"]}, auth=(prom.id, prom_secret))
        self.post(REVOKE, {"token": via_app["refresh_token"]}, auth=(self.client.id, self.secret))
        self.post(REVOKE, headers={"X-Auth-Token": app})
        # Rate limited.
        for _ in range(12):
            self.password_grant(password="guess " + PASSWORD)
        for _ in range(62):
            self.request("GET", USERINFO, headers=bearer(cc2["access_token"]))
        return secrets

    def test_no_secret_in_any_log_line_or_journal_record(self) -> None:
        secrets = self.scenario()
        assert len(self.events) > 50
        for event in self.events:
            text = formatEvent(event) + " " + repr({k: v for k, v in event.items() if k != "log_logger"})
            for secret in secrets:
                assert secret not in text, (secret, text)
                assert secret[:20] not in text, (secret, text)
        for payload in self.journal.payloads:
            for secret in secrets:
                assert secret.encode() not in payload

    def test_every_issue_refusal_and_revocation_is_audited(self) -> None:
        self.scenario()
        issued = self.audits("token.issue")
        assert {e["grant"] for e in issued} == {"client_credentials", "password", "refresh_token"}
        assert all(e["token"].startswith("sess") and e["client"] for e in issued)
        refused = self.audits("token.refuse")
        errors = {e["error"] for e in refused}
        assert {"invalid_client", "invalid_grant", "too_many_requests"} <= errors
        reuse = [e for e in refused if e.get("reason") == "refresh token reuse"]
        assert len(reuse) == 1 and reuse[0]["user"] == "alice"
        revoked = self.audits("token.revoke")
        assert {e.get("reason", e.get("by")) for e in revoked} >= {"refresh token reuse", "self"}
        assert self.audits("session.create") and self.audits("session.refuse") == []
        assert self.audits("userinfo.refuse") and self.audits("introspect.refuse") == []
        for event in self.events:
            if "audit_event" in event:
                assert event["log_namespace"] == "oauthd.audit"
                assert event["ip"] == "127.0.0.1"

    def test_unknown_names_are_not_logged(self) -> None:
        """
        A username or client id that matches nothing may be a secret typed
        into the wrong field: it is left out of the audit.
        """
        self.password_grant(username="hunter2hunter2", password="x")
        self.post(TOKEN, {"client_id": "s3cr3tvalue", "client_secret": "x"})
        text = " ".join(formatEvent(e) + repr(e) for e in self.events)
        assert "hunter2hunter2" not in text and "s3cr3tvalue" not in text
        assert len(self.audits("token.refuse")) == 2

    def test_audit_of_a_refusal_names_client_user_and_reason(self) -> None:
        self.password_grant(password="wrong")
        (event,) = self.audits("token.refuse")
        assert (event["client"], event["user"], event["error"]) == (self.client.id, "alice", "invalid_grant")
        assert event["reason"] == "wrong password or unknown user"
        assert "audit: token.refuse denied" in formatEvent(event)
