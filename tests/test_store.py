"""
Tests for the store: commit ordering and durability, compaction with the real
state model, expiry sweeps, and a second daemon on the same directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthd.eventlog import FileJournal, MemoryJournal
from oauthd.state.entities import ACCESS, REFRESH, Client, Token
from oauthd.state.model import EXPIRY_BUCKET, State
from oauthd.state.records import (
    ClientPut,
    ClientRemoved,
    GrantRevoked,
    Record,
    RefreshUsed,
    TokenIssued,
    TokenRevoked,
    encode,
)
from oauthd.services.audit import log_audit
from oauthd.state.decision import Decision, audit
from oauthd.state.store import COMPACT_SLACK, SWEEP_INTERVAL, NotDurable, Store
from tests.daemon import REPO, Daemon
from tests.helpers import START, change
from oauthd.testing import InlineReactor, SteppingPool


def token(key: int, lifetime: int = 3600, kind: str = ACCESS, grant: str = "", client: str = "c1") -> Token:
    return Token(key, kind, client, "", "*", START, lifetime, grant, "")


CLIENT = ClientPut(Client(id="c1", name="one"))


class CommitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)

    def test_memory_changes_at_once_durability_later(self) -> None:
        """
        A commit is visible in memory immediately (so a concurrent request sees
        it) but its Deferred fires only once the journal has synced it.
        """
        pool = SteppingPool()
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory, True)
        journal = FileJournal.open(directory, InlineReactor(), pool=pool)  # type: ignore[arg-type]
        store = Store.load(journal, self.clock, log_audit)
        store.commit(change([CLIENT]))
        pool.run_all()
        done = store.commit(change([TokenIssued(token(1))]))
        assert 1 in store.state.tokens
        self.assertNoResult(done)
        pool.run_all()
        self.successResultOf(done)
        closed = journal.close()
        pool.run_all()
        self.successResultOf(closed)
        reopened = FileJournal.open(directory, InlineReactor(), pool=pool)  # type: ignore[arg-type]
        assert 1 in Store.load(reopened, self.clock, log_audit).state.tokens

    def test_a_change_the_log_refuses_at_once_changes_nothing(self) -> None:
        """
        Once the log has failed it refuses every append at once: the change
        is not applied to memory either (a refresh refused 503 must not have
        used its token).
        """
        journal = MemoryJournal()
        store = Store.load(journal, self.clock, log_audit)
        store.commit(change([CLIENT]))
        store.commit(change([TokenIssued(token(1))]))
        journal.fail(OSError(28, "No space left on device"))
        refused = store.commit(change([TokenRevoked(1), TokenIssued(token(2))]))
        self.failureResultOf(refused, NotDurable)
        assert set(store.state.tokens) == {1}

    def test_an_audit_sink_that_raises_fails_the_commit(self) -> None:
        """
        A decision that changes nothing whose events the audit sink cannot
        take (it raises) fails with L{NotDurable} rather than leave its
        caller waiting.
        """

        class Raising:
            failure = None

            def __call__(self, *args: object) -> None:
                raise OSError("the trail is gone")

        store = Store(State(), MemoryJournal(), self.clock, Raising())  # type: ignore[arg-type]
        decision = Decision("answer", (), (audit("thing.look", "ok"),))
        failure = self.failureResultOf(store.commit(decision), NotDurable)
        self.assertIsInstance(failure.value.reason, OSError)

    def test_a_token_memory_would_ignore_is_refused(self) -> None:
        """
        A token for a disabled or absent client is refused before anything
        is applied or journalled: memory would skip it while the journal kept
        it, and a compaction could later bring it to life.
        """
        journal = MemoryJournal()
        store = Store.load(journal, self.clock, log_audit)
        store.commit(change([ClientPut(Client(id="c1", name="one", enabled=False))]))
        for client in ("c1", "absent"):
            with self.assertRaises(ValueError):
                store.commit(change([TokenRevoked(5), TokenIssued(token(1, client=client))]))
        assert len(journal.payloads) == 1 and store.state.tokens == {}

    def test_sweep_is_sliced(self) -> None:
        """
        A million tokens expiring in the same minute are swept a slice per
        reactor turn, not in one stall.
        """
        store = Store.load(MemoryJournal(), self.clock, log_audit, sweep_slice=10)
        store.commit(change([CLIENT]))
        store.commit(change([TokenIssued(token(k, lifetime=10)) for k in range(1, 26)]))
        slices: list[tuple[int, bool]] = []
        sweep = store.state.sweep

        def recorded(now: float, limit: int) -> tuple[int, bool]:
            slices.append(sweep(now, limit))
            return slices[-1]

        self.patch(store.state, "sweep", recorded)
        store.startService()
        self.clock.advance(SWEEP_INTERVAL)
        assert slices == [(10, True), (10, True), (5, False)]
        assert store.state.tokens == {}
        self.successResultOf(store.stopService())

    def test_replayed_tokens_are_bucketed_from_the_start(self) -> None:
        """
        The tokens a restart replays are put in expiry buckets by sweeps
        that start with the service, a slice per reactor turn, and expire as
        those issued at run time do.
        """
        journal = MemoryJournal()
        store = Store.load(journal, self.clock, log_audit)
        store.commit(change([CLIENT]))
        store.commit(change([TokenIssued(token(k, lifetime=10)) for k in range(1, 26)]))
        restarted = Store.load(MemoryJournal(journal.payloads), self.clock, log_audit, sweep_slice=10)
        assert restarted.state.unbucketed == 25
        restarted.startService()
        self.clock.advance(0)
        assert restarted.state.unbucketed == 0 and len(restarted.state.tokens) == 25
        self.clock.advance(SWEEP_INTERVAL)
        assert restarted.state.tokens == {}
        self.successResultOf(restarted.stopService())

    def test_unencodable_records_change_nothing(self) -> None:
        journal = MemoryJournal()
        store = Store.load(journal, self.clock, log_audit)
        with self.assertRaises(ValueError):
            store.commit(change([TokenIssued(token(1)), GrantRevoked("tab\there")]))
        assert store.state.tokens == {} and journal.payloads == []

    def test_compaction_starts_when_dead_records_pile_up(self) -> None:
        """
        Issuing and revoking the same kind of token over and over does not grow
        the journal without bound: past the slack it is compacted to the live
        state.
        """
        journal = MemoryJournal()
        store = Store.load(journal, self.clock, log_audit)
        store.commit(change([CLIENT]))
        store.commit(change([TokenIssued(token(0, lifetime=0))]))
        for key in range(1, COMPACT_SLACK + 10):
            store.commit(change([TokenIssued(token(key)), TokenRevoked(key)]))
        assert journal.record_count < COMPACT_SLACK + 10
        rebuilt = Store.load(MemoryJournal(journal.payloads), self.clock, log_audit)
        assert set(rebuilt.state.tokens) == set(store.state.tokens) == {0}

    def test_sweep_runs_on_the_clock(self) -> None:
        store = Store.load(MemoryJournal(), self.clock, log_audit)
        store.commit(change([CLIENT]))
        store.commit(change([TokenIssued(token(1, lifetime=30)), TokenIssued(token(2, lifetime=0))]))
        store.startService()
        self.clock.advance(SWEEP_INTERVAL * 2)
        assert set(store.state.tokens) == {2}
        d = store.stopService()
        self.successResultOf(d)


# Operations for the property test: a tiny reference model of live tokens.
keys = st.integers(min_value=1, max_value=4)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), keys, st.sampled_from([0, 50, 500]), st.sampled_from(["", "g1", "g2"])),
        st.tuples(st.just("revoke"), keys),
        st.tuples(st.just("revoke_grant"), st.sampled_from(["g1", "g2"])),
        st.tuples(st.just("use"), keys),
        st.tuples(st.just("wait"), st.integers(min_value=1, max_value=300)),
        st.tuples(st.just("compact")),
        st.tuples(st.just("client"), st.sampled_from(["enable", "disable", "delete"])),
    ),
    max_size=40,
)


def live_view(state: State, now: float) -> dict[int, tuple[str, str]]:
    return {k: (t.kind, t.grant) for k, t in state.tokens.items() if t.live(now)}


@settings(max_examples=300, deadline=None)
@given(operations)
def test_compaction_preserves_live_state(ops: list[tuple[object, ...]]) -> None:
    """
    For random sequences of operations, replay(compact(journal)) and
    replay(journal) give the same live state, and both equal a simple
    reference model: a used refresh token is no longer a token, but is still
    known as its family's (reuse detection) until it would have expired; the
    token counts agree with a count of the tokens held.
    """
    clock = Clock()
    clock.advance(START)
    journal = MemoryJournal()
    store = Store.load(journal, clock, log_audit)
    uncompacted = MemoryJournal()
    reference: dict[int, tuple[str, str, int, int]] = {}  # key -> kind, grant, issued, lifetime
    used: dict[int, tuple[str, int, int]] = {}  # key -> grant, issued, lifetime
    store.commit(change([CLIENT]))
    uncompacted.append([encode(CLIENT)])
    client_enabled = True

    def commit(records: list[Record]) -> None:
        store.commit(change(records))
        uncompacted.append([encode(r) for r in records])

    for op in ops:
        now = int(clock.seconds())
        live = {k for k, (_, _, issued, life) in reference.items() if not life or now < issued + life}
        if op[0] == "issue":
            _, key, lifetime, grant = op
            assert isinstance(key, int) and isinstance(lifetime, int) and isinstance(grant, str)
            if key in store.state.tokens or key in store.state.families.spent or not client_enabled:
                continue
            kind = REFRESH if grant else ACCESS
            commit([TokenIssued(Token(key, kind, "c1", "", "*", now, lifetime, grant, ""))])
            reference[key] = (kind, grant, now, lifetime)
        elif op[0] == "revoke":
            commit([TokenRevoked(op[1])])  # type: ignore[arg-type]
            reference.pop(op[1], None)  # type: ignore[arg-type]
        elif op[0] == "revoke_grant":
            commit([GrantRevoked(op[1])])
            for key in [k for k, v in reference.items() if v[1] == op[1]]:
                del reference[key]
            for key in [k for k, v in used.items() if v[0] == op[1]]:
                del used[key]
        elif op[0] == "use":
            key = op[1]
            commit([RefreshUsed(key)])  # type: ignore[arg-type]
            if key in reference and reference[key][0] == REFRESH:
                kind, grant, issued, life = reference.pop(key)
                used[key] = (grant, issued, life)
        elif op[0] == "wait":
            clock.advance(op[1])  # type: ignore[arg-type]
        elif op[0] == "compact":
            store.compact()
        elif op[0] == "client":
            if op[1] == "delete":
                commit([ClientRemoved("c1")])
            else:
                client_enabled = op[1] == "enable"
                commit([ClientPut(Client(id="c1", name="one", enabled=client_enabled))])
            if op[1] != "enable":
                client_enabled = False
                reference.clear()
                used.clear()
        del live
        assert_counts(store.state)

    now = clock.seconds()
    expected = {k: (kind, grant) for k, (kind, grant, issued, life) in reference.items()
                if not life or now < issued + life}
    known = {k for k, (_, issued, life) in used.items() if not life or now < issued + life}
    assert live_view(store.state, now) == expected
    store.compact()
    from_compacted = Store.load(MemoryJournal(journal.payloads), clock, log_audit).state
    from_full = Store.load(MemoryJournal(uncompacted.payloads), clock, log_audit).state
    for state in (store.state, from_compacted, from_full):
        assert live_view(state, now) == expected
        assert all(state.used_family(k) is not None for k in known)
        assert_counts(state)
        # The sweep drops the tokens whose minute of expiry is over, and
        # the counts follow.
        state.sweep(now)
        assert_counts(state)
        assert live_view(state, now) == expected
        minute = int(now) // EXPIRY_BUCKET
        assert all(not t.expires_at or t.expires_at // EXPIRY_BUCKET >= minute for t in state.tokens.values())


def assert_counts(state: State) -> None:
    """
    The state's token counts are those of the tokens it holds.
    """
    held = list(state.tokens.values())
    assert state.token_count() == len(held)
    assert state.token_count(client_id="c1") == sum(1 for t in held if t.client_id == "c1")


def test_second_daemon_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    """
    While one daemon runs, a second on the same data directory exits 1 with a
    line saying another instance holds the lock.
    """
    data = tmp_path / "data"
    first = Daemon(data)
    try:
        twistd = str(Path(sys.executable).parent / "twistd")
        second = subprocess.run(
            [twistd, "--nodaemon", "--pidfile=", "oauthd", "--data", str(data),
             "--listen", "tcp:0:interface=127.0.0.1", "--control", f"unix:{tmp_path}/other.sock"],
            capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": ""},
        )
    finally:
        assert first.stop() == 0
    assert second.returncode == 1
    assert "another oauthd instance" in second.stderr
    assert "Traceback" not in second.stderr + second.stdout
