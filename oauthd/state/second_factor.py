"""
Users' second factors (TOTP) in the in-memory state: applying their records
and writing the live ones into a snapshot. L{oauthd.state.model.State} holds
the table, C{second_factors}, by user name.

As for every record, applying one is idempotent and one naming something
absent does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import attrs

from oauthd.state.entities import TOTP_PERIOD, SecondFactor, User
from oauthd.state.records import (
    RecoveryCodeUsed,
    SecondFactorDisabled,
    SecondFactorEnabled,
    SecondFactorRecord,
    TotpStepUsed,
    encode,
)

SecondFactors = dict[str, SecondFactor]


def apply(table: SecondFactors, users: Mapping[str, User], record: SecondFactorRecord) -> None:
    """
    Apply one second-factor record to C{table}.
    """
    match record:
        case SecondFactorEnabled(factor=factor):
            if factor.user in users:
                table[factor.user] = factor
        case SecondFactorDisabled(user=user):
            table.pop(user, None)
        case TotpStepUsed(user=user, step=step):
            held = table.get(user)
            if held is not None and step > held.last_step:
                table[user] = attrs.evolve(held, last_step=step)
        case RecoveryCodeUsed(user=user, digest=digest):
            held = table.get(user)
            if held is not None and digest in held.recovery:
                table[user] = attrs.evolve(held, recovery=held.recovery - {digest})


def snapshot(table: SecondFactors, now: float) -> Iterator[bytes]:
    """
    Payloads that rebuild C{table}: each enrollment with the recovery codes
    left, and its last used TOTP step while a code of that step could still
    be accepted (one step of clock drift is); older steps are refused
    anyway, so their records are dead.
    """
    oldest_live = int(now) // TOTP_PERIOD - 1
    for factor in list(table.values()):
        yield encode(SecondFactorEnabled(factor))
        if factor.last_step >= oldest_live:
            yield encode(TotpStepUsed(factor.user, factor.last_step))
