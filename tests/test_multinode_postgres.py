"""
Two real C{twistd oauthd} daemons on loopback over one PostgreSQL event log
(C{--eventlog}): what one issues the other honours, what one revokes the
other refuses, and a refresh token raced on both rotates once.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oauthd.ctl.cli import main
from oauthd.ctl.output import Terminal
from tests.daemon import Daemon
from tests.postgres import fresh_database, shared_log_options

PASSWORD = "correct horse battery staple"
RACES = 10
SOON = 1


def ctl(daemon: Daemon, *argv: str, stdin: str = "") -> Any:
    term = Terminal(stdin=io.StringIO(stdin), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    code = main(["--socket", str(daemon.data / "control.sock"), *argv], term)
    assert code == 0, term.stderr.getvalue()  # type: ignore[attr-defined]
    out = term.stdout.getvalue()  # type: ignore[attr-defined]
    return json.loads(out) if "--json" in argv else out


def post(daemon: Daemon, path: str, form: dict[str, str], client: tuple[str, str]) -> tuple[int, Any]:
    basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
    request = urllib.request.Request(daemon.url + path, data=urllib.parse.urlencode(form).encode(),
                                     headers={"Authorization": "Basic " + basic})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


class Cluster:
    def __init__(self, a: Daemon, b: Daemon, client: tuple[str, str]) -> None:
        self.a, self.b, self.client = a, b, client

    def login(self, daemon: Daemon) -> dict[str, Any]:
        code, body = post(daemon, "/api/v1/oauth/token",
                          {"grant_type": "password", "username": "alice", "password": PASSWORD}, self.client)
        assert code == 200, body
        return dict(body)

    def active(self, daemon: Daemon, token: str) -> bool:
        code, body = post(daemon, "/api/v1/oauth/introspect", {"token": token}, self.client)
        assert code == 200, body
        return bool(body["active"])

    def inactive_soon(self, daemon: Daemon, token: str) -> None:
        """
        C{daemon} refuses C{token} within C{SOON} seconds (another node
        changed it: this one follows the log, woken by PostgreSQL's
        notification, else by its poll every second).  Only a check sent
        once the bound has passed must be refused, so a loaded machine's
        slow client does not count against the server.
        """
        start = time.monotonic()
        while True:
            sent = time.monotonic()
            if not self.active(daemon, token):
                return
            assert sent - start < SOON, f"{daemon.url} still honours the token"
            time.sleep(0.01)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    uri = fresh_database()
    a = Daemon(tmp_path / "a", *shared_log_options(tmp_path, uri))
    try:
        b = Daemon(tmp_path / "b", *shared_log_options(tmp_path, uri))
    except BaseException:
        a.stop()
        raise
    made = Cluster(a, b, ("", ""))
    try:
        ctl(a, "users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        added = ctl(a, "clients", "add", "--name", "app", "--introspect", "--grant", "password",
                    "--grant", "refresh_token", "--json")
        made.client = (added["id"], added["secret"])
        yield made
    finally:
        # The daemons the test left running: it may have started one anew.
        assert made.a.stop() == 0, made.a.output()
        assert made.b.stop() == 0, made.b.output()


def test_issued_on_a_introspects_on_b(cluster: Cluster) -> None:
    """
    A token issued on A is active on B as soon as A has answered.
    """
    for _ in range(5):
        assert cluster.active(cluster.b, cluster.login(cluster.a)["access_token"])


def test_revoked_on_b_seen_on_a(cluster: Cluster) -> None:
    """
    A token revoked on B is inactive on A soon after B's answer (within a
    second; it takes milliseconds), and on B at once, even when B has not
    yet delivered it when the revocation comes.
    """
    for _ in range(5):
        issued = cluster.login(cluster.a)
        code, _ = post(cluster.b, "/api/v1/oauth/revoke", {"token": issued["access_token"]}, cluster.client)
        assert code == 200
        assert not cluster.active(cluster.b, issued["access_token"])
        cluster.inactive_soon(cluster.a, issued["access_token"])


def test_refresh_raced_on_a_and_b(cluster: Cluster) -> None:
    """
    The same refresh token sent to A and B at once: exactly one gets new
    tokens, the other is refused, and the family is revoked on both.
    """
    for _ in range(RACES):
        refresh = cluster.login(cluster.a)["refresh_token"]
        assert cluster.active(cluster.b, refresh)
        start = threading.Barrier(2)
        answers: list[tuple[int, Any]] = []

        def race(daemon: Daemon) -> None:
            start.wait()
            answers.append(post(daemon, "/api/v1/oauth/token",
                                {"grant_type": "refresh_token", "refresh_token": refresh}, cluster.client))

        threads = [threading.Thread(target=race, args=(d,)) for d in (cluster.a, cluster.b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(code for code, _ in answers) == [200, 400], answers
        winner = next(body for code, body in answers if code == 200)
        loser = next(body for code, body in answers if code == 400)
        assert loser["error"] == "invalid_grant"
        for daemon in (cluster.a, cluster.b):
            cluster.inactive_soon(daemon, winner["refresh_token"])


def test_revoked_on_a_while_rotating_on_b(cluster: Cluster) -> None:
    """
    A refresh token revoked on A (its grant with it, RFC 7009) while B
    rotates it: whichever the log takes first, no token of the grant is
    left active on either node, the new ones B may have answered included.
    """
    for _ in range(RACES):
        issued = cluster.login(cluster.a)
        assert cluster.active(cluster.b, issued["refresh_token"])
        start = threading.Barrier(2)
        answers: dict[str, tuple[int, Any]] = {}

        def revoke() -> None:
            start.wait()
            answers["revoke"] = post(cluster.a, "/api/v1/oauth/revoke", {"token": issued["refresh_token"]},
                                     cluster.client)

        def rotate() -> None:
            start.wait()
            answers["rotate"] = post(cluster.b, "/api/v1/oauth/token",
                                     {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]},
                                     cluster.client)

        threads = [threading.Thread(target=revoke), threading.Thread(target=rotate)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers["revoke"][0] == 200, answers
        code, rotated = answers["rotate"]
        assert code in (200, 400), answers
        left = [issued["access_token"], issued["refresh_token"]]
        if code == 200:
            left += [rotated["access_token"], rotated["refresh_token"]]
        else:
            assert rotated["error"] == "invalid_grant", answers
        for daemon in (cluster.a, cluster.b):
            for token in left:
                cluster.inactive_soon(daemon, token)


def test_refresh_rotated_on_a_replayed_on_b(cluster: Cluster) -> None:
    """
    A refresh token rotated on A and presented again on B is a reuse: B
    refuses it and the family is revoked on both.
    """
    issued = cluster.login(cluster.a)
    code, rotated = post(cluster.a, "/api/v1/oauth/token",
                         {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}, cluster.client)
    assert code == 200, rotated
    code, body = post(cluster.b, "/api/v1/oauth/token",
                      {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}, cluster.client)
    assert (code, body["error"]) == (400, "invalid_grant")
    for daemon in (cluster.a, cluster.b):
        cluster.inactive_soon(daemon, rotated["access_token"])
        cluster.inactive_soon(daemon, rotated["refresh_token"])
