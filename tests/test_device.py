"""
The device authorization grant (RFC 8628): the device authorization
endpoint over HTTP, polling at the token endpoint, and the verification
page's decisions (L{oauthd.protocol.device}) in a browser session.
"""

from __future__ import annotations

import re

import attrs
from typing import Any

from oauthd.protocol import device
from oauthd.protocol.browser import BrowserLogin
from oauthd.protocol.errors import OAuthError
from oauthd.protocol.limits import ip_key
from oauthd.state.device import DeviceCode, DevicePut
from oauthd.state.records import decode, encode
from tests.authz_helpers import IP, AuthzCase
from tests.oauth_helpers import PASSWORD

DEVICE = "/api/v1/oauth/device"
GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class DeviceCase(AuthzCase):
    """
    L{AuthzCase} with a public client (a TV) allowed the device code grant.
    """

    def setUp(self) -> None:
        super().setUp()
        self.tv, _ = self.add_client("Photo Frame", type="public", grant_types=(GRANT, "refresh_token"),
                                     scope="photos albums")

    def start(self, **form: str) -> dict[str, Any]:
        reply = self.post(DEVICE, {"client_id": self.tv.id, "scope": "photos", **form})
        assert reply.code == 200, reply
        assert isinstance(reply.body, dict)
        return reply.body

    def poll(self, device_code: str) -> Any:
        return self.post("/api/v1/oauth/token", {
            "grant_type": GRANT, "client_id": self.tv.id, "device_code": device_code})

    def decide(self, login: BrowserLogin, user_code: str, approve: bool = True, ip: str = IP) -> Any:
        session = self.session(login)
        assert session is not None
        return self.commit(device.answer(self.ctx, session, user_code, approve, ip))


class StartTests(DeviceCase):
    def test_the_answer(self) -> None:
        body = self.start()
        assert set(body) == {"device_code", "user_code", "verification_uri",
                             "verification_uri_complete", "expires_in", "interval"}
        assert re.fullmatch("[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", body["user_code"])
        assert len(body["device_code"]) >= 43  # 256 bits, base64url
        assert body["verification_uri"] == "https://auth.example.com/api/v1/oauth/device/verify"
        assert body["verification_uri_complete"] == body["verification_uri"] + "?user_code=" + body["user_code"]
        assert (body["expires_in"], body["interval"]) == (600, 5)

    def test_codes_are_kept_only_as_digests(self) -> None:
        body = self.start()
        journal = b"".join(self.journal.payloads)
        assert body["device_code"].encode() not in journal
        assert body["user_code"].replace("-", "").encode() not in journal

    def test_a_client_without_the_grant_is_refused(self) -> None:
        reply = self.post(DEVICE, {"client_id": self.native.id})
        self.assert_error(reply, 400, "unauthorized_client")

    def test_an_unknown_client_or_scope_beyond_the_clients_is_refused(self) -> None:
        self.assert_error(self.post(DEVICE, {"client_id": "nobody"}), 401, "invalid_client")
        self.assert_error(self.post(DEVICE, {"client_id": self.tv.id, "scope": "openid"}), 400,
                          "invalid_scope")

    def test_starting_codes_is_limited_per_source(self) -> None:
        """
        A public client's id is no secret: one address may start 20 codes at
        once, then one every 30 s, so nobody fills memory and the journal
        with pending codes.
        """
        for _ in range(20):
            self.start()
        before = self.journal_size()
        reply = self.post(DEVICE, {"client_id": self.tv.id, "scope": "photos"})
        self.assert_error(reply, 429, "too_many_requests")
        assert reply.header("retry-after") and self.journal_size() == before
        self.clock.advance(30)
        self.start()

    def test_user_codes_compare_without_case_or_dashes(self) -> None:
        assert device.normalize("bcdf-ghjk") == device.normalize(" BCDFGHJK ") == "BCDFGHJK"
        assert device.normalize("BCDF-GHJA") is None  # a vowel
        assert device.normalize("BCDF-GHJ") is None


