"""
The audit trail of two real C{twistd oauthd} daemons over one PostgreSQL
event log: a change made on one node is read by C{oauthctl audit} on the
other with the first node's id, each node's trail verifies, and a node
started again writes what it missed once.
"""

from __future__ import annotations

import io
import json
import time
import tomllib
from pathlib import Path
from typing import Any

from oauthd.ctl.cli import main
from oauthd.ctl.output import Terminal
from tests.daemon import Daemon
from tests.postgres import shared_log_options
from tests.test_multinode_postgres import Cluster, cluster, ctl, post  # noqa: F401 (the fixture)

SOON = 10


def rows(daemon: Daemon, *argv: str) -> list[dict[str, Any]]:
    """
    What C{oauthctl audit --json ARGV} shows on C{daemon}.
    """
    term = Terminal(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    code = main(["--socket", str(daemon.data / "control.sock"), "audit", "--json", *argv], term)
    assert code == 0, term.stderr.getvalue()  # type: ignore[attr-defined]
    return [json.loads(line) for line in term.stdout.getvalue().splitlines()]  # type: ignore[attr-defined]


def soon(daemon: Daemon, *argv: str, count: int = 1) -> list[dict[str, Any]]:
    """
    The rows C{oauthctl audit ARGV} shows on C{daemon} once it shows
    C{count} of them.
    """
    deadline = time.monotonic() + SOON
    while True:
        found = rows(daemon, *argv)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def node_id(daemon: Daemon) -> str:
    shown: dict[str, Any] = ctl(daemon, "--json", "status")
    return str(shown["node"])


def test_a_change_on_a_is_in_the_audit_of_b(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    """
    A client added over A's control socket, and a token revoked on A, are
    shown by C{oauthctl audit} on B as A's changes (C{--node} selects
    them), at the same log positions as on A; both trails verify.
    """
    a_id, b_id = node_id(cluster.a), node_id(cluster.b)
    assert a_id and b_id and a_id != b_id
    added = ctl(cluster.a, "clients", "add", "--name", "audited", "--json")
    (on_b,) = soon(cluster.b, "--event", "client.add", "--client", added["id"])
    (on_a,) = rows(cluster.a, "--event", "client.add", "--client", added["id"])
    assert (on_b["node"], on_b["outcome"], on_b["pos"]) == (a_id, "ok", on_a["pos"])
    issued = cluster.login(cluster.b)
    code, _ = post(cluster.a, "/api/v1/oauth/revoke", {"token": issued["access_token"]}, cluster.client)
    assert code == 200
    revoked = soon(cluster.b, "--event", "token.revoke", "--node", a_id)
    assert [row["node"] for row in revoked] == [a_id]
    assert {row["node"] for row in rows(cluster.a, "--event", "token.issue")} == {b_id}
    assert all(row.get("node", b_id) == b_id for row in rows(cluster.b, "--node", b_id))
    for daemon in (cluster.a, cluster.b):
        verified = ctl(daemon, "audit", "verify", "--json")
        assert verified["intact"], verified


def test_a_restarted_node_writes_what_it_missed_once(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    """
    B stops; A adds a client; B starts again and its trail then has A's
    change, once, and every change of the cluster at one position each.
    """
    uri = _uri(tmp_path)
    ctl(cluster.a, "clients", "add", "--name", "before", "--json")
    soon(cluster.b, "--event", "client.add", count=2)
    assert cluster.b.stop() == 0, cluster.b.output()
    added = ctl(cluster.a, "clients", "add", "--name", "meanwhile", "--json")
    cluster.b = Daemon(cluster.b.data, *shared_log_options(tmp_path, uri))
    (missed,) = soon(cluster.b, "--event", "client.add", "--client", added["id"])
    assert missed["node"] == node_id(cluster.a)
    assert changes(cluster.b) == changes(cluster.a)


def changes(daemon: Daemon) -> list[str]:
    """
    The lines of the cluster's changes in C{daemon}'s trail, without their
    place in it; each once.
    """
    found = [json.dumps({k: v for k, v in row.items() if k not in ("seq", "time")}, sort_keys=True)
             for row in rows(daemon) if "pos" in row]
    assert len(found) == len(set(found)), found
    return found


def _uri(tmp_path: Path) -> str:
    """
    The event log the cluster's daemons were given (in their config file).
    """
    for config in tmp_path.glob("*.toml"):
        return str(tomllib.loads(config.read_text())["eventlog"])
    raise AssertionError("no shared-log configuration in " + str(tmp_path))
