"""
CPU instructions per request through the whole HTTP stack, in process,
counted by valgrind's callgrind (Debian: apt-get install valgrind). Asserts
nothing; prints a table.

Each target runs in a fresh process under callgrind twice, for N and 2N
requests (after a warm-up); the figure is the difference of the two counts
divided by N, so start-up and warm-up cancel out. Instruction counts repeat
where timings swing with the machine's load. The requests are raw bytes fed
into the site's protocol over a C{StringTransport}: no sockets, no client.

Targets: the bare twisted.web resource and the bare Klein route of
C{bench/token_endpoint.py}, each with and without twisted.web's form
parsing (oauthd's site does without it); oauthd's client_credentials token
request over an in-memory journal and over the real file journal in a
temporary directory (its writer thread, fsync, and the audit trail on
its own, paired with it, as in the daemon), and over the in-memory journal for a
client whose token limit (100000) is far off, holding a thousand tokens to
begin; introspection, a bearer check (userinfo), a refresh (each with the
token the previous one gave) and a revocation (each of another token),
over the in-memory journal. The in-memory targets
write the daemon's audit trail inline, their clock moving a millisecond a
request so that its batched writes happen as in the daemon.

oauthd's own work is each target's count minus the bare Klein route's
without form parsing (the stack every oauthd route runs on).

The C{daemon-} targets count the same on the real daemon, in a second
table (C{bench/daemon_instructions.py}): a real C{twistd oauthd} with its
file journal, over a real socket, one request at a time on a keep-alive
connection, counting switched on once it serves; their own work is
counted over the bare Klein route served the same way. C{--tree} runs the
daemons on another checkout's code (say main's, for a figure before a
change).

    python bench/instructions.py [N] [--jobs 2] [--only TARGET ...] [--tree DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import daemon_instructions as daemon  # noqa: E402
from inprocess import (  # noqa: E402
    basic, bench_client, channel, done, oauthd_server, raw_request, token_request,
)

WARMUP = 100
MANY_HELD = 1000

TARGETS = {
    "web": "bare twisted.web, no form parsing",
    "klein": "bare Klein, no form parsing",
    "web-forms": "bare twisted.web (form parsing)",
    "klein-forms": "bare Klein (form parsing)",
    "cc": "oauthd client_credentials, memory journal",
    "cc-file": "oauthd client_credentials, file journal",
    "cc-many": "oauthd client_credentials, max_tokens 100000",
    "introspect": "oauthd introspection",
    "userinfo": "oauthd userinfo (bearer check)",
    "refresh": "oauthd refresh",
    "revoke": "oauthd revoke",
}
BASELINE = "klein"


class Target:
    """
    A site and the requests to send it, one at a time.
    """

    def __init__(self, site: Any, request: bytes | Callable[[], bytes], clock: Any = None,
                 reactor: Any = None) -> None:
        self.site = site
        self._request = request
        self._clock = clock
        self._reactor = reactor
        self.protocol, self.transport = channel(site)
        self.last = b""

    def send(self) -> None:
        request = self._request if isinstance(self._request, bytes) else self._request()
        self.protocol.dataReceived(request)
        if self._reactor is not None:
            while not self.transport.value():
                _turn(self._reactor)
        self.last = self.transport.value()
        if not self.last.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"not answered 200: {self.last[:300]!r}")
        self.transport.clear()
        if self._clock is not None:
            self._clock.advance(0.001)


def _turn(reactor: Any) -> None:
    """
    One turn of C{reactor}: wait for I/O (a thread's result wakes it) at
    most until the next timed call is due, then run what is due.
    """
    delay = reactor.timeout()
    reactor.doIteration(1.0 if delay is None else min(delay, 1.0))
    reactor.runUntilCurrent()


def _baseline(name: str) -> Target:
    from twisted.internet.task import Clock

    from token_endpoint import klein_site, web_site

    build = web_site if name.startswith("web") else klein_site
    site = build(parse_forms=name.endswith("-forms"))
    # Each request leaves an idle timeout behind it; with no reactor
    # running, a clock is what holds them.
    site.reactor = Clock()
    return Target(site, token_request("client", "secret"))


def _oauthd(name: str, work: str, total: int) -> Target:
    if name == "cc-file":
        from twisted.internet import reactor

        from oauthd.eventlog import FileJournal

        journal = FileJournal.open(os.path.join(work, "data"), reactor)
        server, site = oauthd_server(work, journal, reactor)
        client_id, secret = _durable_client(server, reactor)
        return Target(site, token_request(client_id, secret), reactor=reactor)
    server, site = oauthd_server(work)
    clock = server.ctx.clock
    if name == "cc":
        client_id, secret = bench_client(server, max_tokens=10)
        return Target(site, token_request(client_id, secret), clock)
    if name == "cc-many":
        # Beside the cc target's client, one whose token limit is far off,
        # holding MANY_HELD tokens before the warm-up.
        bench_client(server, max_tokens=10)
        client_id, secret = bench_client(server, name="many", max_tokens=100000)
        for _ in range(MANY_HELD):
            done(server.issue_token(scope="metrics", lifetime=86400, client=server.state.clients[client_id]))
        return Target(site, token_request(client_id, secret), clock)
    if name == "introspect":
        client_id, secret = bench_client(server)
        rs_id, rs_secret = bench_client(server, name="resource server", introspect=True)
        token, _ = done(server.issue_token(scope="metrics", lifetime=86400, client=server.state.clients[client_id]))
        return Target(site, raw_request("POST", "/api/v1/oauth/introspect", basic(rs_id, rs_secret),
                                        b"token=" + token.encode()), clock)
    if name == "userinfo":
        client_id, _ = bench_client(server, scope="openid profile email")
        done(server.add_user("alice", "password", full_name="Alice Liddell", email="alice@example.com"))
        token, _ = done(server.issue_token(scope="openid profile email", lifetime=86400,
                                           client=server.state.clients[client_id], user="alice"))
        return Target(site, raw_request("GET", "/api/v1/oauth/userinfo", {"Authorization": "Bearer " + token}),
                      clock)
    if name == "refresh":
        client_id, secret = bench_client(server, scope="metrics",
                                         grant_types=("password", "refresh_token"))
        done(server.add_user("alice", "password"))
        target = Target(site, b"", clock)
        target.protocol.dataReceived(raw_request(
            "POST", "/api/v1/oauth/token", basic(client_id, secret),
            b"grant_type=password&username=alice&password=password&scope=metrics"))
        target.last = target.transport.value()
        target.transport.clear()

        # Each request built from the last answer's refresh token (48
        # characters, so the length is the same) with as little work as
        # possible: the harness's, not oauthd's.
        form = b"grant_type=refresh_token&refresh_token="
        head = raw_request("POST", "/api/v1/oauth/token", basic(client_id, secret), form + b"x" * 48)[:-48]
        field = b'"refresh_token":"'

        def refresh() -> bytes:
            start = target.last.index(field) + len(field)
            return head + target.last[start:start + 48]

        target._request = refresh
        return target
    if name == "revoke":
        # A token limit above them all: evicted ones would be revoked already.
        client_id, secret = bench_client(server, max_tokens=total)
        client = server.state.clients[client_id]
        # As many tokens whatever N is, so setting up costs the same; each
        # request built beforehand (the harness's work, not oauthd's).
        auth = basic(client_id, secret)
        requests = [raw_request("POST", "/api/v1/oauth/revoke", auth, b"token=" + done(server.issue_token(
            scope="metrics", lifetime=86400, client=client))[0].encode()) for _ in range(total)]
        requests.reverse()
        return Target(site, requests.pop, clock)
    raise SystemExit(f"unknown target {name!r}")


def _durable_client(server: Any, reactor: Any) -> tuple[str, str]:
    """
    Add the bench client over the file journal, running the reactor until
    its record is durable.
    """
    added: list[Any] = []
    server.add_client("bench", scope="metrics", max_tokens=10).addBoth(added.append)
    while not added:
        _turn(reactor)
    client, secret = added[0]
    return client.id, secret


def drive(name: str, requests: int, total: int) -> None:
    """
    Send C{requests} requests to target C{name} after L{WARMUP} more.
    """
    work = tempfile.mkdtemp(prefix="oauthd-instructions-")
    try:
        target = _baseline(name) if name in ("web", "web-forms", "klein", "klein-forms") else _oauthd(
            name, work, total)
        for _ in range(WARMUP):
            target.send()
        # As the daemon does once it has replayed its journal: what was
        # built to start is out of the collector's reach, so each request's
        # count does not depend on how much was loaded.
        gc.collect()
        gc.freeze()
        for _ in range(requests):
            target.send()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()
    # Threads of the file journal and the audit trail are left running.
    os._exit(0)


def instructions_of(name: str, requests: int, total: int) -> int:
    with tempfile.TemporaryDirectory(prefix="oauthd-callgrind-") as out:
        path = os.path.join(out, "callgrind.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={path}",
             sys.executable, os.path.abspath(__file__), "--drive", name, str(requests), str(total)],
            check=True, capture_output=True, env=dict(os.environ, PYTHONHASHSEED="0"),
        )
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def per_request(name: str, requests: int, jobs: int = 2) -> float:
    total = WARMUP + 2 * requests + 10
    with ThreadPoolExecutor(jobs) as pool:
        few, many = pool.map(lambda n: instructions_of(name, n, total), (requests, 2 * requests))
    return (many - few) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requests", type=int, nargs="?", default=200, help="N")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at once")
    parser.add_argument("--only", nargs="+", choices=[*TARGETS, *daemon.TARGETS],
                        help="these targets (and their baseline)")
    parser.add_argument("--tree", default=REPO, help="the checkout whose code the daemon targets run")
    parser.add_argument("--drive", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        drive(args.drive[0], int(args.drive[1]), int(args.drive[2]))
        return
    names = [n for n in TARGETS if n != BASELINE and (not args.only or n in args.only)]
    daemons = [n for n in daemon.TARGETS if n != daemon.BASELINE and (not args.only or n in args.only)]
    if names or not daemons:
        print(f"Instructions per request, whole HTTP stack in process (callgrind; runs of "
              f"{args.requests} and {2 * args.requests} requests after {WARMUP} to warm up):\n")
        _table([BASELINE, *names], TARGETS, lambda name: per_request(name, args.requests, args.jobs))
        print(f"\nown work: the target's count minus the {TARGETS[BASELINE]}")
    if daemons:
        print(f"\nInstructions per request, real daemon over a socket (callgrind, counting on once it "
              f"serves; {args.requests} then {2 * args.requests} requests after {daemon.WARMUP} to warm up; "
              f"code of {args.tree}):\n")
        with ThreadPoolExecutor(args.jobs) as pool:
            counts = dict(zip([daemon.BASELINE, *daemons], pool.map(
                lambda name: daemon.per_request(name, args.requests, args.tree), [daemon.BASELINE, *daemons])))
        _table([daemon.BASELINE, *daemons], daemon.TARGETS, counts.__getitem__)
        print(f"\nown work: the target's count minus the {daemon.TARGETS[daemon.BASELINE]}")


def _table(names: list[str], titles: dict[str, str], count_of: Callable[[str], float]) -> None:
    """
    Print each target's count and, for oauthd's, its own work over the
    first (the baseline).
    """
    print(f"{'':44} {'instructions':>14} {'own work':>12}")
    base = 0.0
    for name in names:
        count = count_of(name)
        if name == names[0]:
            base = count
        own = f"{count - base:12,.0f}" if name != names[0] and "klein" not in name and "web" not in name else ""
        print(f"{titles[name]:44} {count:14,.0f} {own}", flush=True)


if __name__ == "__main__":
    main()
