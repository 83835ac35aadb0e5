"""
Turning a user's second factor (TOTP) on and off, and its status.

Enabling a user who has it already is refused: a new secret would silently
stop the authenticator app the user has from working, so an admin disables
it first (which revokes the user's sessions and grants) and enables it again.
"""

from __future__ import annotations

from attrs import frozen

from oauthd.protocol.admin.users import login_revocations, user
from oauthd.protocol.browser import session_ends
from oauthd.protocol.context import Context
from oauthd.protocol.errors import Conflict, NotFound
from oauthd.protocol.second_factor import (
    RECOVERY_CODES,
    new_recovery_code,
    new_secret,
    provisioning_uri,
    recovery_digest,
)
from oauthd.state.decision import Decision
from oauthd.state.entities import SecondFactor
from oauthd.state.records import SecondFactorDisabled, SecondFactorEnabled


@frozen(repr=False)
class Enrollment:
    """
    What enabling gives the admin, once: the C{otpauth://} URI (which holds
    the secret) for the user's authenticator app, and the recovery codes.
    """

    factor: SecondFactor
    uri: str
    recovery_codes: tuple[str, ...]

    def __repr__(self) -> str:
        return f"<Enrollment {self.factor!r}>"


@frozen
class Status:
    """
    A user's second factor, without its secret.

    @ivar enabled_at: 0 if it is off.
    """

    name: str
    enabled: bool
    enabled_at: int
    recovery_codes_left: int


def status(ctx: Context, name: str) -> Status:
    """
    Whether user C{name} has turned on TOTP, since when, and how many
    recovery codes are left.
    """
    user(ctx, name)
    factor = ctx.state.second_factors.get(name)
    if factor is None:
        return Status(name, False, 0, 0)
    return Status(name, True, factor.enabled_at, len(factor.recovery))


def enable(ctx: Context, name: str) -> Decision[Enrollment]:
    """
    Turn on TOTP for user C{name}: a new secret and L{RECOVERY_CODES}
    recovery codes, stored as their digests. The user's browser sessions
    and half logins end: they were made with the password alone.

    @raise Conflict: if the user has it already.
    """
    user(ctx, name)
    if name in ctx.state.second_factors:
        raise Conflict(f"user {name} has two-factor authentication already; disable it first")
    codes = tuple(new_recovery_code(ctx) for _ in range(RECOVERY_CODES))
    factor = SecondFactor(name, new_secret(ctx), frozenset(map(recovery_digest, codes)), ctx.now())
    return Decision(Enrollment(factor, provisioning_uri(ctx, factor), codes),
                    [*session_ends(ctx, name), SecondFactorEnabled(factor)])


def disable(ctx: Context, name: str) -> Decision[Status]:
    """
    Turn off TOTP for user C{name}, revoking what a login gave, as a new
    password does (L{login_revocations}: app passwords stay).

    @raise NotFound: if the user does not have it.
    """
    user(ctx, name)
    if name not in ctx.state.second_factors:
        raise NotFound(f"user {name} does not have two-factor authentication")
    # The revocations go first: a crash between the records leaves the
    # second factor on with nothing issued.
    return Decision(Status(name, False, 0, 0),
                    [*login_revocations(ctx, name), SecondFactorDisabled(name)])
