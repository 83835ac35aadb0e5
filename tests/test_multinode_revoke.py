"""
A revocation sent to a node that has not yet read the token from the shared
log (issued on another node just now) waits for the log, then revokes it:
it is not answered 200 with nothing revoked.
"""

from __future__ import annotations

from tests.oauth_helpers import PASSWORD, REVOKE, TOKEN
from tests.test_multinode import MultiNodeCase


class RevokedWhereNotYetSeenTests(MultiNodeCase):

    def test_revoked_on_b_before_b_read_it(self) -> None:
        """
        A issues a token; B, which has not delivered it yet, is asked to
        revoke it: B waits for the log, and the token is inactive on both.
        """
        sent = self.a.send(TOKEN, {"grant_type": "password", "username": "alice", "password": PASSWORD},
                           (self.client.id, self.secret))
        self.a.log.step()
        code, body = self.read(self.a, sent)
        self.assertEqual(code, 200, body)
        asked = self.b.send(REVOKE, {"token": body["access_token"]}, (self.client.id, self.secret))
        self.b.treq.flush()
        self.assertNoResult(asked)
        self.shared.deliver()  # B has the token, and revokes it
        self.shared.deliver()  # the revocation, on every node
        self.assertEqual(self.read(self.b, asked)[0], 200)
        self.assertFalse(self.active(self.a, body["access_token"]))
        self.assertFalse(self.active(self.b, body["access_token"]))
