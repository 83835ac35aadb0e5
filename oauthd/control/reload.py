"""
The responder to C{oauthctl reload} (L{oauthd.reload} does the reload).
"""

from __future__ import annotations

import json

from oauthd.config import ConfigError
from oauthd.control import wire
from oauthd.control.session import Responders
from oauthd.control.wire.reload import Reload


class ReloadResponders(Responders):
    """
    Reloading the configuration.
    """

    @Reload.responder
    def reload(self) -> dict[str, object]:
        reload = self.session.reload
        if reload is None:
            raise wire.ControlError("this daemon cannot reload its configuration")
        try:
            outcome = reload(via="control", peer_uid=self.session.peer_uid)
        except ConfigError as e:
            raise wire.InvalidValue(f"configuration not reloaded, the running one is kept: {e}") from None
        return {"changed": json.dumps([list(change) for change in outcome.changed]),
                "restart": json.dumps(list(outcome.restart))}
