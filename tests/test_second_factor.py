"""
Two-factor login (TOTP, issue 14): turning it on and off over the control
socket, checking a code or a recovery code (each once), rate limits per user
and per source, the journal records (across restarts and compaction), the
secret kept out of every log, and the password grant and session endpoint
taking only app passwords from a user who has it.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import pytest_twisted

from twisted.logger import globalLogPublisher
from twisted.internet.testing import EventLoggingObserver

from oauthd.control import wire
from oauthd.protocol import second_factor
from oauthd.protocol.admin.second_factor import Enrollment
from oauthd.protocol.errors import OAuthError
from oauthd.protocol.limits import SECOND_FACTOR_IP, SECOND_FACTOR_USER
from oauthd.state.entities import TOTP_PERIOD, SecondFactor, User
from oauthd.state.model import State
from oauthd.state.records import (
    RecoveryCodeUsed,
    SecondFactorDisabled,
    SecondFactorEnabled,
    TotpStepUsed,
    UserPut,
    UserRemoved,
    encode,
)
from tests.helpers import START
from tests.oauth_helpers import PASSWORD, SESSION, USERINFO, bearer
from tests.test_accounts import AccountCase
from tests.test_ctl import Live

IP = "192.0.2.7"


class SecondFactorCase(AccountCase):
    """
    L{AccountCase} with a fixed source of randomness, so each test's secret
    is the same on every run (a code of another step coincides with the
    right one with a chance of 1 in 10**6, which a fixed secret makes
    reproducible).
    """

    def setUp(self) -> None:
        super().setUp()
        self.server.ctx.random_bytes = random.Random(14).randbytes

    def enable(self, name: str = "bob") -> dict[str, Any]:
        return self.admin.call(wire.EnableSecondFactor, name=name)

    def code_at(self, secret: str, when: float) -> str:
        return pyotp.TOTP(secret).at(int(when))

    def verify(self, code: str, name: str = "bob", ip: str = IP) -> second_factor.Verified:
        """
        Check C{code} and commit the decision, as a login would.
        """
        decision = second_factor.verify(self.server.ctx, name, code, ip)
        return self.successResultOf(self.server.store.commit(decision))

    def refused(self, code: str, name: str = "bob", ip: str = IP) -> OAuthError:
        with pytest.raises(OAuthError) as caught:
            second_factor.verify(self.server.ctx, name, code, ip)
        return caught.value


class EnrollmentTests(SecondFactorCase):
    def test_enable_gives_a_uri_whose_secret_makes_valid_codes(self) -> None:
        """
        The otpauth URI names the user and the issuer and holds the secret;
        a code pyotp makes from it is accepted; ten recovery codes come with
        it, and status tells.
        """
        row = self.enable()
        uri = urlsplit(row["uri"])
        assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
        assert parse_qs(uri.query)["secret"] == [row["secret"]]
        assert (uri.path, parse_qs(uri.query)["issuer"]) == ("/auth.example.com:bob", ["auth.example.com"])
        totp = pyotp.parse_uri(row["uri"])
        assert self.verify(totp.at(int(self.clock.seconds()))).method == "totp"
        assert len(row["recovery_codes"]) == len(set(row["recovery_codes"])) == 10
        status = self.admin.call(wire.SecondFactorStatus, name="bob")
        assert status == {"name": "bob", "enabled": True, "enabled_at": START, "recovery_codes_left": 10}
        assert self.admin.call(wire.SecondFactorStatus, name="alice")["enabled"] is False

    def test_enable_twice_is_refused(self) -> None:
        """
        Re-enrolling would silently break the user's app: disable first.
        """
        first = self.enable()
        assert isinstance(self.admin.fails(wire.EnableSecondFactor, name="bob"), wire.Conflict)
        assert self.server.state.second_factors["bob"].secret == first["secret"]
        assert isinstance(self.admin.fails(wire.EnableSecondFactor, name="nobody"), wire.NotFound)
        assert isinstance(self.admin.fails(wire.DisableSecondFactor, name="alice"), wire.NotFound)

    def test_disable_revokes_sessions_and_grants_not_app_passwords(self) -> None:
        """
        Turning 2FA off is a change of credentials: bob's password session
        and grant go, his app password and what it gave stay.
        """
        session = self.login("bob", PASSWORD)
        grant = self.password_grant("bob").body
        app, _ = self.app_password(user="bob")
        app_session = self.login("bob", app)
        self.enable()
        row = self.admin.call(wire.DisableSecondFactor, name="bob")
        assert (row["enabled"], row["revoked"]) == (False, 3)
        for token in (session, grant["access_token"], grant["refresh_token"]):
            assert not self.active(token)
        assert self.active(app_session) and self.active(app)
        self.assert_error(self.request("GET", USERINFO, headers=bearer(session)), 401, "invalid_token")
        assert "bob" not in self.server.state.second_factors
        # Off, the password logs in again.
        assert self.password_grant("bob").code == 200


class PasswordLoginTests(SecondFactorCase):
    def test_own_password_refused_app_password_accepted(self) -> None:
        """
        With 2FA on, bob's own password no longer gets a token or a
        session (that needs the browser login, which asks for the code); an
        app password does. Alice, without 2FA, is not affected.
        """
        app, _ = self.app_password(user="bob")
        self.enable()
        self.assert_error(self.password_grant("bob"), 400, "invalid_grant")
        refused = self.post(SESSION, json_body={"username": "bob", "password": PASSWORD})
        self.assert_photoprism_error(refused, 401, "invalid_grant")
        assert "two-factor" in refused.body["details"]
        assert self.password_grant("bob", app).code == 200
        assert self.login("bob", app)
        assert self.password_grant("alice").code == 200


class VerifyTests(SecondFactorCase):
    def setUp(self) -> None:
        super().setUp()
        row = self.enable()
        self.secret = row["secret"]
        self.codes = row["recovery_codes"]

    def now(self, steps: int = 0) -> str:
        return self.code_at(self.secret, self.clock.seconds() + steps * TOTP_PERIOD)

    def test_a_code_is_accepted_once(self) -> None:
        code = self.now()
        assert self.verify(code) == second_factor.Verified("bob", "totp", 10)
        assert self.refused(code).error == "invalid_grant"
        # Still refused at the end of its window (one step later).
        self.clock.advance(TOTP_PERIOD)
        assert self.refused(code).error == "invalid_grant"

    def test_a_code_is_used_up_before_its_record_is_durable(self) -> None:
        """
        The record applies to memory when committed: a second login with
        the same code, while the first waits for the disk, is refused.
        """
        code = self.now()
        self.journal.holding = True
        first = self.server.store.commit(second_factor.verify(self.server.ctx, "bob", code, IP))
        self.assertNoResult(first)
        assert self.refused(code).error == "invalid_grant"
        self.journal.release()
        assert self.successResultOf(first).method == "totp"

    def test_a_used_code_is_refused_after_a_restart(self) -> None:
        code = self.now()
        self.verify(code)
        self.restart()
        assert self.server.state.second_factors["bob"].last_step == int(self.clock.seconds()) // TOTP_PERIOD
        assert self.refused(code).error == "invalid_grant"
        self.clock.advance(TOTP_PERIOD)
        assert self.verify(self.now()).method == "totp"

    def test_a_used_code_and_recovery_code_are_refused_after_compaction(self) -> None:
        code = self.now()
        self.verify(code)
        self.verify(self.codes[0])
        self.admin.call(wire.Compact)
        assert not any(p.startswith(b"2fa-code") for p in self.journal.payloads)
        self.restart()
        assert self.refused(code).error == "invalid_grant"
        assert self.refused(self.codes[0]).error == "invalid_grant"
        assert self.verify(self.codes[1]).recovery_codes_left == 8

    def test_one_step_of_drift_either_way(self) -> None:
        """
        The codes of the step before and after are accepted; two steps off
        are not.
        """
        for steps in (2, -2):
            assert self.refused(self.now(steps)).error == "invalid_grant"
        assert self.verify(self.now(-1)).method == "totp"
        # A later step after an earlier one is fine; the reverse is not.
        assert self.verify(self.now(1)).method == "totp"
        assert self.refused(self.now(0)).error == "invalid_grant"

    def test_spaces_and_dashes_do_not_matter(self) -> None:
        code = self.now()
        assert self.verify(f" {code[:3]} {code[3:]} ").method == "totp"
        assert self.verify(self.codes[1].upper().replace("-", " ")).method == "recovery"

    def test_a_recovery_code_is_accepted_once(self) -> None:
        assert self.verify(self.codes[0]) == second_factor.Verified("bob", "recovery", 9)
        assert self.refused(self.codes[0]).error == "invalid_grant"
        assert self.admin.call(wire.SecondFactorStatus, name="bob")["recovery_codes_left"] == 9
        self.restart()
        assert self.refused(self.codes[0]).error == "invalid_grant"
        assert self.verify(self.codes[1]).recovery_codes_left == 8

    def test_users_without_it_and_wrong_codes(self) -> None:
        for name, code in (("alice", self.now()), ("nobody", self.now()), ("bob", "000000x"),
                           ("bob", ""), ("bob", "é" * 20)):
            assert self.refused(code, name).error == "invalid_grant", (name, code)
        assert self.server.state.second_factors["bob"].last_step == 0

    def test_rate_limited_per_user(self) -> None:
        """
        After the user's burst of failures, from any addresses, even the
        right code is refused (429) until a failure is forgiven.
        """
        for n in range(SECOND_FACTOR_USER.burst):
            assert self.refused("000000", ip=f"198.51.100.{n}").error == "invalid_grant"
        limited = self.refused(self.now(), ip="203.0.113.9")
        assert (limited.status, limited.error) == (429, "too_many_requests")
        assert int(limited.headers["Retry-After"]) == SECOND_FACTOR_USER.interval
        self.clock.advance(SECOND_FACTOR_USER.interval)
        assert self.verify(self.now()).method == "totp"

    def test_rate_limited_per_source(self) -> None:
        """
        One address failing for many users is stopped too.
        """
        for n in range(SECOND_FACTOR_IP.burst):
            name = f"user{n}"
            self.add_user(name, PASSWORD)
            self.enable(name)
            assert self.refused("000000", name).error == "invalid_grant"
        assert self.refused(self.now()).status == 429
        assert self.verify(self.now(), ip="203.0.113.9").method == "totp"

    def test_audited_without_the_secret(self) -> None:
        events = EventLoggingObserver()
        globalLogPublisher.addObserver(events)
        self.addCleanup(globalLogPublisher.removeObserver, events)
        self.admin.call(wire.DisableSecondFactor, name="bob")
        row = self.enable()
        self.verify(self.code_at(row["secret"], self.clock.seconds()))
        self.verify(row["recovery_codes"][0])
        self.refused(row["recovery_codes"][0])
        self.refused("123456")
        self.admin.call(wire.SecondFactorStatus, name="bob")
        self.admin.call(wire.DisableSecondFactor, name="bob")
        text = json.dumps([{k: str(v) for k, v in e.items()} for e in events])
        audited = [e.get("audit_event") for e in events if e.get("log_namespace") == "oauthd.audit"]
        assert {"user.2fa.enable", "2fa.verify", "user.2fa.disable"} <= set(audited), audited
        for secret in (row["secret"], *row["recovery_codes"], row["uri"]):
            assert secret not in text and secret.replace("-", "") not in text


# ---------------------------------------------------------------------------
# The records and the state.

FACTOR = SecondFactor("bob", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", frozenset({"ab" * 32, "cd" * 32}), START)


def test_the_secret_is_not_in_reprs() -> None:
    enrollment = Enrollment(FACTOR, f"otpauth://totp/x:bob?secret={FACTOR.secret}", ("abcd-efgh",))
    for shown in (repr(FACTOR), repr(SecondFactorEnabled(FACTOR)), repr(enrollment)):
        assert FACTOR.secret not in shown and "abcd" not in shown and "bob" in shown


def test_state_applies_and_compacts_second_factors() -> None:
    """
    Records apply in order; a snapshot keeps each enrollment with the
    recovery codes left and its last step while still in its window, and
    nothing of a removed user.
    """
    state = State()
    now = START
    step = now // TOTP_PERIOD
    state.apply([UserPut(User("bob")), UserPut(User("carol")), SecondFactorEnabled(FACTOR),
                 SecondFactorEnabled(SecondFactor("carol", "S", frozenset(), START)),
                 SecondFactorEnabled(SecondFactor("nobody", "S", frozenset(), START)),
                 TotpStepUsed("bob", step), TotpStepUsed("bob", step - 5),
                 RecoveryCodeUsed("bob", "ab" * 32), RecoveryCodeUsed("bob", "ab" * 32),
                 UserRemoved("carol")], now)
    assert list(state.second_factors) == ["bob"]
    assert state.second_factors["bob"].last_step == step
    assert state.second_factors["bob"].recovery == {"cd" * 32}

    def rebuilt(at: int) -> tuple[State, list[bytes]]:
        payloads = list(state.snapshot(at))
        fresh = State()
        fresh.load(payloads, at)
        return fresh, [p for p in payloads if p.startswith(b"2fa")]

    fresh, payloads = rebuilt(now + TOTP_PERIOD)
    assert fresh.second_factors == state.second_factors
    assert len(payloads) == 2
    # Two steps on, a code of the used step is refused anyway: its record
    # is dead.
    fresh, payloads = rebuilt(now + 2 * TOTP_PERIOD)
    assert payloads == [encode(SecondFactorEnabled(SecondFactor("bob", FACTOR.secret,
                                                                 frozenset({"cd" * 32}), START)))]
    state.apply([SecondFactorDisabled("bob")], now)
    assert not state.second_factors and not [p for p in state.snapshot(now) if p.startswith(b"2fa")]


# ---------------------------------------------------------------------------
# oauthctl


@pytest_twisted.ensureDeferred
async def test_oauthctl_users_2fa(tmp_path: Path) -> None:
    """
    C{users 2fa enable} prints the URI, a QR code and ten recovery codes,
    once; C{status} and C{disable} say what they did; enabling twice is an
    error.
    """
    live = Live(tmp_path)
    try:
        await live.ok("users", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n")
        out = (await live.ok("users", "2fa", "enable", "bob")).out
        (uri,) = [line for line in out.splitlines() if line.startswith("otpauth://totp/")]
        assert sum(1 for line in out.splitlines() if "\u2588" in line) > 10  # the QR code
        codes = re.findall(r"^    ([0-9a-z]{4}(?:-[0-9a-z]{4}){3})$", out, re.MULTILINE)
        assert len(set(codes)) == 10
        ctx = live.server.ctx
        code = pyotp.parse_uri(uri).at(ctx.now())
        assert second_factor.verify(ctx, "bob", code, IP).answer.method == "totp"
        assert second_factor.verify(ctx, "bob", codes[0], IP).answer.method == "recovery"
        status = (await live.ok("users", "2fa", "status", "bob")).out
        assert re.search(r"Two-Factor\s+on", status) and re.search(r"Recovery Codes Left\s+10", status)
        again = await live.ctl("users", "2fa", "enable", "bob")
        assert again.code == 1 and "disable it first" in again.err
        off = (await live.ok("users", "2fa", "disable", "bob")).out
        assert off.startswith("Turned off two-factor authentication for bob; revoked 0 tokens")
        status_json = (await live.ok("users", "2fa", "status", "bob", "--json")).json()
        assert status_json == {"name": "bob", "enabled": False, "enabled_at": 0, "recovery_codes_left": 0}
        enabled = (await live.ok("users", "2fa", "enable", "bob", "--json")).json()
        assert set(enabled) == {*status_json, "uri", "secret", "recovery_codes"}
        assert (await live.ctl("users", "2fa", "enable", "nobody")).code == 1
    finally:
        await live.stop()
