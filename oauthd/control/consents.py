"""
The responders to the consent commands: the clients a user let have scopes
at the authorization endpoint, and revoking one
(L{oauthd.protocol.consents}).
"""

from __future__ import annotations

import json

from oauthd.control.session import Responders
from oauthd.control.wire import ListConsents, RevokeConsent
from oauthd.protocol.consents import revoke_consent, user_consents
from oauthd.protocol.issuing import revoked_count
from oauthd.state.authz_records import Consent


class ConsentResponders(Responders):
    """
    Users' consents.
    """

    @ListConsents.responder
    def list_consents(self, name: str) -> dict[str, object]:
        clients = self.state.clients
        rows = [
            {"client_id": c.client_id, "client_name": getattr(clients.get(c.client_id), "name", ""),
             "scope": c.scope, "granted_at": c.granted_at}
            for c in user_consents(self.ctx, name)
        ]
        return {"rows": json.dumps(rows)}

    @RevokeConsent.responder
    async def revoke(self, name: str, client_id: str) -> dict[str, object]:
        fields: dict[str, object] = {"user": name, "client": client_id}

        async def work() -> tuple[Consent, int]:
            decision = revoke_consent(self.ctx, name, client_id)
            revoked = revoked_count(self.ctx, decision.records)
            consent = await self._commit_audited(
                decision, "user.consent.revoke", revoked=revoked or "", **fields)
            return consent, revoked

        consent, revoked = await self._change("user.consent.revoke", fields, work())
        return {"client_id": consent.client_id, "scope": consent.scope,
                "granted_at": consent.granted_at, "revoked": revoked}
