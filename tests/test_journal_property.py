"""
Property test: a tiny key-value state model kept in an event log survives
replay and compaction, with appends interleaved with the writer's steps and
with compactions in progress.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import Union

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from oauthd.interfaces import IEventLog
from oauthd.eventlog import CompactionInProgress, FileJournal, MemoryJournal
from oauthd.testing import InlineReactor, SteppingPool

Set = tuple[str, int, bytes]
Delete = tuple[str, int]
Compact = tuple[str, str]
Step = tuple[str, int]
Op = Union[Set, Delete, Compact, Step]

keys = st.integers(0, 5)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, st.binary(max_size=12)),
        st.tuples(st.just("delete"), keys),
        st.tuples(st.just("compact"), st.sampled_from(["acknowledged", "everything"])),
        st.tuples(st.just("step"), st.integers(1, 4)),
    ),
    max_size=60,
)


def encode(op: Op) -> bytes:
    if op[0] == "set":
        return b"S" + bytes([op[1]]) + op[2]  # type: ignore[misc]
    return b"D" + bytes([op[1]])  # type: ignore[arg-type]


def apply(state: dict[int, bytes], payload: bytes) -> None:
    """
    Apply one record; applying a record twice, or a suffix of records again,
    changes nothing (the idempotence the state layer guarantees).
    """
    if payload[:1] == b"S":
        state[payload[1]] = payload[2:]
    else:
        state.pop(payload[1], None)


def snapshot_of(state: dict[int, bytes]) -> Iterator[bytes]:
    for key, value in sorted(state.items()):
        yield b"S" + bytes([key]) + value


def replayed(payloads: Iterable[bytes]) -> dict[int, bytes]:
    state: dict[int, bytes] = {}
    for payload in payloads:
        apply(state, payload)
    return state


class Harness:
    """
    A log to drive: a file journal whose writer the test steps, or the
    memory fake.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.pool = SteppingPool()
        if kind == "file":
            self.directory = tempfile.mkdtemp(prefix="oauthd-journal-prop-")
        self.log = self.open()

    def open(self, payloads: list[bytes] | None = None) -> IEventLog:
        if self.kind == "memory":
            return MemoryJournal(payloads or [])
        return FileJournal.open(
            self.directory,
            InlineReactor(),
            pool=self.pool,  # type: ignore[arg-type]
            fsync=False,
            # Tiny slices, so compactions span many writer steps.
            slice_records=2,
        )

    def step(self, jobs: int) -> None:
        for _ in range(jobs):
            if self.pool.jobs:
                self.pool.run_one()

    def drain(self) -> None:
        self.pool.run_all()

    def reopen(self) -> IEventLog:
        payloads = self.log.payloads if isinstance(self.log, MemoryJournal) else None
        closed = self.log.close()
        self.drain()
        assert closed.called
        self.log = self.open(payloads)
        return self.log

    def cleanup(self) -> None:
        self.log.close()
        self.drain()
        if self.kind == "file":
            shutil.rmtree(self.directory, ignore_errors=True)


def outcome(d: Deferred[None]) -> object:
    results: list[object] = []
    d.addBoth(results.append)
    assert results, "still pending"
    return results[0]


# Two functions rather than one parametrized: pytest-twisted wraps
# hypothesis' inner test on the (shared) function object once per item, so
# a parametrized @given test breaks under it.


@settings(max_examples=150, deadline=None)
@given(ops=operations)
def test_file_journal_state_survives_replay_and_compaction(ops: list[Op]) -> None:
    """
    For the file journal, with its writer stepped by the operations:
    replaying the log into an empty model gives the reference state (every
    operation applied in call order); so does replaying it after a final
    compaction to a snapshot of the model; compactions started mid-way, from
    a snapshot of only the acknowledged changes or of everything, with
    appends arriving while they run, change neither.
    """
    check(Harness("file"), ops)


@settings(max_examples=50, deadline=None)
@given(ops=operations)
def test_memory_journal_state_survives_replay_and_compaction(ops: list[Op]) -> None:
    """
    The same property holds for the memory fake.
    """
    check(Harness("memory"), ops)


def check(harness: Harness, ops: list[Op]) -> None:
    try:
        run(harness, ops)
    finally:
        harness.cleanup()


def run(harness: Harness, ops: list[Op]) -> None:
    reference: dict[int, bytes] = {}
    acknowledged: dict[int, bytes] = {}
    appends: list[tuple[bytes, Deferred[None]]] = []
    compactions: list[Deferred[None]] = []
    # The exact record sequence the log must hold, and the one a running
    # compaction will hold: its snapshot, the appends not acknowledged when
    # compact() was called, then every later append.
    exact: list[bytes] = []
    compacting: list[list[bytes]] = []

    def forget(new: list[bytes]) -> None:
        compacting[:] = [m for m in compacting if m is not new]

    def compacted(_: None, new: list[bytes]) -> None:
        exact[:] = new
        forget(new)

    def refused(failure: Failure, new: list[bytes]) -> None:
        failure.trap(CompactionInProgress)
        forget(new)

    for op in ops:
        if op[0] in ("set", "delete"):
            payload = encode(op)
            apply(reference, payload)
            exact.append(payload)
            for new in compacting:
                new.append(payload)
            d = harness.log.append([payload])
            d.addCallback(lambda _, p=payload: apply(acknowledged, p))
            appends.append((payload, d))
        elif op[0] == "compact":
            source = acknowledged if op[1] == "acknowledged" else reference
            snapshot = list(snapshot_of(source))
            new = snapshot + [p for p, d in appends if not d.called]
            compacting.append(new)
            d = harness.log.compact(iter(snapshot))
            d.addCallbacks(compacted, refused, callbackArgs=(new,), errbackArgs=(new,))
            compactions.append(d)
        else:
            harness.step(op[1])  # type: ignore[arg-type]
    harness.drain()

    for _, d in appends:
        assert outcome(d) is None
    for d in compactions:
        assert outcome(d) is None
    assert compacting == []
    assert acknowledged == reference
    counters = (harness.log.record_count, harness.log.byte_count)

    log = harness.reopen()
    # replay() is meant to be consumed once.
    payloads = list(log.replay())
    assert payloads == exact
    assert replayed(payloads) == reference
    # The counters kept while running describe what is really in the log.
    assert counters == (log.record_count, log.byte_count)
    assert log.record_count == len(exact)

    final = log.compact(snapshot_of(acknowledged))
    harness.drain()
    assert outcome(final) is None
    assert log.record_count == len(reference)
    log = harness.reopen()
    assert replayed(log.replay()) == reference
    assert log.record_count == len(reference)
