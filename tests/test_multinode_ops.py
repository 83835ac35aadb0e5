"""
Real C{twistd oauthd} daemons over one PostgreSQL event log, as operations
meet them: a node killed under load and started again converges with the
others; a compaction made while appending, then a new node starting from
its snapshot and the tail after it; one user name created on two nodes at
once over their control sockets.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oauthd.ctl.cli import main
from oauthd.ctl.output import Terminal
from tests.daemon import Daemon
from tests.postgres import fresh_database, shared_log_options
from tests.test_multinode_postgres import ctl, post
from tests.test_shared_log import sql

SETTLE = 15


def run_ctl(daemon: Daemon, *argv: str, stdin: str = "") -> tuple[int, str]:
    term = Terminal(stdin=io.StringIO(stdin), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    code = main(["--socket", str(daemon.data / "control.sock"), *argv], term)
    return code, term.stdout.getvalue() + term.stderr.getvalue()  # type: ignore[attr-defined]


def status(daemon: Daemon) -> dict[str, Any]:
    shown: dict[str, Any] = ctl(daemon, "--json", "status")
    return shown


def same_state(*daemons: Daemon) -> tuple[int, str]:
    """
    The position and state digest every one of C{daemons} shows once they
    have all applied the log to the same position (they must agree there).
    """
    deadline = time.monotonic() + SETTLE
    while True:
        shown = [status(daemon) for daemon in daemons]
        positions = {s["position"] for s in shown}
        if len(positions) == 1:
            digests = {s["state_digest"] for s in shown}
            assert len(digests) == 1, shown
            return positions.pop(), digests.pop()
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)


class Load:
    """
    Threads issuing tokens on the daemons given, until stopped.
    """

    def __init__(self, client: tuple[str, str], *daemons: Daemon) -> None:
        self.stopping = threading.Event()
        self.issued = 0
        self.threads = [threading.Thread(target=self.issue, args=(d,)) for d in daemons]
        self._client = client
        for thread in self.threads:
            thread.start()

    def issue(self, daemon: Daemon) -> None:
        while not self.stopping.is_set():
            try:
                code, _ = post(daemon, "/api/v1/oauth/token", {"grant_type": "client_credentials"},
                               self._client)
            except OSError:
                continue  # the daemon was killed
            if code == 200:
                self.issued += 1

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()


def cluster(tmp_path: Path, uri: str, *names: str) -> list[Daemon]:
    started: list[Daemon] = []
    try:
        for name in names:
            started.append(Daemon(tmp_path / name, *shared_log_options(tmp_path, uri)))
    except BaseException:
        for daemon in started:
            daemon.stop()
        raise
    return started


def stopping(daemons: list[Daemon], body: Callable[[], None]) -> None:
    try:
        body()
    finally:
        for daemon in daemons:
            assert daemon.stop() == 0, daemon.output()


def app(daemon: Daemon) -> tuple[str, str]:
    # The default token limit (10): under load the nodes race to evict, and
    # a node that restarts must drop what the others dropped.
    added = ctl(daemon, "clients", "add", "--name", "app", "--scope", "photos", "--introspect", "--json")
    return added["id"], added["secret"]


def test_killed_under_load_and_restarted(tmp_path: Path) -> None:
    """
    B, SIGKILLed while both nodes issue tokens, starts again on its data
    directory; afterwards both nodes show the same state at the same
    position, and B honours the tokens A issued while it was gone.
    """
    uri = fresh_database()
    a, b = cluster(tmp_path, uri, "a", "b")
    daemons = [a, b]

    def body() -> None:
        client = app(a)
        load = Load(client, a, b)
        try:
            time.sleep(1)
            b.process.kill()
            b.process.wait()
            b.log.close()
            time.sleep(0.5)
        finally:
            load.stop()
        assert load.issued > 0
        _, issued = post(a, "/api/v1/oauth/token", {"grant_type": "client_credentials"}, client)
        again = Daemon(tmp_path / "b", *shared_log_options(tmp_path, uri))
        daemons[1] = again
        same_state(a, again)
        code, body = post(again, "/api/v1/oauth/introspect", {"token": issued["access_token"]}, client)
        assert code == 200 and body["active"], body

    stopping(daemons, body)


def test_compacted_while_appending_then_a_new_node(tmp_path: Path) -> None:
    """
    A compaction on A while A and B append writes a snapshot; a node C
    started after it, on a new data directory, loads the snapshot and the
    tail after it, and agrees with A and B.
    """
    uri = fresh_database()
    a, b = cluster(tmp_path, uri, "a", "b")
    daemons = [a, b]

    def body() -> None:
        client = app(a)
        load = Load(client, a, b)
        try:
            time.sleep(0.5)
            code, shown = run_ctl(a, "compact")
            assert code == 0, shown
            time.sleep(0.5)
        finally:
            load.stop()
        [(snapshot_at,)] = sql(uri, "SELECT max(pos) FROM oauthd_snapshots WHERE complete")
        assert snapshot_at is not None and snapshot_at > 0
        _, issued = post(b, "/api/v1/oauth/token", {"grant_type": "client_credentials"}, client)
        c = Daemon(tmp_path / "c", *shared_log_options(tmp_path, uri))
        daemons.append(c)
        position, _ = same_state(a, b, c)
        assert position > snapshot_at
        code, shown = post(c, "/api/v1/oauth/introspect", {"token": issued["access_token"]}, client)
        assert code == 200 and shown["active"], shown

    stopping(daemons, body)


def test_same_user_name_on_both_at_once(tmp_path: Path) -> None:
    """
    The same user name added on A and on B at once over their control
    sockets: one succeeds, the other is refused; both nodes then hold the
    one user; every time.
    """
    uri = fresh_database()
    a, b = cluster(tmp_path, uri, "a", "b")

    def body() -> None:
        for n in range(5):
            name = f"carol{n}"
            start = threading.Barrier(2)
            codes: dict[str, int] = {}

            def add(daemon: Daemon, which: str) -> None:
                start.wait()
                codes[which], _ = run_ctl(daemon, "users", "add", name, "--password-stdin",
                                          stdin="correct horse battery staple\n")

            threads = [threading.Thread(target=add, args=(d, w)) for d, w in ((a, "a"), (b, "b"))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(codes.values()) == [0, 1], codes
            same_state(a, b)
            for daemon in (a, b):
                listed = json.loads(run_ctl(daemon, "--json", "users", "ls")[1])
                assert [u["name"] for u in listed].count(name) == 1, listed

    stopping([a, b], body)
