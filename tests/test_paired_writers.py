"""
The journal's and the audit trail's writer threads paired, as the daemon
runs them (L{oauthd.tap}): a change is answered once both its journal group
and its audit lines are durable, with one wake-up of the reactor; a failure
of either write fails the change, and the later ones, as unpaired.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthd.eventlog import FileJournal
from oauthd.eventlog.errors import JournalFailed
from oauthd.interfaces import AuditFailing
from oauthd.services.audit import AuditTrail
from oauthd.state.decision import Decision, audit
from oauthd.state.entities import Client
from oauthd.state.records import ClientPut
from oauthd.state.store import NotDurable, Store
from tests.helpers import START
from tests.test_writer_pool import ThreadsReactor


def put(name: str) -> Decision[str]:
    return Decision(f"answer {name}", [ClientPut(Client(id=name, name=name))],
                    [audit("client.add", "ok", client=name)])


class Held:
    """
    A sync function that, once armed, waits until released, then syncs or
    fails.
    """

    def __init__(self, error: OSError | None = None) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.error = error

    def __call__(self, fd: int) -> None:
        if not self.armed:
            os.fsync(fd)
            return
        self.entered.set()
        self.release.wait(30)
        if self.error is not None:
            raise self.error
        os.fsync(fd)


class PairedWritersTests(SynchronousTestCase):
    def open(self, journal_sync: Callable[[int], None] = os.fsync,
             trail_sync: Callable[[int], None] = os.fdatasync) -> Store:
        directory = tempfile.mkdtemp(prefix="oauthd-paired-writers-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.reactor = ThreadsReactor()
        self.clock = clock = Clock()
        clock.advance(START)
        journal = FileJournal.open(directory, self.reactor, fsync_function=journal_sync)  # type: ignore[arg-type]
        trail = AuditTrail(directory, clock, self.reactor, sync=trail_sync, partner=journal.writer)
        trail.startService()
        store = Store.load(journal, clock, trail)

        def close() -> None:
            # Stopped as the daemon stops them: the journal, then the trail;
            # the results of their last jobs delivered meanwhile.
            closed = journal.close()
            while not closed.called:
                self.reactor.deliver()
            stopped = trail.stopService()
            while not stopped.called:
                self.reactor.deliver()

        self.addCleanup(close)
        return store

    def no_wake_up(self) -> None:
        with self.assertRaises(queue.Empty):
            self.reactor.from_threads.get(timeout=0.2)

    def test_answered_once_both_are_durable_with_one_wake_up(self) -> None:
        """
        The journal group is written and synced; while the audit lines'
        sync still runs, nothing comes back to the reactor and the change
        is not answered; then one wake-up answers it.
        """
        journal_synced = threading.Event()

        def journal_sync(fd: int) -> None:
            os.fsync(fd)
            journal_synced.set()

        held = Held()
        store = self.open(journal_sync, held)
        held.armed = True
        done = store.commit(put("c1"))
        self.assertTrue(held.entered.wait(30))
        self.assertTrue(journal_synced.is_set())
        self.no_wake_up()
        self.assertNoResult(done)
        held.release.set()
        self.reactor.deliver()
        self.assertEqual(self.successResultOf(done), "answer c1")
        self.no_wake_up()

    def test_a_failed_audit_write_fails_the_change_and_the_later_ones(self) -> None:
        """
        The journal group is durable but the audit lines cannot be written:
        the change fails (made), and a later one is refused at once, as
        unpaired.
        """
        held = Held(OSError(28, "No space left on device"))
        store = self.open(trail_sync=held)
        held.armed = True
        done = store.commit(put("c1"))
        self.assertTrue(held.entered.wait(30))
        held.release.set()
        self.reactor.deliver()
        failure = self.failureResultOf(done, NotDurable)
        self.assertTrue(failure.value.made)
        self.assertIsInstance(failure.value.reason, AuditFailing)
        later = self.failureResultOf(store.commit(put("c2")), NotDurable)
        self.assertFalse(later.value.made)
        self.assertNotIn("c2", store.state.clients)
        self.flushLoggedErrors(OSError)

    def test_a_failed_journal_write_fails_the_change_and_the_later_ones(self) -> None:
        """
        The journal's write fails: the change fails (not made durable), its
        audit lines written behind it or not, and every later change too.
        """
        held = Held(OSError(5, "Input/output error"))
        store = self.open(journal_sync=held)
        held.armed = True
        done = store.commit(put("c1"))
        self.assertTrue(held.entered.wait(30))
        held.release.set()
        self.reactor.deliver()
        failure = self.failureResultOf(done, NotDurable)
        self.assertFalse(failure.value.made)
        self.assertIsInstance(failure.value.reason, JournalFailed)
        self.failureResultOf(store.commit(put("c2")), NotDurable)
        self.assertIsNotNone(store.journal_failure)
        self.flushLoggedErrors(OSError, JournalFailed)

    def test_each_result_is_delivered_once(self) -> None:
        """
        Changes made while a write runs are answered once each, in order,
        the journal groups and audit batches of several wake-ups mixed.
        """
        store = self.open()
        answers: list[object] = []
        for n in range(20):
            store.commit(put(f"c{n}")).addBoth(answers.append)
        while len(answers) < 20:
            self.reactor.deliver()
            # The trail's next batch goes on the reactor's next turn.
            self.clock.advance(0)
        self.assertEqual(answers, [f"answer c{n}" for n in range(20)])
        self.no_wake_up()
        self.assertEqual(len(answers), 20)
