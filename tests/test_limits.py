"""
Rate limits on failures: the token buckets themselves, and how the
endpoints use them (429 with Retry-After; successes never slowed).
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from twisted.internet.task import Clock

from oauthd.protocol.limits import (
    CLIENT,
    LOGIN_IP,
    TOKEN_IP,
    USERNAME_NEW,
    RateLimiter,
    Rule,
    client_address,
    ip_key,
)
from tests.oauth_helpers import PASSWORD, TOKEN, USERINFO, OAuthCase, bearer


def make_limiter(max_entries: int = 1000) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    clock.advance(1000)
    return RateLimiter(clock.seconds, max_entries), clock


def test_burst_then_steady_rate() -> None:
    limiter, clock = make_limiter()
    for _ in range(10):
        assert limiter.retry_after(LOGIN_IP, "a") == 0
        limiter.charge(LOGIN_IP, "a")
    assert limiter.retry_after(LOGIN_IP, "a") == 60
    assert limiter.retry_after(LOGIN_IP, "b") == 0
    clock.advance(45)
    assert limiter.retry_after(LOGIN_IP, "a") == 15
    clock.advance(15)
    assert limiter.retry_after(LOGIN_IP, "a") == 0
    limiter.charge(LOGIN_IP, "a")
    assert limiter.retry_after(LOGIN_IP, "a") == 60


def test_unknown_token_rule_is_photoprisms() -> None:
    limiter, clock = make_limiter()
    for _ in range(60):
        limiter.charge(TOKEN_IP, "a")
    assert limiter.retry_after(TOKEN_IP, "a") == 10


def test_refilled_buckets_are_pruned() -> None:
    limiter, clock = make_limiter()
    limiter.charge(LOGIN_IP, "a")
    for _ in range(5):
        limiter.charge(CLIENT, "c")
    clock.advance(60)
    assert limiter.prune() == 1
    assert len(limiter) == 1
    clock.advance(300)
    limiter.prune()
    assert len(limiter) == 0


def test_idle_buckets_are_swept_without_reaching_the_cap() -> None:
    """
    A bucket that has refilled goes with the next charge, whatever the cap.
    """
    limiter, clock = make_limiter(max_entries=100_000)
    limiter.charge(LOGIN_IP, "old")
    clock.advance(3600)
    limiter.charge(TOKEN_IP, "new")
    assert len(limiter) == 1
    assert limiter.retry_after(LOGIN_IP, "old") == 0


def test_memory_is_capped_by_forgetting_the_oldest() -> None:
    limiter, clock = make_limiter(max_entries=100)
    for i in range(1000):
        limiter.charge(LOGIN_IP, f"10.0.{i // 256}.{i % 256}")
        assert len(limiter) <= 100
    # The most recent failures are still remembered.
    rule = Rule("one", 1, 60.0)
    limiter.charge(rule, "x")
    assert limiter.retry_after(rule, "x") == 60


@pytest.mark.parametrize("host, key", [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("unix", "unix"),
    ("x" * 100, "x" * 64),
])
def test_ip_keys(host: str, key: str) -> None:
    assert ip_key(host) == key


@pytest.mark.parametrize("peer, forwarded, trusted, client", [
    ("192.0.2.1", ["198.51.100.9"], [], "192.0.2.1"),
    ("192.0.2.1", ["198.51.100.9"], ["10.0.0.0/8"], "192.0.2.1"),
    ("127.0.0.1", ["198.51.100.9"], ["127.0.0.1"], "198.51.100.9"),
    ("127.0.0.1", ["6.6.6.6, 198.51.100.9, 10.1.1.1"], ["127.0.0.1", "10.0.0.0/8"], "198.51.100.9"),
    ("127.0.0.1", ["6.6.6.6", "198.51.100.9"], ["127.0.0.1"], "198.51.100.9"),
    ("127.0.0.1", ["garbage"], ["127.0.0.1"], "127.0.0.1"),
    ("127.0.0.1", [], ["127.0.0.1"], "127.0.0.1"),
])
def test_client_address(peer: str, forwarded: list[str], trusted: list[str], client: str) -> None:
    assert client_address(peer, forwarded, trusted) == client


class EndpointLimitTests(OAuthCase):
    config_values = {"trusted_proxies": ["127.0.0.1"]}

    def from_ip(self, ip: str) -> dict[str, str]:
        return {"X-Forwarded-For": ip}

    def test_failed_client_logins_then_429(self) -> None:
        """
        Ten wrong secrets from one address get 401; the eleventh 429 with
        Retry-After. The right secret still works meanwhile: it cannot be
        guessed, so it is never held back.
        """
        wrong = {"auth": (self.client.id, "wrong"), "headers": self.from_ip("192.0.2.1")}
        for _ in range(10):
            self.assert_error(self.token({"grant_type": "client_credentials"}, **wrong), 401, "invalid_client")
        reply = self.token({"grant_type": "client_credentials"}, **wrong)
        self.assert_error(reply, 429, "too_many_requests")
        assert reply.header("retry-after") == "60"
        assert self.token({"grant_type": "client_credentials"}, headers=self.from_ip("192.0.2.1")).code == 200
        self.clock.advance(60)
        self.assert_error(self.token({"grant_type": "client_credentials"}, **wrong), 401, "invalid_client")

    def test_per_client_limit_across_addresses(self) -> None:
        for i in range(10):
            self.token({"grant_type": "client_credentials"}, auth=(self.client.id, "wrong"),
                       headers=self.from_ip(f"192.0.2.{i}"))
        reply = self.token({"grant_type": "client_credentials"}, auth=(self.client.id, "wrong"),
                           headers=self.from_ip("198.51.100.1"))
        self.assert_error(reply, 429, "too_many_requests")

    def test_password_guessing_is_stopped_before_bcrypt(self) -> None:
        """
        Once an address has failed ten times, a password login is refused
        before any bcrypt (even a right one: a person's password could be
        guessed); an app password still works.
        """
        headers = self.from_ip("192.0.2.1")
        for _ in range(10):
            self.assert_error(self.password_grant(password="guess", headers=headers), 400, "invalid_grant")
        checks = self.hasher.checks
        self.assert_error(self.password_grant(password="guess", headers=headers), 429, "too_many_requests")
        self.assert_error(self.password_grant(headers=headers), 429, "too_many_requests")
        assert self.hasher.checks == checks
        app, _ = self.app_password()
        assert self.password_grant(password=app, headers=headers).code == 200
        # The address is refused, not alice: from another one she logs in.
        assert self.password_grant(headers=self.from_ip("192.0.2.2")).code == 200

    def test_per_username_pace_across_addresses(self) -> None:
        """
        Guesses from ten new addresses use up a username's pace: the next
        check of that username waits, another user's does not.
        """
        for i in range(10):
            self.password_grant(password="guess", headers=self.from_ip(f"192.0.2.{i}"))
        sent = self.send("POST", TOKEN, form={"grant_type": "password", "username": "alice",
                                              "password": PASSWORD},
                         auth=(self.client.id, self.secret), headers=self.from_ip("198.51.100.1"))
        self.add_user("bob", "bobs password")
        assert self.password_grant(username="bob", password="bobs password",
                                   headers=self.from_ip("198.51.100.1")).code == 200
        self.assertNoResult(sent)
        self.clock.advance(USERNAME_NEW.interval)
        assert self.read(sent).code == 200

    def test_a_limited_address_cannot_flood_the_limiter(self) -> None:
        """
        Once an address is answered 429, its further failures charge nothing:
        it cannot create bucket after bucket (wrong app passwords for made-up
        names cost no bcrypt) until everyone else's are pushed out.
        """
        headers = self.from_ip("192.0.2.1")
        for _ in range(10):
            self.password_grant(password="guess", headers=headers)
        before = len(self.http.limiter)
        app_format = "aaaaaa-aaaaaa-aaaaaa-aaaaab"
        for i in range(50):
            self.assert_error(self.password_grant(username=f"x{i}", password=app_format, headers=headers),
                              429, "too_many_requests")
        assert len(self.http.limiter) == before

    def test_unknown_users_are_paced_like_known_ones(self) -> None:
        for name in ("alice", "nobody"):
            for i in range(10):
                self.password_grant(username=name, password="guess", headers=self.from_ip(f"192.0.2.{i}"))
            sent = self.send("POST", TOKEN, form={"grant_type": "password", "username": name,
                                                  "password": "guess"},
                             auth=(self.client.id, self.secret), headers=self.from_ip("198.51.100.1"))
            self.assertNoResult(sent)
            self.clock.advance(USERNAME_NEW.interval)
            self.assert_error(self.read(sent), 400, "invalid_grant")
            self.clock.advance(3600)

    def test_unknown_tokens_then_429_but_valid_tokens_work(self) -> None:
        access = self.password_grant(scope="openid").body["access_token"]
        headers = {**bearer("0" * 48), **self.from_ip("192.0.2.1")}
        for _ in range(60):
            self.assert_error(self.request("GET", USERINFO, headers=headers), 401, "invalid_token")
        reply = self.request("GET", USERINFO, headers=headers)
        self.assert_error(reply, 429, "too_many_requests")
        assert reply.header("retry-after") == "10"
        assert self.request("GET", USERINFO, headers={**bearer(access), **self.from_ip("192.0.2.1")}).code == 200

    def test_unknown_refresh_tokens_count_as_unknown_tokens(self) -> None:
        headers = self.from_ip("192.0.2.1")
        form = {"grant_type": "refresh_token", "refresh_token": "0" * 48}
        for _ in range(60):
            self.assert_error(self.token(form, headers=headers), 400, "invalid_grant")
        self.assert_error(self.token(form, headers=headers), 429, "too_many_requests")

    def test_successes_are_never_charged(self) -> None:
        app, _ = self.app_password()
        for _ in range(30):
            body = self.password_grant().body
            self.password_grant(password=app)
            self.token({"grant_type": "client_credentials"})
            self.token({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
            self.request("GET", USERINFO, headers=bearer(body["access_token"]))
        assert len(self.http.limiter) == 0

    def test_untrusted_peers_cannot_choose_their_address(self) -> None:
        self.server.ctx.config = attrs.evolve(self.config, trusted_proxies=())
        self.http = type(self.http)(self.server.ctx, self.server.store)
        from treq.testing import StubTreq

        self.treq = StubTreq(self.http.resource())
        for i in range(10):
            self.password_grant(password="guess", username=f"user{i}", headers=self.from_ip(f"192.0.2.{i}"))
        self.assert_error(self.password_grant(headers=self.from_ip("198.51.100.1")), 429, "too_many_requests")

    def test_wrong_password_never_changes_state(self) -> None:
        before = self.journal_size()
        for _ in range(12):
            self.password_grant(password="guess")
        assert self.journal_size() == before


def _fields(config: Any) -> dict[str, Any]:
    import attrs

    return attrs.asdict(config, recurse=False)


def test_a_refusal_that_names_its_limit_meets_an_empty_bucket() -> None:
    """
    A caller that names the limit it refuses for (a username's pace) and
    finds another bucket it charges already empty gets one 429 naming both,
    not a TypeError for the doubled field.
    """
    from oauthd.protocol import errors
    from oauthd.protocol.limits import refuse

    limiter, _ = make_limiter()
    for _ in range(LOGIN_IP.burst):
        limiter.charge(LOGIN_IP, "192.0.2.1")
    limited = refuse(limiter, errors.too_many_requests(30), "192.0.2.1", [(LOGIN_IP, "192.0.2.1")],
                     limit="username-new")
    assert limited.status == 429
    assert limited.context["limit"] == f"{LOGIN_IP.name},username-new"
