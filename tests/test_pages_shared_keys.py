"""
A sign-in form is bound to its request under a key every node shares and a
restart keeps (L{oauthd.web.pages.security.FormKeys}): a form shown by one
node is taken by another, and one shown before a restart after it.
"""

from __future__ import annotations

from typing import Any

from oauthd.eventlog import MemorySharedLog
from tests.oauth_helpers import PASSWORD
from tests.page_case import REDIRECT, PageCase
from tests.test_multinode import Node


class Delivering:
    """
    A node's HTTP client whose requests are answered once every node
    delivered everything.
    """

    def __init__(self, node: Node, shared: MemorySharedLog) -> None:
        self._node = node
        self._shared = shared

    def request(self, *args: Any, **kwargs: Any) -> Any:
        sent = self._node.treq.request(*args, **kwargs)
        self._shared.deliver()
        self._node.treq.flush()
        return sent


class RestartTests(PageCase):
    def test_form_shown_before_a_restart_is_taken_after(self) -> None:
        login = self.authorize()
        self.restart()
        self.assertEqual(self.kind(self.log_in(login)), "consent")


class AcrossNodesTests(PageCase):
    """
    The pages of two nodes, A and B, over one shared log.
    """

    def setUp(self) -> None:
        super().setUp()
        self.shared = MemorySharedLog()
        self.a, self.b = Node(self.shared, self.clock), Node(self.shared, self.clock)
        self.server = self.a.server
        self.show_on(self.a)
        added = self.server.add_user("alice", PASSWORD)
        self.shared.deliver()
        self.successResultOf(added)
        added = self.server.add_client(
            "Gallery", type="public", scope="openid profile photos albums",
            grant_types=("authorization_code", "refresh_token"), redirect_uris=(REDIRECT,))
        self.shared.deliver()
        self.gallery, _ = self.successResultOf(added)

    def show_on(self, node: Node) -> None:
        self.treq = Delivering(node, self.shared)  # type: ignore[assignment]

    def test_login_shown_on_a_posted_to_b(self) -> None:
        login = self.authorize()
        self.show_on(self.b)
        consent = self.log_in(login)
        self.assertEqual(self.kind(consent), "consent")
        self.show_on(self.a)
        self.assertEqual(self.kind(self.approve(consent)), "redirect")

    def test_edited_form_still_refused(self) -> None:
        login = self.authorize(prompt="login")
        self.show_on(self.b)
        form = login.page.form.filled(None, username="alice", password=PASSWORD)
        form.pop("prompt")
        self.assertEqual(self.browse("POST", "/api/v1/oauth/authorize", form).code, 403)