class FlowTests(DeviceCase):
    def test_pending_slow_down_approve_tokens_once(self) -> None:
        body = self.start()
        code = body["device_code"]
        self.assert_error(self.poll(code), 400, "authorization_pending")
        self.clock.advance(2)
        reply = self.poll(code)
        self.assert_error(reply, 400, "slow_down")
        assert "10 seconds" in reply.body["error_description"]
        self.clock.advance(6)  # 6 < 10: too soon again, and the interval grows again
        self.assert_error(self.poll(code), 400, "slow_down")
        self.clock.advance(15)
        self.assert_error(self.poll(code), 400, "authorization_pending")
        self.decide(self.browser_login(), body["user_code"].lower())
        self.clock.advance(15)
        tokens = self.poll(code)
        assert tokens.code == 200, tokens
        assert tokens.body["scope"] == "photos"
        assert self.active(tokens.body["access_token"])
        self.clock.advance(15)
        self.assert_error(self.poll(code), 400, "invalid_grant")
        # The tokens form a grant family: the refresh token rotates.
        refreshed = self.post("/api/v1/oauth/token", {
            "grant_type": "refresh_token", "client_id": self.tv.id,
            "refresh_token": tokens.body["refresh_token"]})
        assert refreshed.code == 200, refreshed

    def test_two_polls_at_once_get_the_tokens_once(self) -> None:
        body = self.start()
        self.decide(self.browser_login(), body["user_code"])
        self.journal.holding = True
        form = {"grant_type": GRANT, "client_id": self.tv.id, "device_code": body["device_code"]}
        first = self.send("POST", "/api/v1/oauth/token", form=form)
        second = self.send("POST", "/api/v1/oauth/token", form=form)
        self.journal.release()
        assert self.read(first).code == 200
        self.assert_error(self.read(second), 400, "invalid_grant")

    def test_a_scope_the_client_lost_since_the_approval_is_not_issued(self) -> None:
        body = self.start(scope="photos albums")
        self.decide(self.browser_login(), body["user_code"])
        self.successResultOf(self.server.update_client(self.tv.id, scope="photos"))
        self.assert_error(self.poll(body["device_code"]), 400, "invalid_grant")

    def test_hammering_writes_a_bounded_number_of_records(self) -> None:
        body = self.start()
        self.assert_error(self.poll(body["device_code"]), 400, "authorization_pending")
        before = self.journal_size()
        for _ in range(30):
            self.assert_error(self.poll(body["device_code"]), 400, "slow_down")
        # 5 -> 60 s in steps of 5: 11 records, then refusals change nothing.
        assert self.journal_size() - before == 11
        reply = self.poll(body["device_code"])
        assert "60 seconds" in reply.body["error_description"]

    def test_deny(self) -> None:
        body = self.start()
        self.decide(self.browser_login(), body["user_code"], approve=False)
        self.assert_error(self.poll(body["device_code"]), 400, "access_denied")

    def test_expiry(self) -> None:
        body = self.start()
        self.clock.advance(600)
        self.assert_error(self.poll(body["device_code"]), 400, "expired_token")
        with self.assertRaises(OAuthError) as caught:
            self.decide(self.browser_login(), body["user_code"])
        assert caught.exception.error == "invalid_grant"

    def test_approving_is_a_use_of_the_browser_session(self) -> None:
        login = self.browser_login()
        idle = self.config.browser_session_idle
        self.clock.advance(idle - 10)
        self.decide(login, self.start()["user_code"])
        self.clock.advance(idle - 10)
        assert self.session(login) is not None

    def test_a_used_code_cannot_be_approved_again(self) -> None:
        body = self.start()
        login = self.browser_login()
        self.decide(login, body["user_code"])
        with self.assertRaises(OAuthError):
            self.decide(login, body["user_code"])

    def test_another_clients_device_code_is_refused(self) -> None:
        body = self.start()
        other, _ = self.add_client("Other TV", type="public", grant_types=(GRANT,), scope="photos")
        reply = self.post("/api/v1/oauth/token", {
            "grant_type": GRANT, "client_id": other.id, "device_code": body["device_code"]})
        self.assert_error(reply, 400, "invalid_grant")

    def test_state_survives_a_restart(self) -> None:
        body = self.start()
        self.decide(self.browser_login(), body["user_code"])
        self.restart()
        assert self.poll(body["device_code"]).code == 200

    def test_a_snapshot_drops_expired_codes(self) -> None:
        live = self.start()
        self.clock.advance(590)
        self.start()
        self.clock.advance(20)  # the first has expired, the second not
        payloads = list(self.server.store.state.snapshot(self.clock.seconds()))
        held = [p for p in payloads if p.startswith(b"device\t")]
        assert len(held) == 1
        assert live["device_code"].encode() not in held[0]


