"""
The private writer pool: the one thread on which an object that owns a
file (the file journal, the audit trail beside it) does its blocking writes
and fsyncs, one job at a time, its results delivered on the reactor thread.
The daemon's journal and audit trail each have one, paired (C{partner}):
a change's journal group and its audit lines are written and synced side
by side, and come back to the reactor with one wake-up.

Its thread is a daemon thread, so a process that exits without stopping the
pool (start-up failing after the file was opened, say) does not hang
waiting for it.  That is safe because an owner acknowledges nothing before
the job that makes it durable has returned: an exit can only cut short an
unacknowledged write, whose torn end the owner cuts off when it next opens
the file.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from functools import partial
from queue import SimpleQueue
from typing import Any

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReadDescriptor
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

__all__ = ["WriterPool"]


OnResult = Callable[[bool, Any], object]


def run_job(onResult: OnResult, f: Callable[..., object], a: Any, kw: Any) -> None:
    """
    Run one job as a thread pool does: C{f(*a, **kw)}, its result or its
    failure handed to C{onResult}.
    """
    try:
        result = f(*a, **kw)
    except BaseException:
        onResult(False, Failure())
    else:
        onResult(True, result)


log = Logger()


@implementer(IReadDescriptor)
class _Wake:
    """
    A pipe the reactor watches, written to by a writer thread to wake it:
    what C{callFromThread} does, without the per-call work of the
    reactor's own waker (which reaches C{untilConcludes} through a
    deprecated-module proxy, each attribute looked up in Python).
    """

    def __init__(self, reactor: PosixReactorBase, woken: Callable[[], object], lost: Callable[[], object]) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._reactor = reactor
        self._woken = woken
        self._lost = lost
        reactor.addReader(self)

    def wake(self) -> None:
        try:
            os.write(self._write, b"x")
        except BlockingIOError:
            pass  # full: the reactor has a wake-up to read already

    def fileno(self) -> int:
        return self._read

    def logPrefix(self) -> str:
        return "oauthd-writers"

    def doRead(self) -> None:
        try:
            os.read(self._read, 4096)
        except BlockingIOError:
            pass
        self._woken()

    def connectionLost(self, reason: Failure) -> None:
        # The reactor let go of it (its shutdown disconnects every reader).
        self._lost()

    def close(self) -> None:
        self._reactor.removeReader(self)
        os.close(self._read)
        os.close(self._write)


class _Deliveries:
    """
    The results of the jobs of every writer thread of one reactor, handed to
    the reactor thread by one wake-up for all that come before it has run:
    the journal's and the audit trail's fsyncs end close together, and
    each wake-up costs the reactor a turn of its loop.

    A real reactor is woken through a pipe of our own (L{_Wake}) while a
    writer thread of it runs, any other (a test's) by C{callFromThread}.
    """

    def __init__(self, reactor: IReactorFromThreads) -> None:
        self._reactor = reactor
        self._lock = threading.Lock()
        self._results: deque[tuple[OnResult, bool, Any]] = deque()
        self._called = False
        self._threads = 0
        self._pipe: _Wake | None = None

    def attach(self) -> None:
        """
        On the reactor thread: a writer thread of the reactor starts.
        """
        self._threads += 1
        if self._pipe is None and isinstance(self._reactor, PosixReactorBase):
            self._pipe = _Wake(self._reactor, self._fire, self._let_go)

    def detach(self) -> None:
        """
        On the reactor thread: a writer thread of the reactor has stopped.
        """
        self._threads -= 1
        if self._threads == 0:
            self._let_go()

    def _let_go(self) -> None:
        # The pipe is closed under the lock, so no thread writes to it
        # meanwhile, and a wake-up it still held comes the other way.
        with self._lock:
            pipe, self._pipe = self._pipe, None
            if pipe is None:
                return
            pipe.close()
            if self._called:
                self._reactor.callFromThread(self._fire)

    def deliver(self, results: list[tuple[OnResult, bool, Any]], thread: _WriterThread) -> None:
        """
        On writer thread C{thread}, its job done: call each C{on_result(success,
        result)} of C{results}, in order, on the reactor thread; once its
        partner's job running now is done too, if it runs one (that
        thread's delivery wakes the reactor for both).
        """
        with self._lock:
            self._results += results
            thread.busy = False
            partner = thread.partner
            if partner is not None and partner.busy:
                return
            if not self._called:
                self._called = True
                self._wake()

    def _wake(self) -> None:
        # Called with the lock held.
        if self._pipe is not None:
            self._pipe.wake()
        else:
            self._reactor.callFromThread(self._fire)

    def _fire(self) -> None:
        # As the reactor runs only the calls from threads waiting when its
        # turn began: what comes meanwhile waits for the next turn, so that
        # writers finishing one job after another cannot hold the reactor.
        # One _fire at a time (the flag stays set), so each pool's results
        # keep their order.
        with self._lock:
            waiting, self._results = self._results, deque()
        for on_result, success, result in waiting:
            try:
                on_result(success, result)
            except BaseException:
                # As the reactor does for what callFromThread runs: logged,
                # and the results behind it still delivered.
                log.failure("a writer thread's result could not be delivered")
        with self._lock:
            if self._results:
                self._wake()
            else:
                self._called = False


# By the reactor's identity (a fake one may compare by value, or be neither
# hashable nor weakly referable), for as long as a pool of it holds them: an
# entry keeps its reactor alive, so its id is not reused meanwhile, and
# nothing here keeps a reactor alive once its pools are gone.
_deliveries: weakref.WeakValueDictionary[int, _Deliveries] = weakref.WeakValueDictionary()


def _deliveries_of(reactor: IReactorFromThreads) -> _Deliveries:
    deliveries = _deliveries.get(id(reactor))
    if deliveries is None:
        deliveries = _deliveries[id(reactor)] = _Deliveries(reactor)
    return deliveries


def _settle(done: Deferred[Any], success: bool, result: Any) -> None:
    if success:
        done.callback(result)
    else:
        done.errback(result)


class _WriterThread:
    """
    One daemon thread running jobs in order: what L{ThreadPool} does for
    one thread, with less work per job (each write and fsync is one). The
    results of the jobs it finds queued one after the other are delivered
    together once the last has run.

    @ivar partner: the thread whose results and ours come back together
        when both run a job (the journal's and the audit trail's: a
        change is answered once both its writes are done).
    @ivar busy: whether it runs a job whose result is not delivered yet.
    @ivar deliveries: hands its results to its reactor's thread.
    """

    partner: _WriterThread | None = None
    busy = False

    def __init__(self, name: str, deliveries: _Deliveries) -> None:
        self._name = name
        self.deliveries = deliveries
        self._jobs: SimpleQueue[tuple[OnResult, Callable[..., object], tuple[object, ...]] | None] = SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.deliveries.attach()
        self._thread = threading.Thread(target=self._work, name=f"PoolThread-{self._name}-0", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """
        Stop once the jobs given so far have run.
        """
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
            self.deliveries.detach()

    def submit(self, on_result: OnResult, f: Callable[..., object], args: tuple[object, ...]) -> None:
        self._jobs.put((on_result, f, args))

    def _work(self) -> None:
        jobs = self._jobs
        job = jobs.get()
        while job is not None:
            self.busy = True
            results: list[tuple[OnResult, bool, Any]] = []
            while True:
                on_result, f, args = job
                try:
                    results.append((on_result, True, f(*args)))
                except BaseException:
                    results.append((on_result, False, Failure()))
                if jobs.empty():
                    break
                job = jobs.get()
                if job is None:
                    break
            self.deliveries.deliver(results, self)
            if job is not None:
                job = jobs.get()


class WriterPool:
    """
    A one-thread pool of a daemon thread, started and stopped by its owner.

    The owner calls L{start} when it is made or started, L{run} for each
    job, and L{stop} once its last job has finished (when it closes).  A
    pool passed in instead (tests pass one that runs jobs inline, or that
    they step by hand) is used as it is and never started or stopped.
    """

    def __init__(
        self, reactor: IReactorFromThreads, name: str, pool: ThreadPool | None = None,
        partner: WriterPool | None = None,
    ) -> None:
        """
        @param reactor: Delivers the jobs' results (L{_Deliveries}: through a
            pipe of our own on a real reactor, else C{callFromThread}).
        @param name: Names the thread (C{PoolThread-<name>-<n>}).
        @param pool: The pool to use instead of one of our own.
        @param partner: A pool of the same reactor whose thread's results
            and ours come back together when both run a job (both have
            threads of their own): a result waits for the partner's job
            running then, not for the ones after it.
        """
        self._reactor = reactor
        self._owned = pool is None
        thread = _WriterThread(name, _deliveries_of(reactor)) if pool is None else None
        self._pool: Any = pool if thread is None else thread
        theirs = None if partner is None else partner._pool
        if thread is not None and isinstance(theirs, _WriterThread) and theirs.deliveries is thread.deliveries:
            thread.partner, theirs.partner = theirs, thread
        self._running = False
        self._shutdown_trigger: Any = None

    def start(self) -> None:
        """
        Start our own thread pool (no-op for one passed in, or if started).
        """
        if not self._owned or self._running:
            return
        self._running = True
        self._pool.start()
        core = IReactorCore(self._reactor, None)
        if core is not None:
            # Never leave the thread behind if the owner is never closed.
            self._shutdown_trigger = core.addSystemEventTrigger(
                "after", "shutdown", self._reactor_shut_down
            )

    def run(self, job: Callable[..., object], *args: object) -> Deferred[Any]:
        """
        Run C{job(*args)} on the pool.

        @return: fires, on the reactor thread, with what C{job} returned or
            raised.
        """
        if not self._owned:
            return deferToThreadPool(self._reactor, self._pool, job, *args)
        done: Deferred[Any] = Deferred()
        self._pool.submit(partial(_settle, done), job, args)
        return done

    def run_then(self, on_result: OnResult, job: Callable[..., object], *args: object) -> None:
        """
        Run C{job(*args)} on the pool, and then C{on_result(True, what it
        returned)} or C{on_result(False, a Failure of what it raised)} on
        the reactor thread: L{run} without a Deferred, for an owner that
        runs one job after another (with a pool that runs jobs inline,
        C{on_result} is called before this returns).
        """
        if self._owned:
            self._pool.submit(on_result, job, args)
        else:
            self._pool.callInThreadWithCallback(partial(self._reactor.callFromThread, on_result), job, *args)

    def stop(self) -> None:
        """
        Stop our own thread pool; call it once the owner's last job has
        finished.
        """
        trigger, self._shutdown_trigger = self._shutdown_trigger, None
        if trigger is not None:
            IReactorCore(self._reactor).removeSystemEventTrigger(trigger)
        self._stop_pool()

    def _reactor_shut_down(self) -> None:
        # The trigger has fired: there is nothing left for stop() to remove.
        self._shutdown_trigger = None
        self._stop_pool()

    def _stop_pool(self) -> None:
        if self._running:
            self._running = False
            self._pool.stop()
