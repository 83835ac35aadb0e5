"""
Password logins under attack: a flood of failing logins does not starve a
right one of bcrypt, guesses for a username do not lock its owner out, the
limiter does not forget locked buckets under a flood of other charges, and
passwords follow a change of bcrypt cost.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from oauthd.interfaces import HasherBusy
from oauthd.protocol.errors import OAuthError
from oauthd.protocol.limits import (
    CHECKS_PER_HOUR,
    LOGIN_IP,
    MAX_PACE_WAIT,
    TOKEN_IP,
    USERNAME,
    USERNAME_IP,
    RateLimiter,
)
from oauthd.protocol.login import login
from oauthd.services.hashing import PasswordHasher, hash_cost, usual_cost
from oauthd.testing import ControlledHasher, InlinePool, InlineReactor, SteppingPool
from tests.oauth_helpers import PASSWORD, SESSION, TOKEN, OAuthCase, Reply


class LoginCase(OAuthCase):
    config_values = {"trusted_proxies": ["127.0.0.1"]}

    def send_login(self, username: str, password: str, ip: str) -> Deferred[Any]:
        """
        A password grant from C{ip}, answered whenever the server is done.
        """
        form = {"grant_type": "password", "username": username, "password": password}
        return self.send("POST", TOKEN, form=form, auth=(self.client.id, self.secret),
                         headers={"X-Forwarded-For": ip})

    def log_in(self, username: str, password: str, ip: str) -> Reply:
        return self.read(self.send_login(username, password, ip))


class FloodTests(LoginCase):
    """
    bcrypt runs in a pool whose jobs run only when the test says so, with
    the real hasher's queue in front of it.
    """

    def setUp(self) -> None:
        super().setUp()
        self.pool = SteppingPool()
        self.hasher = ControlledHasher(PasswordHasher(InlineReactor(), self.pool, cost=4))  # type: ignore[arg-type]
        self.server.ctx.hasher = self.hasher

    def test_a_right_password_is_checked_ahead_of_a_flood_of_failing_logins(self) -> None:
        """
        120 failing logins for random names from 60 addresses, each of
        which has failed before, fill the hasher's queue; alice's right
        password from an address that has not failed is still taken, and
        checked as soon as a thread is free.
        """
        flood_ips = [f"10.1.0.{i}" for i in range(1, 61)]
        for ip in flood_ips:
            sent = self.send_login(f"x{ip}", "guess", ip)
            self.pool.run_all()
            self.assert_error(self.read(sent), 400, "invalid_grant")
        flood = [self.send_login(f"user{i}", "guess", ip) for i, ip in enumerate(flood_ips * 2)]
        mine = self.send_login("alice", PASSWORD, "192.0.2.50")
        # Two checks of the flood were running; alice's is next.
        for _ in range(3):
            self.pool.run_one()
        assert self.read(mine).code == 200
        self.pool.run_all()
        answers = Counter(self.read(sent).code for sent in flood)
        assert set(answers) == {400, 503}, answers

    def test_a_burst_of_new_addresses_does_not_shut_out_the_next_one(self) -> None:
        """
        Sixty addresses that have not failed fill the queue at once; alice
        from another such address, coming after, is checked next: the
        oldest of the burst make room.
        """
        burst = [self.send_login(f"u{i}", "guess", f"10.3.0.{i}") for i in range(60)]
        mine = self.send_login("alice", PASSWORD, "192.0.2.60")
        for _ in range(3):
            self.pool.run_one()
        assert self.read(mine).code == 200
        self.pool.run_all()
        assert set(Counter(self.read(sent).code for sent in burst)) == {400, 503}

    def test_a_login_refused_for_a_busy_queue_counts_against_its_address(self) -> None:
        self.hasher.busy = True
        self.assert_error(self.log_in("alice", "guess", "10.4.0.1"), 503, "temporarily_unavailable")
        self.hasher.busy = False
        self.send_login("bob", "guess", "10.4.0.1")
        self.send_login("bob", "guess", "10.4.0.2")
        assert self.hasher.ranks[-2:] == [2, 1]

    def test_one_address_holds_a_bounded_share_of_the_queue(self) -> None:
        """
        Logins from one address that has failed take at most a share of the
        queue; others from another such address still get places.
        """
        for ip in ("10.2.0.1", "10.2.0.2"):
            sent = self.send_login("nobody", "guess", ip)
            self.pool.run_all()
            self.read(sent)
        share = self.hasher.inner.share  # type: ignore[attr-defined]
        # Two are handed to the pool's threads, a share waits, the rest are
        # refused.
        first = [self.send_login(f"a{i}", "guess", "10.2.0.1") for i in range(share + 6)]
        second = [self.send_login(f"b{i}", "guess", "10.2.0.2") for i in range(4)]
        self.pool.run_all()
        codes = [self.read(sent).code for sent in first]
        assert codes.count(503) == 4
        assert [self.read(sent).code for sent in second] == [400] * 4

    def test_a_known_address_is_checked_first(self) -> None:
        """
        An address alice logged in from is ranked ahead of new ones.
        """
        sent = self.send_login("alice", PASSWORD, "192.0.2.7")
        self.pool.run_all()
        assert self.read(sent).code == 200
        self.send_login("bob", "guess", "192.0.2.8")
        self.send_login("alice", PASSWORD, "192.0.2.7")
        self.send_login("carol", "guess", "192.0.2.9")
        assert self.hasher.ranks[-3:] == [1, 0, 1]


class OwnerTests(LoginCase):
    def setUp(self) -> None:
        super().setUp()
        self.bob = self.add_user("bob", "bobs password")

    def test_guesses_from_one_address_do_not_lock_the_owner_out(self) -> None:
        """
        Ten wrong passwords for bob from one address make that address
        refused for bob; bob's right password from another address works.
        """
        for _ in range(10):
            self.assert_error(self.log_in("bob", "guess", "10.0.0.1"), 400, "invalid_grant")
        self.assert_error(self.log_in("bob", "guess", "10.0.0.1"), 429, "too_many_requests")
        assert self.log_in("bob", "bobs password", "10.0.0.2").code == 200
        assert self.request("POST", SESSION, json_body={"username": "bob", "password": "bobs password"},
                            headers={"X-Forwarded-For": "10.0.0.3"}).code == 200

    def test_guesses_from_many_addresses_pace_the_owner_within_seconds(self) -> None:
        """
        Guesses for bob from twenty new addresses at once use up the pace of
        new addresses: bob's right password from yet another one is answered
        within L{MAX_PACE_WAIT} seconds, not refused.
        """
        guesses = [self.send_login("bob", "guess", f"10.0.1.{i}") for i in range(20)]
        self.clock.advance(MAX_PACE_WAIT)
        answers = Counter(self.read(sent).code for sent in guesses)
        assert answers == {400: 11, 429: 9}, answers
        sent = self.send_login("bob", "bobs password", "10.0.0.2")
        self.assertNoResult(sent)
        self.clock.advance(MAX_PACE_WAIT)
        assert self.read(sent).code == 200

    def test_guessing_addresses_do_not_delay_the_owner(self) -> None:
        """
        Addresses that have failed lately are paced apart: while their
        guesses for bob wait or are refused, bob is checked at once.
        """
        for i in range(20):
            self.log_in(f"carol{i}", "guess", f"10.0.2.{i}")
        guesses = [self.send_login("bob", "guess", f"10.0.2.{i}") for i in range(20)]
        assert self.log_in("bob", "bobs password", "10.0.0.2").code == 200
        self.clock.advance(MAX_PACE_WAIT)
        answers = Counter(self.read(sent).code for sent in guesses)
        assert answers == {400: 10, 429: 10}, answers

    def test_checks_of_a_username_are_capped_per_hour(self) -> None:
        """
        A guess for bob every second for an hour, each from a new address,
        gets at most L{CHECKS_PER_HOUR} checks; the rest are refused with
        Retry-After, or answered later.
        """
        ctx = self.server.ctx
        before = self.hasher.checks
        outcomes: list[Deferred[Any]] = []
        for second in range(3600):
            ip = f"10.{second // 65536}.{second // 256 % 256}.{second % 256}"
            outcomes.append(Deferred.fromCoroutine(login(ctx, "bob", "guess", ip)))
            self.clock.advance(1)
        self.clock.advance(MAX_PACE_WAIT)
        errors = [self.failureResultOf(d, OAuthError).value for d in outcomes]
        answers = Counter(error.status for error in errors)
        assert answers[429] > 0 and set(answers) == {400, 429}, answers
        assert 0 < self.hasher.checks - before <= CHECKS_PER_HOUR
        # A refusal says when to come back.
        assert all(int(e.headers["Retry-After"]) > 0 for e in errors if e.status == 429)


def test_a_locked_bucket_outlives_a_flood_of_other_charges() -> None:
    """
    A username locked by its failures stays locked when the table is full
    and 100,000 charges for bad tokens from other addresses come after.
    """
    clock = Clock()
    clock.advance(1000)
    limiter = RateLimiter(clock.seconds, max_entries=100)
    for _ in range(10):
        limiter.charge(USERNAME, "bob")
        limiter.charge(USERNAME_IP, "bob 10.0.0.1")
    for i in range(100_000):
        limiter.charge(TOKEN_IP, f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
        assert len(limiter) <= 100
    assert limiter.retry_after(USERNAME, "bob") == 60
    assert limiter.retry_after(USERNAME_IP, "bob 10.0.0.1") == 60


class RehashTests(LoginCase):
    def test_a_password_is_rehashed_at_the_new_cost_on_its_next_login(self) -> None:
        """
        After the cost changes, a right password's hash is made again at
        the new cost, durably (it survives a restart); a wrong one changes
        nothing.
        """
        inner = self.hasher.inner
        assert isinstance(inner, PasswordHasher)
        assert hash_cost(self.alice.password_hash) == 4
        inner.cost = 5
        records = self.journal_size()
        self.assert_error(self.log_in("alice", "guess", "192.0.2.1"), 400, "invalid_grant")
        assert self.journal_size() == records
        assert self.log_in("alice", PASSWORD, "192.0.2.2").code == 200
        assert hash_cost(self.server.state.users["alice"].password_hash) == 5
        self.restart()
        assert hash_cost(self.server.state.users["alice"].password_hash) == 5
        assert self.log_in("alice", PASSWORD, "192.0.2.2").code == 200

    def test_a_concurrent_rehash_does_not_refuse_the_right_password(self) -> None:
        """
        Two logins after a cost change: the one whose check was running when
        the other rehashed the password is still let in, and nothing is
        charged against its address.
        """
        inner = self.hasher.inner
        assert isinstance(inner, PasswordHasher)
        inner.cost = 5
        held = self.hasher.hold()
        first = self.send_login("alice", PASSWORD, "192.0.2.1")
        assert self.log_in("alice", PASSWORD, "192.0.2.2").code == 200
        assert hash_cost(self.server.state.users["alice"].password_hash) == 5
        held.callback(True)
        self.treq.flush()
        assert self.read(first).code == 200
        assert self.server.ctx.limiter.untouched(LOGIN_IP, "192.0.2.1")

    def test_a_busy_hasher_does_not_fail_the_login_for_the_rehash(self) -> None:
        inner = self.hasher.inner
        assert isinstance(inner, PasswordHasher)
        inner.cost = 5

        def busy(password: str) -> Deferred[str]:
            raise HasherBusy()

        inner.hash = busy  # type: ignore[method-assign]
        assert self.log_in("alice", PASSWORD, "192.0.2.2").code == 200
        assert hash_cost(self.server.state.users["alice"].password_hash) == 4


def test_unknown_users_are_checked_against_a_hash_of_the_usual_cost() -> None:
    """
    With most stored hashes at cost 4 and new ones made at 5, an unknown
    user's check runs against a cost-4 hash, as a known user's does.
    """
    stored = ["$2b$04$" + "a" * 53, "$2b$04$" + "b" * 53, "$2b$05$" + "c" * 53, ""]
    assert usual_cost(stored, 12) == 4
    assert usual_cost([], 12) == 12
    hasher = PasswordHasher(InlineReactor(), InlinePool(), cost=5, dummy_cost=usual_cost(stored, 12))  # type: ignore[arg-type]
    results: list[bool] = []
    hasher.check("guess", "").addCallback(results.append)
    hasher.check("guess", "").addCallback(results.append)
    assert results == [False, False]
    assert hash_cost(hasher.dummy) == 4


def test_a_full_table_makes_room_one_bucket_at_a_time() -> None:
    """
    A charge past the cap drops the one bucket that would refill soonest,
    not a sweep of the table (which walked every bucket on a request).
    """
    clock = Clock()
    clock.advance(1000)
    limiter = RateLimiter(clock.seconds, max_entries=100)
    for i in range(100):
        limiter.charge(TOKEN_IP, f"10.0.0.{i}")
        clock.advance(0.01)
    limiter.charge(USERNAME, "bob")
    assert len(limiter) == 100
    assert limiter.retry_after(TOKEN_IP, "10.0.0.0") == 0
    assert limiter.untouched(TOKEN_IP, "10.0.0.0")
    assert not limiter.untouched(TOKEN_IP, "10.0.0.1")
