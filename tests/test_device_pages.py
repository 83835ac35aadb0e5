"""
The device verification page over HTTP, as a browser sees it: log in
(with the second factor), enter or confirm the code, see the client and
its scopes, allow or deny; then the device's poll.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from oauthd.protocol import device
from tests.page_case import PageCase, Shown
from tests.oauth_helpers import PASSWORD

VERIFY = "/api/v1/oauth/device/verify"
GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class DevicePageTests(PageCase):
    def setUp(self) -> None:
        super().setUp()
        self.tv, _ = self.add_client("Photo Frame", type="public", grant_types=(GRANT,),
                                     scope="photos albums")

    def start(self) -> dict[str, Any]:
        reply = self.post("/api/v1/oauth/device", {"client_id": self.tv.id})
        assert reply.code == 200, reply
        return dict(reply.body)

    def poll(self, device_code: str) -> Any:
        return self.post("/api/v1/oauth/token", {
            "grant_type": GRANT, "client_id": self.tv.id, "device_code": device_code})

    def fill(self, shown: Shown, button: tuple[str, str] | None = None, **values: str) -> Shown:
        form = shown.page.form
        assert (form.action, form.method) == (VERIFY, "post"), form
        return self.browse("POST", VERIFY, form.filled(button, **values))

    def test_log_in_enter_the_code_approve(self) -> None:
        started = self.start()
        login = self.browse("GET", VERIFY)
        # Logged out, the page asks to sign in before any code is entered.
        assert login.code == 200
        assert {"username", "password"} <= {field.get("name") for field in login.page.form.inputs}
        assert "user_code" not in {field.get("name") for field in login.page.form.inputs}
        entry = self.fill(login, username="alice", password=PASSWORD)
        assert entry.code == 200 and "Enter the code" in entry.page.text, entry.page.text
        confirm = self.fill(entry, user_code=started["user_code"].lower())
        assert "Photo Frame" in confirm.page.text and started["user_code"] in confirm.page.text
        assert "See and change your photos" in confirm.page.text
        self.assert_error(self.poll(started["device_code"]), 400, "authorization_pending")
        done = self.fill(confirm, ("consent", "approve"))
        assert done.code == 200 and "Device connected" in done.page.text
        self.clock.advance(5)
        assert self.poll(started["device_code"]).code == 200

    def test_the_complete_uri_fills_the_code_but_still_asks(self) -> None:
        started = self.start()
        path = started["verification_uri_complete"].removeprefix("https://auth.example.com")
        login = self.browse("GET", path)
        entry = self.fill(login, username="alice", password=PASSWORD)
        # Logged in, the code is filled in but nothing is approved yet.
        assert entry.page.form.fields.get("user_code") == started["user_code"]
        self.assert_error(self.poll(started["device_code"]), 400, "authorization_pending")
        confirm = self.fill(entry)
        self.fill(confirm, ("consent", "deny"))
        self.clock.advance(5)
        self.assert_error(self.poll(started["device_code"]), 400, "access_denied")

    def test_with_a_second_factor(self) -> None:
        enrollment = self.enable_second_factor("alice")
        started = self.start()
        second = self.fill(self.browse("GET", VERIFY), username="alice", password=PASSWORD)
        assert "Two-step verification" in second.page.text
        entry = self.fill(second, otp=enrollment.recovery_codes[0])
        confirm = self.fill(entry, user_code=started["user_code"])
        self.fill(confirm, ("consent", "approve"))
        assert self.poll(started["device_code"]).code == 200

    def test_wrong_codes_are_refused_then_limited(self) -> None:
        entry = self.fill(self.browse("GET", VERIFY), username="alice", password=PASSWORD)
        for _ in range(device.DEVICE_USER.burst):
            entry = self.fill(entry, user_code="BBBB-BBBB")
            assert entry.code == 400 and "not right" in entry.page.text
        limited = self.fill(entry, user_code="BBBB-BBBB")
        assert limited.code == 429 and "Too many attempts" in limited.page.text
        assert int(limited.header("retry-after") or 0) > 0

    def test_a_post_without_the_csrf_token_changes_nothing(self) -> None:
        started = self.start()
        entry = self.fill(self.browse("GET", VERIFY), username="alice", password=PASSWORD)
        forged = self.browse("POST", VERIFY, {"user_code": started["user_code"], "consent": "approve"})
        assert forged.code == 403
        self.assert_error(self.poll(started["device_code"]), 400, "authorization_pending")
        assert entry.code == 200

    def test_hostile_input_is_refused_and_changes_nothing(self) -> None:
        entry = self.fill(self.browse("GET", VERIFY), username="alice", password=PASSWORD)
        size = self.journal_size()
        for code in ("\u0000\u202e" * 50, "x" * 5000, "BCDF-GHJK\ttok", "' OR 1=1 --", "\udcff"):
            shown = self.browse("GET", VERIFY + "?" + urlencode({"user_code": code.encode("utf-8", "surrogatepass")}))
            assert shown.code in (200, 400), shown
            posted = self.fill(entry, user_code=code) if "\udcff" not in code else entry
            assert posted.code in (200, 400, 429)
        for form in ({"client_id": self.tv.id, "scope": "\u0000"}, {"client_id": "x" * 5000},
                     {"client_id": self.tv.id, "scope": "photos " * 1000}):
            assert self.post("/api/v1/oauth/device", form).code in (400, 401)
        poll = self.post("/api/v1/oauth/token", {"grant_type": GRANT, "client_id": self.tv.id,
                                                 "device_code": "\u0000" * 10000})
        assert poll.code in (400, 413, 429)
        assert self.journal_size() == size
