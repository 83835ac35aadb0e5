"""
Subject ids (issue 15): every user has one in PhotoPrism's UID shape, given
at creation or, for a journal from before them, once on the first start.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from oauthd import tap
from oauthd.config import build_config
from oauthd.eventlog import FileJournal
from oauthd.protocol.subjects import is_uid
from oauthd.state.entities import User
from oauthd.state.records import UserPut, encode
from oauthd.testing import InlinePool
from tests.helpers import InlineMemoryReactor

PHOTOPRISM_UID = re.compile(r"^u[0-9a-z]{15}$")
"""
What PhotoPrism's C{rnd.IsUID(s, 'u')} accepts: 16 characters, the prefix,
then lowercase letters and digits.
"""


class MigrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data = Path(self.mktemp())
        self.data.mkdir(mode=0o700)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def start(self) -> dict[str, User]:
        """
        Start the daemon on the data directory, stop it, and return its
        users as replay sees them afterwards.
        """
        config = build_config({"data": str(self.data), "listen": ["tcp:0:interface=127.0.0.1"]})
        service = tap.build_service(config, InlineMemoryReactor(), journal_pool=InlinePool())
        service.privilegedStartService()
        service.startService()
        self.successResultOf(service.stopService())
        from oauthd.state.model import State, replay

        journal = FileJournal.open(str(self.data), InlineMemoryReactor(), pool=InlinePool())
        state = State()
        replay(state, journal.replay(), 0)
        self.successResultOf(journal.close())
        return state.users

    def migrations_logged(self) -> int:
        return sum("stable subject id" in formatEvent(e) for e in self.events)

    def test_old_journal_gets_subject_ids_once(self) -> None:
        """
        Users of a journal written before subject ids get one each on the
        first start, logged once; the next start changes nothing and logs
        nothing.
        """
        journal = FileJournal.open(str(self.data), InlineMemoryReactor(), pool=InlinePool())
        self.successResultOf(journal.append([encode(UserPut(User("alice"))), encode(UserPut(User("bob")))]))
        self.successResultOf(journal.close())

        first = self.start()
        uids = {name: user.uid for name, user in first.items()}
        assert all(PHOTOPRISM_UID.match(uid) and is_uid(uid) for uid in uids.values()), uids
        assert len(set(uids.values())) == 2
        assert self.migrations_logged() == 1

        second = self.start()
        assert {name: user.uid for name, user in second.items()} == uids
        assert self.migrations_logged() == 1
