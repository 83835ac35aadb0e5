"""
The control socket's changes and their audit events: each change's event is
committed with its records, on the audit sink's durable path, so no change
is ever on disk without its event; and a change made whose event the trail
could not write is answered as such, not as a change refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from twisted.internet.defer import Deferred, succeed
from twisted.protocols import amp
from zope.interface import implementer

from oauthd.control import wire
from oauthd.interfaces import AuditedEvent, IAuditSink
from oauthd.protocol.issuing import mint
from oauthd.services.audit import RETRY_SECONDS, TRAIL_NAME, verify_trail
from oauthd.state.authz_records import Consent, ConsentGranted
from oauthd.state.entities import ACCESS, REFRESH
from oauthd.testing import HeldJournal
from tests.helpers import change
from tests.test_audit_limits import control_with_trail, lines_of
from tests.test_control import ADMIN, Harness


@implementer(IAuditSink)
class RecordingSink:
    """
    An audit sink that notes which path each event takes and, for one
    described as a change, how many journal appends were still waiting to be
    acknowledged when it came.
    """

    failure: str | None = None

    def __init__(self, journal: HeldJournal) -> None:
        self.journal = journal
        self.changes: list[tuple[str, str, dict[str, str], int]] = []
        self.batched: list[tuple[str, str, dict[str, str]]] = []

    def record_change(self, event: str, outcome: str, fields: Mapping[str, str]) -> Deferred[None]:
        self.changes.append((event, outcome, dict(fields), len(self.journal.held)))
        return succeed(None)

    def record_changes(self, events: Sequence[AuditedEvent]) -> None:
        for e in events:
            self.record_change(e.event, e.outcome, e.fields)

    def __call__(self, event: str, outcome: str, fields: Mapping[str, str]) -> None:
        self.batched.append((event, outcome, dict(fields)))


class World:
    """
    A harness with alice, a client she owns holding a grant of hers (an
    access and a refresh token) she consented to, and a recording sink.
    """

    def __init__(self) -> None:
        self.journal = HeldJournal()
        self.harness = Harness(journal=self.journal)
        self.sink = RecordingSink(self.journal)
        self.harness.server.store.audit_sink = self.sink
        self.link = self.harness.connect()
        self.link.call(wire.AddUser, name="alice", password="correct horse")
        self.client_id = self.link.call(wire.AddClient, name="web", user="alice")["id"]
        ctx = self.harness.server.ctx
        self.grant = [
            mint(ctx, kind, scope="*", lifetime=600, client_id=self.client_id, user="alice",
                 grant="g1")
            for kind in (ACCESS, REFRESH)
        ]
        consent = Consent("alice", self.client_id, "*", ctx.now())
        self.harness.server.store.commit(
            change([*(m.record for m in self.grant), ConsentGranted(consent)]))

    def held(
        self, command: type[amp.Command], **arguments: Any,
    ) -> tuple[dict[str, Any], list[Any]]:
        """
        Send C{command} while the journal holds its appends: the change's
        event as the sink saw it then, and the reply once the journal
        acknowledges.
        """
        self.sink.changes.clear()
        self.journal.holding = True
        asked = self.link.ask(command, **arguments)
        assert asked == [], "answered before its records were durable"
        assert len(self.journal.held) == 1
        (seen,) = self.sink.changes
        event, outcome, fields, pending = seen
        # The event reached the durable path while its own records' append
        # was still waiting: the same commit, not one after it.
        assert (outcome, pending, fields["peer_uid"]) == ("ok", 1, str(ADMIN.uid))
        self.journal.holding = False
        self.journal.release()
        self.link.pump.flush()
        assert isinstance(asked[0], dict), asked
        assert not [b for b in self.sink.batched if b[0] == event]
        return {"event": event, **fields}, asked


Case = Callable[[World], tuple[type[amp.Command], dict[str, Any], dict[str, str]]]

CASES: dict[str, Case] = {
    "client.add": lambda w: (
        wire.AddClient, {"name": "more"}, {"event": "client.add", "name": "more"}),
    "client.update": lambda w: (
        wire.ModifyClient, {"id": w.client_id, "enabled": False},
        {"event": "client.update", "client": w.client_id, "changed": "enabled", "revoked": "2"}),
    "client.remove": lambda w: (
        wire.RemoveClient, {"id": w.client_id},
        {"event": "client.remove", "client": w.client_id, "revoked": "2"}),
    "user.add": lambda w: (
        wire.AddUser, {"name": "bob", "password": "battery staple"},
        {"event": "user.add", "user": "bob"}),
    "user.password": lambda w: (
        wire.SetPassword, {"name": "alice", "password": "battery staple"},
        {"event": "user.password", "user": "alice", "revoked": "2", "app_passwords": "kept"}),
    "user.update": lambda w: (
        wire.ModifyUser, {"name": "alice", "disabled": True},
        {"event": "user.update", "user": "alice", "changed": "disabled", "revoked": "2"}),
    "user.remove": lambda w: (
        wire.RemoveUser, {"name": "alice"},
        {"event": "user.remove", "user": "alice", "revoked": "2", "clients": w.client_id}),
    "user.2fa.enable": lambda w: (
        wire.EnableSecondFactor, {"name": "alice"}, {"event": "user.2fa.enable", "user": "alice"}),
    "user.2fa.disable": lambda w: (
        wire.DisableSecondFactor, {"name": "alice"},
        {"event": "user.2fa.disable", "user": "alice", "revoked": "2"}),
    "token.issue": lambda w: (
        wire.AddToken, {"label": "t", "scope": "*", "lifetime": 60},
        {"event": "token.issue", "kind": ACCESS, "via": "control"}),
    "token.revoke": lambda w: (
        wire.RemoveToken, {"reference": w.grant[0].token.handle},
        {"event": "token.revoke", "token": w.grant[0].token.handle, "revoked": "1",
         "via": "control"}),
    "user.consent.revoke": lambda w: (
        wire.RevokeConsent, {"name": "alice", "client_id": w.client_id},
        {"event": "user.consent.revoke", "user": "alice", "client": w.client_id, "revoked": "2"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_control_change_commits_its_event_with_its_records(name: str) -> None:
    """
    Every change over the control socket hands its event, with its fields
    (the tokens it revokes counted before the commit), to the audit sink's
    durable path in the same commit as its records, and answers once both
    are durable.
    """
    world = World()
    if name == "user.2fa.disable":
        world.link.call(wire.EnableSecondFactor, name="alice")
    command, arguments, expected = CASES[name](world)
    event, (reply,) = world.held(command, **arguments)
    assert {key: event.get(key) for key in expected} == expected
    if "revoked" in expected:
        assert reply["revoked"] == int(expected["revoked"])
    if name == "user.2fa.enable":
        assert event["recovery_codes"] == str(len(reply["recovery_codes"]))


def test_a_change_made_whose_event_could_not_be_written_says_so(tmp_path: Path) -> None:
    """
    The disk fills right after AddUser's records are durable, while its
    event is being written: the reply says the change was made and the
    daemon needs attention (not that the audit trail refused it), no failed
    attempt is audited, a retry finds the user, and once space returns the
    trail writes the kept event and its chain verifies.
    """
    harness, pool, disk, trail = control_with_trail(tmp_path)
    link = harness.connect()
    asked = link.ask(wire.AddUser, name="bob", password="correct horse")
    assert asked == [] and "bob" in harness.server.state.users
    disk.full = True
    while not asked:
        pool.run_all()
        harness.clock.advance(0)
        link.pump.flush()
    (error,) = asked
    assert error.check(wire.StorageError), error
    message = str(error.value)
    assert message.startswith("the change was made but its audit event could not be written (")
    assert message.endswith("); the daemon needs attention") and "No space left" in message
    assert "bob" in harness.server.state.users
    assert isinstance(link.fails(wire.AddUser, name="bob", password="correct horse"), wire.Conflict)
    disk.full = False
    harness.clock.advance(RETRY_SECONDS)
    pool.run_all()
    # The change's own event, kept and written once space returned; the
    # only failure is the retry's.
    user_add = [(e["outcome"], e.get("reason"), e["peer_uid"])
                for e in lines_of(str(tmp_path / TRAIL_NAME)) if e["event"] == "user.add"]
    assert user_add == [("ok", None, str(ADMIN.uid)),
                        ("failed", "user bob already exists", str(ADMIN.uid))]
    assert verify_trail(str(tmp_path)).broken is None
    trail.stopService()
