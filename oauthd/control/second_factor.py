"""
The responders to the second-factor commands: turning a user's TOTP on and
off, and its status (L{oauthd.protocol.admin.second_factor}).

The enable reply is the only place the secret leaves the daemon: it is
never audited or logged, nor are the recovery codes.
"""

from __future__ import annotations

from oauthd.control.session import Responders
from oauthd.control.wire import DisableSecondFactor, EnableSecondFactor, SecondFactorStatus
from oauthd.protocol.admin import second_factor
from oauthd.protocol.admin.second_factor import Enrollment, Status
from oauthd.protocol.issuing import revoked_count


def _status_row(status: Status) -> dict[str, object]:
    return {
        "name": status.name, "enabled": status.enabled, "enabled_at": status.enabled_at,
        "recovery_codes_left": status.recovery_codes_left,
    }


class SecondFactorResponders(Responders):
    """
    A user's second factor (TOTP).
    """

    @EnableSecondFactor.responder
    async def enable(self, name: str) -> dict[str, object]:
        async def work() -> Enrollment:
            decision = second_factor.enable(self.ctx, name)
            return await self._commit_audited(
                decision, "user.2fa.enable", user=name,
                recovery_codes=len(decision.answer.recovery_codes))

        enrollment = await self._change("user.2fa.enable", {"user": name}, work())
        return {
            **_status_row(second_factor.status(self.ctx, name)),
            "uri": enrollment.uri, "secret": enrollment.factor.secret,
            "recovery_codes": list(enrollment.recovery_codes),
        }

    @DisableSecondFactor.responder
    async def disable(self, name: str) -> dict[str, object]:
        async def work() -> tuple[Status, int]:
            decision = second_factor.disable(self.ctx, name)
            revoked = revoked_count(self.ctx, decision.records)
            status = await self._commit_audited(
                decision, "user.2fa.disable", user=name, revoked=revoked or "")
            return status, revoked

        status, revoked = await self._change("user.2fa.disable", {"user": name}, work())
        return {**_status_row(status), "revoked": revoked}

    @SecondFactorStatus.responder
    def status(self, name: str) -> dict[str, object]:
        return _status_row(second_factor.status(self.ctx, name))
