"""
The second factor of a browser login: a TOTP code (RFC 6238, by C{pyotp})
or one of the user's single-use recovery codes.

A user turns it on with C{oauthctl users 2fa enable}
(L{oauthd.protocol.admin.second_factor}); from then on the user's own
password no longer logs in at the token endpoint or C{/api/v1/session}
(only app passwords do, L{oauthd.protocol.login}), and a browser login,
after the password, asks for a code and calls L{verify}::

    # The password first, through login.login(..., browser=True), which
    # applies the login rate limits and pacing (oauthd.protocol.browser's
    # password_step does this); never login.check_password alone, which
    # has none of them. Then, for a user with a second factor, with no
    # await in between:
    verified = await store.commit(second_factor.verify(ctx, user.name, code, ip))

L{verify} raises L{errors.OAuthError} (C{invalid_grant}, or 429 with
C{Retry-After}) for a code that does not let the user in; its C{context}
holds the audit fields of the refusal.

A TOTP code is accepted for the current 30-second step and one step either
side (clock drift), and only for a step later than the last one accepted:
a code, once used, is refused for the rest of its window, and so is any
older one. The step used is a journal record, so that holds across
restarts.

Failures are rate limited per user and per source address
(L{limits.SECOND_FACTOR_USER}, whose docstring states the guessing bound,
and L{limits.SECOND_FACTOR_IP}); while a bucket is empty every code is
refused before it is checked, a right one too, since a code can be guessed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlsplit

import pyotp
from attrs import frozen

from oauthd.protocol import errors
from oauthd.protocol.context import Context
from oauthd.protocol.limits import SECOND_FACTOR_IP, SECOND_FACTOR_USER, guard, ip_key, refuse
from oauthd.protocol.tokens import random_string
from oauthd.state.decision import Decision, audit
from oauthd.state.entities import TOTP_PERIOD, SecondFactor
from oauthd.state.records import Record, RecoveryCodeUsed, TotpStepUsed

TOTP_DIGITS = 6
SECRET_BYTES = 20
"""
The TOTP secret's size: 160 bits, the HMAC-SHA1 key size RFC 4226 advises.
"""

RECOVERY_CODES = 10
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
"""
Crockford's base32 alphabet (no i, l, o or u), lower case.
"""
RECOVERY_LENGTH = 16
"""
Characters in a recovery code: 80 random bits, shown in groups of four.
"""

WRONG_CODE = "the code is wrong"


@frozen
class Verified:
    """
    A second factor accepted.

    @ivar method: C{"totp"} or C{"recovery"}.
    @ivar recovery_codes_left: the user's unused recovery codes, after this
        one.
    """

    user: str
    method: str
    recovery_codes_left: int


def new_secret(ctx: Context) -> str:
    """
    A new TOTP secret, base32 without padding, from the context's randomness.
    """
    return base64.b32encode(ctx.random_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def new_recovery_code(ctx: Context) -> str:
    """
    A new recovery code, as the user is given it: C{xxxx-xxxx-xxxx-xxxx}.
    """
    code = random_string(RECOVERY_ALPHABET, RECOVERY_LENGTH, ctx.random_bytes)
    return "-".join(code[i:i + 4] for i in range(0, RECOVERY_LENGTH, 4))


def normalise(code: str) -> str:
    """
    A code as typed, without spaces or dashes, in lower case, with the
    letters Crockford's base32 reads as digits read so.
    """
    text = "".join(code.split()).replace("-", "").lower()
    return text.translate(_LOOKALIKES)


_LOOKALIKES = str.maketrans({"o": "0", "i": "1", "l": "1"})


def recovery_digest(code: str) -> str:
    """
    How a recovery code is stored: the SHA-256 hex digest of its normal form.

    Recovery codes are generated here with 80 bits of entropy, so a fast
    hash is as safe as a slow one: no dictionary applies and a stolen digest
    cannot be reversed; and it lets a code be found by its digest.
    """
    return hashlib.sha256(normalise(code).encode("ascii", "replace")).hexdigest()


def provisioning_uri(ctx: Context, factor: SecondFactor) -> str:
    """
    The C{otpauth://} URI an authenticator app enrolls from (its QR code):
    it holds the secret.
    """
    issuer = urlsplit(ctx.config.issuer).hostname or "oauthd"
    return pyotp.TOTP(factor.secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
        name=factor.user, issuer_name=issuer)


def totp_step(ctx: Context) -> int:
    """
    The current TOTP time step.
    """
    return ctx.now() // TOTP_PERIOD


def verify(ctx: Context, user_name: str, code: str, ip: str, **context: object) -> Decision[Verified]:
    """
    Check the second factor C{code} that C{user_name} gave from C{ip}, once
    the user's password was right: a 6-digit TOTP code, or a recovery code
    (spaces, dashes and case do not matter).

    The caller commits the decision at once, before anything else can run
    (L{oauthd.state.store.Store.commit} applies its record to memory at
    once): the record marks the code used, so a second request with the same
    code is refused. Only then is the login complete.

    @param context: audit fields for a refusal (client, ...).
    @return: a decision answering L{Verified}: it records the TOTP step or
        the recovery code used, and audits C{2fa.verify}.
    @raise OAuthError: C{invalid_grant} if the code is wrong, already used,
        or the user has no second factor (or is absent or disabled);
        C{too_many_requests} (429) while the user or the address has failed
        too often.
    """
    factor = ctx.state.second_factors.get(user_name)
    user = ctx.state.users.get(user_name)
    known = user_name if user is not None else ""
    charges = [(SECOND_FACTOR_IP, ip_key(ip)), (SECOND_FACTOR_USER, user_name[:64])]
    guard(ctx.limiter, charges, ip, user=known, **context)

    def wrong(reason: str) -> errors.OAuthError:
        return refuse(ctx.limiter, errors.invalid_grant(WRONG_CODE), ip, charges,
                      user=known, reason=reason, **context)

    if factor is None or user is None or user.disabled:
        raise wrong("no second factor")
    typed = normalise(code)
    record: Record
    if len(typed) == TOTP_DIGITS and typed.isascii() and typed.isdigit():
        step = _matching_step(ctx, factor, typed)
        if step is None:
            raise wrong("wrong TOTP code")
        if step <= factor.last_step:
            raise wrong("TOTP code already used")
        method, record, left = "totp", TotpStepUsed(user_name, step), len(factor.recovery)
    else:
        digest = recovery_digest(typed)
        if digest not in factor.recovery:
            raise wrong("wrong or used recovery code")
        method, record, left = "recovery", RecoveryCodeUsed(user_name, digest), len(factor.recovery) - 1
    return Decision(
        Verified(user_name, method, left), [record],
        [audit("2fa.verify", "ok", user=user_name, method=method, ip=ip,
               recovery_codes_left=left if method == "recovery" else "", **context)],
        context={"user": user_name, "ip": ip, **context},
        # Used first on another node sharing the log.
        lost=lambda: Decision(Verified(user_name, method, left), refusal=errors.deny(
            errors.invalid_grant(WRONG_CODE), ip=ip, user=known, reason="code used elsewhere", **context)),
    )


def _matching_step(ctx: Context, factor: SecondFactor, code: str) -> int | None:
    """
    The latest step of the accepted window (one step either side of now)
    whose code is C{code}, preferring one not used yet; C{None} if none is.
    """
    totp = pyotp.TOTP(factor.secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD)
    now = totp_step(ctx)
    matches = [step for step in (now + 1, now, now - 1)
               if hmac.compare_digest(totp.generate_otp(step), code)]
    fresh = [step for step in matches if step > factor.last_step]
    chosen = fresh or matches
    return chosen[0] if chosen else None
