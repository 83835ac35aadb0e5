"""
The sign-in pages while the event log cannot take a change (the shared log's
PostgreSQL is down, say): 503 with Retry-After, as the API answers, and the
login page again rather than an error.
"""

from __future__ import annotations

from tests.page_case import PageCase


class UnavailableTests(PageCase):
    def test_login_while_the_log_refuses_changes(self) -> None:
        login = self.authorize()
        self.successResultOf(self.journal.close())
        refused = self.log_in(login)
        assert (refused.code, self.kind(refused)) == (503, "login")
        assert refused.header("retry-after") == "1"
