"""
What one client_credentials token request costs in oauthd's own code, in
process, with an in-memory journal. Asserts nothing; prints:

1. Microseconds per request through the protocol layer alone (no HTTP),
   with the audit event recorded three ways: in the daemon's audit trail
   (written inline, a write per request but no fdatasync: the daemon writes
   on its own thread, a group of requests sharing each write), as a
   log event through a text log observer (as under twistd without a trail),
   and not at all.
2. Microseconds per request through the whole HTTP stack (raw request bytes
   into an HTTP channel, no sockets, no reactor), oauthd against the bare
   Klein route of C{bench/token_endpoint.py} with and without twisted.web's
   form parsing (oauthd's site does without it, so the second difference
   is what oauthd's own work costs), in alternating slices so that the
   machine's drift hits all alike; and how many objects each request
   leaves for the cyclic garbage collector (which frees them later, and
   more dearly the longer a request was in flight).

3. With C{--instructions}: CPU instructions per request through the same
   whole HTTP stack, counted by valgrind's callgrind (Debian: apt-get
   install valgrind), for oauthd (with its metrics, as the daemon keeps
   them, and without) and the bare Klein route without form parsing. Instruction counts repeat exactly where timings swing with the
   machine's load: each figure is the difference between two runs of N and
   2N requests, divided by N, so start-up and warm-up cancel out.

    python bench/token_path.py [REQUESTS]      (default 20000)
    python bench/token_path.py --instructions [N]   (default 200)
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

from inprocess import bench_client, channel, no_sync, oauthd_server, token_request  # noqa: E402


def protocol_layer(requests: int, work: str) -> None:
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from oauthd.protocol import grants
    from oauthd.protocol.clientauth import ClientAuth
    from oauthd.services.audit import AuditTrail, log_audit
    from oauthd.testing import InlinePool, InlineReactor, MemoryServer

    log = open(os.path.join(work, "twistd.log"), "w")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(log)], redirectStandardIO=False,
                                     discardBuffer=True)
    server = MemoryServer.build()
    trail = AuditTrail(work, server.ctx.clock, InlineReactor(), pool=InlinePool(), sync=no_sync)
    added: list[object] = []
    server.add_client("bench", scope="metrics", max_tokens=10).addCallback(added.append)
    client, secret = added[0]  # type: ignore[misc]
    auth = ClientAuth(basic=(client.id, secret))
    params = {"grant_type": "client_credentials"}
    sinks = [
        ("audit trail", trail),
        ("audit as a twistd log line", log_audit),
        ("no audit", _NoAudit()),
    ]
    print("Protocol layer (a client_credentials decision, committed), in-memory journal:")
    for _ in range(2):
        for name, sink in sinks:
            server.store.audit_sink = sink  # type: ignore[assignment]
            answered: list[object] = []
            started = time.perf_counter()
            for _ in range(requests):
                decision = grants.token(server.ctx, params, auth, "127.0.0.1")
                server.store.commit(decision).addCallback(answered.append)  # type: ignore[arg-type]
            took = time.perf_counter() - started
            assert len(answered) == requests
            print(f"  {name:28} {took / requests * 1e6:7.1f} us per token request")


class _NoAudit:
    """
    An audit sink that records nothing.
    """

    failure = None

    def __call__(self, *args: object) -> None:
        pass

    def record_change(self, *args: object) -> Any:
        from twisted.internet.defer import succeed

        return succeed(None)

    def record_changes(self, events: object) -> None:
        return None


def _cyclic_garbage(site: Any, request: bytes, count: int = 200) -> float:
    protocol, transport = channel(site)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(count):
            protocol.dataReceived(request)
        gc.collect()
        left = len(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert transport.value().count(b"HTTP/1.1 200 ") == count
    return left / count


def http_stack(requests: int, work: str) -> None:
    from twisted.internet.task import Clock

    from token_endpoint import klein_site

    oauthd_site, request = _oauthd_site(work)
    os.mkdir(os.path.join(work, "no-metrics"))
    bare_site, bare_request = _oauthd_site(os.path.join(work, "no-metrics"), metrics=False)
    sites = {
        "bare Klein": klein_site(),
        # twisted.web's own form parsing, which oauthd's site turns off, is
        # a large part of the bare route's cost: without it, what is left
        # over is the HTTP stack alone, and what oauthd adds to it shows.
        "bare Klein, no form parsing": klein_site(parse_forms=False),
        "oauthd (audit trail)": oauthd_site,
        "oauthd, metrics off": bare_site,
    }
    # Each oauthd site has its own client; the bare routes take any request.
    sent = dict.fromkeys(sites, request)
    sent["oauthd, metrics off"] = bare_request
    for site in sites.values():
        # Each request leaves an idle timeout behind it; without a reactor
        # running, a clock is what expires them.
        site.reactor = Clock()
    channels = {name: channel(site) for name, site in sites.items()}
    spent = dict.fromkeys(sites, 0.0)
    slice_size = 200
    slices = max(1, requests // slice_size)
    for _ in range(slices):
        for name, (protocol, transport) in channels.items():
            started = time.perf_counter()
            for _ in range(slice_size):
                protocol.dataReceived(sent[name])
            spent[name] += time.perf_counter() - started
            assert transport.value().count(b"HTTP/1.1 200 ") == slice_size
            transport.clear()
    print(f"\nWhole HTTP stack in process, {slices} alternating slices of {slice_size} requests:")
    per = {name: took / (slices * slice_size) * 1e6 for name, took in spent.items()}
    for name, us in per.items():
        garbage = _cyclic_garbage(sites[name], sent[name])
        print(f"  {name:28} {us:7.1f} us per request   {garbage:5.1f} objects per request left to the cyclic GC")
    ours = per["oauthd (audit trail)"]
    for name in ("bare Klein", "bare Klein, no form parsing"):
        print(f"  oauthd costs {ours - per[name]:+.1f} us per request over {name}: {per[name] / ours:.2f}x its rate")
    print(f"  keeping metrics costs {ours - per['oauthd, metrics off']:+.2f} us per request")


def _oauthd_site(work: str, metrics: bool = True) -> tuple[Any, bytes]:
    """
    oauthd's HTTP site over an in-memory journal and an inline audit trail,
    with one client, and a client_credentials request for it; keeping its
    metrics as the daemon does, unless not C{metrics}.
    """
    server, site = oauthd_server(work, metrics=metrics)
    return site, token_request(*bench_client(server, max_tokens=10))


def instructions(requests: int) -> None:
    from instructions import TARGETS, per_request

    print(f"Instructions per token request, whole HTTP stack in process (callgrind, "
          f"runs of {requests} and {2 * requests} requests; bench/instructions.py has more targets):")
    for target in ("klein", "cc"):
        print(f"  {TARGETS[target]:44} {per_request(target, requests):12,.0f} instructions per request")


def main(requests: int) -> None:
    work = tempfile.mkdtemp(prefix="oauthd-token-path-")
    try:
        protocol_layer(requests, work)
        os.mkdir(os.path.join(work, "http"))
        http_stack(requests, os.path.join(work, "http"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--instructions"]:
        instructions(int(sys.argv[2]) if len(sys.argv) > 2 else 200)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
