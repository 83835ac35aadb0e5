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
        async def work() -> tuple[Consent, int]:
            decision = revoke_consent(self.ctx, name, client_id)
            before = self.session.live_tokens(user=name)
            consent = await self._commit(decision)
            return consent, before - self.session.live_tokens(user=name)

        fields: dict[str, object] = {"user": name, "client": client_id}
        consent, revoked = await self._change("user.consent.revoke", fields, work())
        await self._audited("user.consent.revoke", "ok", revoked=revoked or "", **fields)
        return {"client_id": consent.client_id, "scope": consent.scope,
                "granted_at": consent.granted_at, "revoked": revoked}
