"""
Subject ids (issue 15): every user has one in PhotoPrism's UID shape, given
at creation or, for a journal from before them, once on the first start.
"""

from __future__ import annotations

import re

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from oauthd import tap
from oauthd.protocol.admin.users import update_user
from oauthd.protocol.subjects import is_uid
from oauthd.state.entities import User
from oauthd.state.records import UserPut, encode
from oauthd.testing import HeldJournal, MemoryServer

PHOTOPRISM_UID = re.compile(r"^u[0-9a-z]{15}$")
"""
What PhotoPrism's C{rnd.IsUID(s, 'u')} accepts: 16 characters, the prefix,
then lowercase letters and digits.
"""


class MigrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def start(self, journal: HeldJournal) -> MemoryServer:
        """
        What the daemon does at start about subject ids (L{tap.build_service}
        calls L{tap.give_subject_ids} once the journal is replayed), on a
        server over C{journal}.
        """
        server = MemoryServer.build(log=journal)
        tap.give_subject_ids(server.store, server.ctx)
        return server

    def migrations_logged(self) -> int:
        return sum("stable subject id" in formatEvent(e) for e in self.events)

    def test_old_journal_gets_subject_ids_once(self) -> None:
        """
        Users of a journal written before subject ids get one each on the
        first start, in a record each, logged once; the next start changes
        nothing and logs nothing, and the ids stay.
        """
        old = [encode(UserPut(User("alice"))), encode(UserPut(User("bob")))]
        first = self.start(HeldJournal(old))
        uids = {name: user.uid for name, user in first.state.users.items()}
        assert all(PHOTOPRISM_UID.match(uid) and is_uid(uid) for uid in uids.values()), uids
        assert len(set(uids.values())) == 2
        assert first.store.log.record_count == 4  # type: ignore[attr-defined]
        assert self.migrations_logged() == 1

        again = self.start(HeldJournal(first.store.log.payloads))  # type: ignore[attr-defined]
        assert {name: user.uid for name, user in again.state.users.items()} == uids
        assert again.store.log.record_count == 4  # type: ignore[attr-defined]
        assert self.migrations_logged() == 1

    def test_new_users_get_one_at_creation(self) -> None:
        """
        A user created now has a subject id at once, unlike every other
        user's, and a change of profile keeps it.
        """
        server = MemoryServer.build()
        alice = self.successResultOf(server.add_user("alice", None))
        bob = self.successResultOf(server.add_user("bob", None))
        assert is_uid(alice.uid) and is_uid(bob.uid) and alice.uid != bob.uid
        self.successResultOf(server.store.commit(update_user(server.ctx, "alice", full_name="Alice")))
        assert server.state.users["alice"].uid == alice.uid

    def test_ids_survive_compaction_and_are_not_reused(self) -> None:
        """
        A compacted journal keeps each user's id; a user removed and added
        again under the same name gets a new one, never the old.
        """
        from oauthd.protocol.admin.users import remove_user

        journal = HeldJournal()
        server = MemoryServer.build(log=journal)
        alice = self.successResultOf(server.add_user("alice", None))
        self.successResultOf(server.store.compact())
        again = MemoryServer.build(log=HeldJournal(journal.payloads))
        assert again.state.users["alice"].uid == alice.uid
        self.successResultOf(again.store.commit(remove_user(again.ctx, "alice")))
        readded = self.successResultOf(again.add_user("alice", None))
        assert is_uid(readded.uid) and readded.uid != alice.uid
