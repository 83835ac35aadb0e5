"""
Tests for L{oauthd.eventlog.writer_pool}: the one daemon writer thread the
file journal and the audit trail start and stop the same way.
"""

from __future__ import annotations

import gc
import queue
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from zope.interface import implementer

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.trial.unittest import SynchronousTestCase

from oauthd.eventlog.writer_pool import WriterPool
from oauthd.testing import InlinePool, InlineReactor


@implementer(IReactorCore, IReactorFromThreads)
class ThreadsReactor:
    """
    Just enough of a reactor: system event triggers that the test fires, and
    results from threads that the test delivers.
    """

    def __init__(self) -> None:
        self.triggers: list[tuple[str, str, Callable[[], object]]] = []
        self.from_threads: queue.Queue[Callable[[], object]] = queue.Queue()

    def addSystemEventTrigger(
        self, phase: str, event: str, f: Callable[[], object]
    ) -> tuple[str, str, Callable[[], object]]:
        handle = (phase, event, f)
        self.triggers.append(handle)
        return handle

    def removeSystemEventTrigger(self, handle: tuple[str, str, Callable[[], object]]) -> None:
        self.triggers.remove(handle)

    def shut_down(self) -> None:
        fired, self.triggers = self.triggers, []
        for phase, event, f in fired:
            if (phase, event) == ("after", "shutdown"):
                f()

    def callFromThread(self, f: Callable[..., object], *a: object, **kw: object) -> None:
        self.from_threads.put(lambda: f(*a, **kw))

    def deliver(self) -> None:
        self.from_threads.get(timeout=30)()


class CountingPool(InlinePool):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")


def about_this_thread() -> tuple[str, bool]:
    thread = threading.current_thread()
    return thread.name, thread.daemon


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("PoolThread-oauthd-test")]


class WriterPoolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = ThreadsReactor()

    def run_job(self, writer: WriterPool) -> Any:
        done = writer.run(about_this_thread)
        self.reactor.deliver()
        return self.successResultOf(done)

    def test_own_thread_is_a_daemon_and_stops(self) -> None:
        """
        Started, it runs jobs on one daemon thread named after it; stopped,
        the thread is gone and so is its shutdown trigger.
        """
        writer = WriterPool(self.reactor, "oauthd-test")
        writer.start()
        writer.start()
        self.assertEqual([t[:2] for t in self.reactor.triggers], [("after", "shutdown")])
        name, daemon = self.run_job(writer)
        self.assertTrue(name.startswith("PoolThread-oauthd-test-"), name)
        self.assertTrue(daemon)
        writer.stop()
        self.assertEqual(pool_threads(), [])
        self.assertEqual(self.reactor.triggers, [])

    def test_reactor_shutdown_stops_it(self) -> None:
        """
        If its owner never stops it, reactor shutdown does; a later stop()
        is harmless.
        """
        writer = WriterPool(self.reactor, "oauthd-test")
        writer.start()
        self.run_job(writer)
        self.reactor.shut_down()
        self.assertEqual(pool_threads(), [])
        writer.stop()

    def test_given_pool_is_used_as_it_is(self) -> None:
        """
        A pool passed in runs the jobs and is never started or stopped; no
        shutdown trigger is added for it.
        """
        pool = CountingPool()
        writer = WriterPool(self.reactor, "oauthd-test", pool)  # type: ignore[arg-type]
        writer.start()
        done = writer.run(lambda: "ran")
        self.reactor.deliver()
        self.assertEqual(self.successResultOf(done), "ran")
        writer.stop()
        self.assertEqual((pool.calls, self.reactor.triggers), ([], []))

    def test_run_then_hands_the_result_to_a_callback_on_the_reactor_thread(self) -> None:
        """
        L{WriterPool.run_then} runs the job on the pool's thread and calls
        back on the reactor thread (through C{callFromThread}) with
        C{(True, result)}, or C{(False, Failure)} if the job raised.
        """
        writer = WriterPool(self.reactor, "oauthd-test")
        writer.start()
        results: list[tuple[bool, Any, str]] = []

        def note(succeeded: bool, result: Any) -> None:
            results.append((succeeded, result, threading.current_thread().name))

        writer.run_then(note, about_this_thread)
        writer.run_then(note, lambda n: 1 // n, 0)
        while len(results) < 2:
            self.reactor.deliver()
        writer.stop()
        (ran, (name, _), here), (failed, failure, there) = results
        self.assertTrue(ran)
        self.assertTrue(name.startswith("PoolThread-oauthd-test-"), name)
        self.assertFalse(failed)
        self.assertIsInstance(failure.value, ZeroDivisionError)
        self.assertEqual({here, there}, {threading.current_thread().name})


class DeliveryTests(SynchronousTestCase):
    def test_results_waiting_share_one_wake_up(self) -> None:
        """
        The results of jobs on the writer threads of one reactor (the
        journal's, the audit trail's) that finish before the reactor thread
        has taken the first come back with one C{callFromThread}, in the
        order they finished; a later one wakes the reactor again.
        """
        reactor = ThreadsReactor()
        journal = WriterPool(reactor, "oauthd-test-journal")
        audit = WriterPool(reactor, "oauthd-test-audit")
        fired: list[object] = []
        journal.start()
        journal.run(lambda: "journal").addCallback(fired.append)
        journal.stop()
        audit.start()
        audit.run_then(lambda succeeded, result: fired.append((succeeded, result)), lambda: "audit")
        audit.stop()
        self.assertEqual(reactor.from_threads.qsize(), 1)
        reactor.deliver()
        self.assertEqual(fired, ["journal", (True, "audit")])
        later = WriterPool(reactor, "oauthd-test-later")
        later.start()
        failed = later.run(lambda: 1 // 0)
        later.stop()
        reactor.deliver()
        self.failureResultOf(failed, ZeroDivisionError)

    def test_a_result_whose_callback_raises_leaves_the_rest_delivered(self) -> None:
        """
        A callback that raises is logged, as the reactor logs what
        C{callFromThread} runs, and the results behind it still come.
        """
        reactor = ThreadsReactor()
        writer = WriterPool(reactor, "oauthd-test-raising")
        fired: list[object] = []

        def broken(succeeded: bool, result: object) -> None:
            raise RuntimeError("broken")

        writer.start()
        writer.run_then(broken, lambda: "first")
        writer.run_then(lambda succeeded, result: fired.append(result), lambda: "second")
        writer.stop()
        while not fired:
            reactor.deliver()
        self.assertEqual(fired, ["second"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_a_reactor_is_not_kept_alive_by_its_deliveries(self) -> None:
        """
        Once nothing else refers to a reactor (a test's, say), the writer
        pool's deliveries do not keep it, and all it refers to, alive.
        """
        reactor = ThreadsReactor()
        writer = WriterPool(reactor, "oauthd-test-gone")
        writer.start()
        writer.run_then(lambda succeeded, result: None, lambda: None)
        writer.stop()
        reactor.deliver()
        gone = weakref.ref(reactor)
        del reactor, writer
        gc.collect()
        self.assertIsNone(gone())

    def test_reactors_that_compare_by_value_or_have_slots(self) -> None:
        """
        Each reactor gets its own pools' results, whether it compares by
        value (hashable or not) or cannot be weakly referred to (slots).
        """

        class Calls:
            calls: list[Callable[[], object]]

            def callFromThread(self, f: Callable[..., object], *a: object) -> None:
                self.calls.append(partial(f, *a))

        @dataclass
        class Unhashable(Calls):
            calls: list[Callable[[], object]] = field(default_factory=list, compare=False)

        @dataclass(frozen=True)
        class EqualByValue(Calls):
            calls: list[Callable[[], object]] = field(default_factory=list, compare=False)

        class Slotted(Calls):
            __slots__ = ("calls",)

            def __init__(self) -> None:
                self.calls = []

        for make in (Unhashable, EqualByValue, Slotted):
            reactors = [make(), make()]
            writers = [WriterPool(reactor, "oauthd-test-odd") for reactor in reactors]
            for reactor, writer in zip(reactors, writers):
                writer.start()
                done = writer.run(lambda: "done")
                writer.stop()
                for call in reactor.calls:
                    call()
                self.assertEqual(self.successResultOf(done), "done", make)

    def test_a_result_that_comes_while_delivering_waits_for_the_next_turn(self) -> None:
        """
        As the reactor runs only the calls from threads that were waiting when
        its turn began, a result that arrives while the results are being
        delivered waits for the reactor's next turn: a writer that keeps
        finishing jobs cannot keep the reactor from its other work.
        """
        reactor = ThreadsReactor()
        writer = WriterPool(reactor, "oauthd-test-turns")
        fired: list[object] = []

        def first(succeeded: bool, result: object) -> None:
            fired.append(result)
            writer.start()
            writer.run_then(lambda succeeded, result: fired.append(result), lambda: "second")
            writer.stop()

        writer.start()
        writer.run_then(first, lambda: "first")
        writer.stop()
        reactor.deliver()
        self.assertEqual(fired, ["first"])
        reactor.deliver()
        self.assertEqual(fired, ["first", "second"])


class PairingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = ThreadsReactor()
        self.journal = WriterPool(self.reactor, "oauthd-test-journal")
        self.audit = WriterPool(self.reactor, "oauthd-test-audit", partner=self.journal)
        for writer in (self.journal, self.audit):
            writer.start()
            self.addCleanup(writer.stop)
        self.release = threading.Event()
        # Cleanups run last first: released before the threads are stopped.
        self.addCleanup(self.release.set)
        self.held = threading.Event()

    def hold(self) -> str:
        self.held.set()
        self.release.wait(30)
        return threading.current_thread().name

    def no_wake_up(self) -> None:
        with self.assertRaises(queue.Empty):
            self.reactor.from_threads.get(timeout=0.2)

    def test_a_result_waits_for_the_partners_job(self) -> None:
        """
        Paired pools (the journal's, the audit trail's) run their jobs on
        threads of their own, side by side; the result of one that ends
        while the other's job runs comes back with that job's, in one
        C{callFromThread}: the reactor is not woken for the first while the
        second still runs.
        """
        fired: list[object] = []
        self.audit.run_then(lambda succeeded, result: fired.append(result), self.hold)
        self.assertTrue(self.held.wait(30))
        journal_ran = threading.Event()

        def quick() -> str:
            journal_ran.set()
            return threading.current_thread().name

        self.journal.run(quick).addCallback(fired.append)
        self.assertTrue(journal_ran.wait(30))
        self.no_wake_up()
        self.release.set()
        self.reactor.deliver()
        self.no_wake_up()
        audit_thread, journal_thread = sorted(fired)  # type: ignore[type-var]
        self.assertTrue(journal_thread.startswith("PoolThread-oauthd-test-journal-"), journal_thread)  # type: ignore[union-attr]
        self.assertTrue(audit_thread.startswith("PoolThread-oauthd-test-audit-"), audit_thread)  # type: ignore[union-attr]

    def test_a_result_does_not_wait_for_an_idle_partner_nor_another_pool(self) -> None:
        """
        A result comes at once while the partner runs nothing; and a pool
        not paired with the one running a job does not wait for it.
        """
        done = self.journal.run(lambda: "alone")
        self.reactor.deliver()
        self.assertEqual(self.successResultOf(done), "alone")
        other = WriterPool(self.reactor, "oauthd-test-other")
        other.start()
        self.addCleanup(other.stop)
        self.audit.run_then(lambda succeeded, result: None, self.hold)
        self.assertTrue(self.held.wait(30))
        done = other.run(lambda: "not paired")
        self.reactor.deliver()
        self.assertEqual(self.successResultOf(done), "not paired")

    def test_pools_of_different_reactors_are_not_paired(self) -> None:
        """
        A pool given a partner of another reactor is not paired with it:
        its results, which its own reactor takes, never wait for the other.
        """
        elsewhere = ThreadsReactor()
        other = WriterPool(elsewhere, "oauthd-test-elsewhere", partner=self.journal)
        other.start()
        self.addCleanup(other.stop)
        self.journal.run_then(lambda succeeded, result: None, self.hold)
        self.assertTrue(self.held.wait(30))
        done = other.run(lambda: "elsewhere")
        elsewhere.deliver()
        self.assertEqual(self.successResultOf(done), "elsewhere")

    def test_a_pool_passed_in_is_not_paired(self) -> None:
        """
        A pool passed in (tests pass one that runs inline) runs its jobs as
        it does, whatever its partner.
        """
        inline = WriterPool(InlineReactor(), "oauthd-test-inline", InlinePool(),  # type: ignore[arg-type]
                            partner=self.journal)
        ran: list[object] = []
        inline.run_then(lambda succeeded, result: ran.append(result), lambda: "inline")
        self.assertEqual(ran, ["inline"])


class CountingReactor(EPollReactor):
    """
    A real reactor (never run, only iterated) that counts its calls from
    threads.
    """

    from_threads = 0

    def callFromThread(self, f: Callable[..., object], *args: object, **kwargs: object) -> None:
        self.from_threads += 1
        super().callFromThread(f, *args, **kwargs)

    def turn_until(self, done: Callable[[], bool]) -> None:
        for _ in range(300):
            if done():
                return
            self.doIteration(0.1)
            self.runUntilCurrent()
        raise AssertionError("nothing came back")


class WakeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = CountingReactor()
        self.addCleanup(self.close_reactor)

    def close_reactor(self) -> None:
        self.reactor.waker.connectionLost(None)
        self.reactor._poller.close()

    def test_a_real_reactor_is_woken_through_a_pipe_of_the_pools(self) -> None:
        """
        A real reactor gets its writer threads' results through a pipe it
        watches while one of its writer threads runs, not through
        C{callFromThread} (whose waker costs more per call); the pipe goes
        once the last thread has stopped.
        """
        readers = set(self.reactor.getReaders())
        journal = WriterPool(self.reactor, "oauthd-test-journal")
        audit = WriterPool(self.reactor, "oauthd-test-audit", partner=journal)
        other = WriterPool(self.reactor, "oauthd-test-other")
        for writer in (journal, audit, other):
            writer.start()
        fired: list[object] = []
        for n in range(3):
            journal.run(lambda n=n: ("journal", n)).addCallback(fired.append)
            audit.run_then(lambda succeeded, result: fired.append(result), lambda n=n: ("audit", n))
            other.run(lambda n=n: ("other", n)).addCallback(fired.append)
            self.reactor.turn_until(lambda: len(fired) == 3 * (n + 1))
        self.assertEqual(self.reactor.from_threads, 0)
        for kind in ("journal", "audit", "other"):
            self.assertEqual([r for r in fired if r[0] == kind], [(kind, n) for n in range(3)])
        self.assertEqual(len(set(self.reactor.getReaders()) - readers), 1)
        for writer in (journal, other, audit):
            writer.stop()
        self.assertEqual(set(self.reactor.getReaders()), readers)

    def test_what_the_pipe_still_held_comes_once_it_is_gone(self) -> None:
        """
        A result delivered just before the last writer thread stops (its
        wake-up still in the pipe) comes all the same, once.
        """
        writer = WriterPool(self.reactor, "oauthd-test-last")
        writer.start()
        fired: list[object] = []
        writer.run(lambda: "last").addCallback(fired.append)
        writer.stop()
        self.reactor.turn_until(lambda: bool(fired))
        self.reactor.doIteration(0)
        self.reactor.runUntilCurrent()
        self.assertEqual(fired, ["last"])

    def test_after_the_reactor_let_go_of_the_pipe_results_still_come(self) -> None:
        """
        Shutting down, the reactor disconnects every reader, the pipe among
        them (its writer threads stop after that): results come through
        C{callFromThread} from then on.
        """
        writer = WriterPool(self.reactor, "oauthd-test-shutdown")
        writer.start()
        self.reactor.disconnectAll()
        done = writer.run(lambda: "after")
        self.reactor.turn_until(lambda: done.called)
        writer.stop()
        self.assertEqual(self.successResultOf(done), "after")
        self.assertEqual(self.reactor.from_threads, 1)