class GuessingTests(DeviceCase):
    def wrong(self, login: BrowserLogin, ip: str = IP) -> str:
        try:
            self.decide(login, "BBBB-BBBB", ip=ip)
        except OAuthError as e:
            return e.error
        raise AssertionError("a wrong code was taken")

    def test_wrong_codes_are_limited_per_user(self) -> None:
        alice = self.browser_login()
        errors = [self.wrong(alice, ip=f"203.0.113.{i}") for i in range(device.DEVICE_USER.burst + 1)]
        assert errors == ["invalid_grant"] * device.DEVICE_USER.burst + ["too_many_requests"]
        body = self.start()
        with self.assertRaises(OAuthError) as caught:
            self.decide(alice, body["user_code"], ip="203.0.113.99")
        assert caught.exception.error == "too_many_requests"
        # bob, elsewhere, is not blocked by alice's guesses.
        self.decide(self.browser_login("bob", PASSWORD), body["user_code"], ip="192.0.2.7")

    def test_wrong_codes_are_limited_per_source(self) -> None:
        self.add_user("carol", PASSWORD)
        logins = [self.browser_login(name, PASSWORD) for name in ("alice", "bob", "carol")]
        # Each user stays under the per-user limit; together they reach the address's.
        errors = [self.wrong(logins[i % 3]) for i in range(device.DEVICE_IP.burst + 1)]
        assert errors == ["invalid_grant"] * device.DEVICE_IP.burst + ["too_many_requests"]
        body = self.start()
        # The same users from elsewhere still can.
        self.decide(logins[0], body["user_code"], ip="192.0.2.7")
        assert ip_key("2001:db8::1") == ip_key("2001:db8::2")  # an IPv6 source is its /64

    def test_the_limit_is_forgiven_with_time(self) -> None:
        alice = self.browser_login()
        for i in range(device.DEVICE_USER.burst):
            self.wrong(alice, ip=f"203.0.113.{i}")
        self.clock.advance(device.DEVICE_USER.interval)
        body = self.start()
        self.decide(alice, body["user_code"], ip="192.0.2.7")


_K = "ab" * 32
_U = "cd" * 32
GOLDEN_DEVICE = [
    # A device code started, then approved by alice (the whole code each time).
    b'device\t{"key":"' + _K.encode() + b'","user_key":"' + _U.encode() + b'","client_id":"c1",'
    b'"scope":"photos","grant":"0123456789abcdef","issued_at":1800000000,"lifetime":600,'
    b'"interval":5,"polled_at":0,"status":"pending","user":"","auth_time":0}',
    b'device\t{"key":"' + _K.encode() + b'","user_key":"' + _U.encode() + b'","client_id":"c1",'
    b'"scope":"photos","grant":"0123456789abcdef","issued_at":1800000000,"lifetime":600,'
    b'"interval":10,"polled_at":1800000007,"status":"approved","user":"alice","auth_time":1800000001}',
]


def test_device_records_keep_their_format() -> None:
    """
    The device record reads from and writes back to exactly these bytes.
    """
    started = DeviceCode(_K, _U, "c1", "photos", "0123456789abcdef", 1800000000, 600, 5)
    approved = attrs.evolve(started, interval=10, polled_at=1800000007, status="approved",
                            user="alice", auth_time=1800000001)
    records = [DevicePut(started), DevicePut(approved)]
    assert [encode(record) for record in records] == GOLDEN_DEVICE
    assert [decode(payload) for payload in GOLDEN_DEVICE] == records


class RecordTests(DeviceCase):
    def test_a_malformed_record_is_refused(self) -> None:
        good = GOLDEN_DEVICE[0]
        for bad in (b"device\t{}", b"device\tnot json", good + b"\textra",
                    good.replace(b'"pending"', b'"granted"'), good.replace(b'600', b'"600"'),
                    b"device\t[]"):
            with self.assertRaises(ValueError):
                decode(bad)


class DiscoveryTests(DeviceCase):
    def test_the_endpoint_and_grant_are_listed(self) -> None:
        for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
            reply = self.request("GET", path)
            assert reply.body["device_authorization_endpoint"] == "https://auth.example.com" + DEVICE
            assert GRANT in reply.body["grant_types_supported"]
