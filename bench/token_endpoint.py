"""
Benchmark the token endpoint and introspection of a real oauthd daemon
against two baselines measured in the same run: a bare Klein app with one
POST route returning a fixed JSON body, and a bare twisted.web resource doing
the same. Prints requests/s and p50/p99 latency, the ratios, and a short
profile of the token path. It prints figures; it asserts nothing.

Needs wrk (Debian: apt-get install wrk) and taskset. The server runs pinned
to one core and wrk to another (--server-cpu, --load-cpu). Durability is on:
the daemon fsyncs its journal (group commit) before every answer.

    python bench/token_endpoint.py [--duration 3] [--rounds 7] [--connections 32]
    python bench/token_endpoint.py --compare-tree DIR [--rounds 9]

With C{--compare-tree}, only two daemons run: this tree's and the one in
DIR (another checkout, say of the commit before a change), each on a copy
of the same data, in interleaved rounds of client_credentials requests; it
prints each round's ratio of this tree's rate to DIR's, and their median.

More targets take the durable figure apart. The bare Klein route parses form
bodies, as twisted.web does by default, and oauthd's site does not (it
parses bodies itself), which is worth more than 100 us a request here; so
three variants of the route leave form parsing off, to differ from oauthd
only in what oauthd does per request: answering at once, answering on the
reactor's next turn (what answering later costs by itself), and answering
once one record (a token's worth) appended to an oauthd file journal is durable
(durability and nothing else: the floor a durable token endpoint on this
stack stands on). The daemon's service tree with an in-memory journal is
everything but durability.

Every server logs like C{twistd -n} into a file, and like oauthd's default
configuration (C{access_log = false}) none writes a line per request; oauthd
writes one audit line per issued token, which the baselines do not. The
bare routes leave about twice as many objects per request to the cyclic
garbage collector as oauthd (C{bench/token_path.py} counts them).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BODY = b'{"access_token":"0123456789abcdef0123456789abcdef0123456789abcdef","token_type":"Bearer"}'
# About what oauthd journals per token it issues to a client at its token
# limit: the token (87 bytes) and the revocation of the oldest one (37).
RECORD = b"x" * 120


# -- the servers ---------------------------------------------------------------


def _start_logging(path: str) -> None:
    """
    Log like C{twistd -n}, and freeze the start-up objects out of the
    garbage collector's reach as oauthd does after replaying its journal,
    so the baselines are not handicapped by either.
    """
    import gc

    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(open(path, "a"))])
    gc.freeze()


def web_site(parse_forms: bool = True) -> Any:
    """
    The bare twisted.web baseline: one leaf resource answering every POST
    with a fixed JSON body.

    @param parse_forms: whether twisted.web parses form bodies, as it does
        by default.
    """
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Fixed(Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> bytes:
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Cache-Control", b"no-store")
            return BODY

    site = Site(Fixed(), parsePOSTFormSubmission=parse_forms)
    site.displayTracebacks = False
    site.log = lambda request: None  # type: ignore[method-assign]
    return site


def serve_web(port: int, log: str) -> None:
    from twisted.internet import reactor

    _start_logging(log)
    reactor.listenTCP(port, web_site(), interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


def klein_site(journal: Any = None, parse_forms: bool = True) -> Any:
    """
    The bare Klein baseline: one POST route returning a fixed JSON body;
    given a C{journal}, it first appends one fixed record and answers once
    that is done.

    @param parse_forms: whether twisted.web parses form bodies, as it does
        by default (oauthd's site does not: it parses bodies itself).
    """
    from klein import Klein

    from twisted.web.server import Site

    app = Klein()

    @app.route("/api/v1/oauth/token", methods=["POST"])
    def token(request: Any) -> Any:
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        if journal is None:
            return BODY
        return journal.append([RECORD]).addCallback(lambda _: BODY)

    site = Site(app.resource(), parsePOSTFormSubmission=parse_forms)
    site.log = lambda request: None  # type: ignore[method-assign]
    return site


class _NextTurn:
    """
    A journal that keeps nothing and is done on the reactor's next turn:
    what answering later, rather than at once, costs by itself.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def append(self, payloads: object) -> Any:
        from twisted.internet.defer import Deferred

        done: Any = Deferred()
        self._reactor.callLater(0, done.callback, None)
        return done


def serve_klein(port: int, log: str, mode: str = "forms", data: str = "") -> None:
    """
    A bare Klein baseline. C{forms}: as it comes, twisted.web parsing form
    bodies. The others leave form parsing off, as oauthd's site does:
    C{plain} answers at once, C{later} on the reactor's next turn, and
    C{durable} once a record appended to an oauthd file journal in C{data}
    is durable (fsync, group commit).
    """
    from twisted.internet import reactor

    from oauthd.eventlog import FileJournal

    _start_logging(log)
    journals = {
        "forms": lambda: None,
        "plain": lambda: None,
        "later": lambda: _NextTurn(reactor),
        "durable": lambda: FileJournal.open(data, reactor),
    }
    site = klein_site(journals[mode](), parse_forms=mode == "forms")
    site.displayTracebacks = False
    reactor.listenTCP(port, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


def serve_memory(port: int, log: str, data: str) -> None:
    """
    The real daemon's service tree with its journal's records replayed into
    an in-memory journal: everything but durability, to show what the
    durable write costs.
    """
    from twisted.internet import reactor

    from oauthd.config import build_config
    from oauthd.eventlog import FileJournal, MemoryJournal
    from oauthd.tap import build_service

    _start_logging(log)
    # The file journal is left open (its lock held) until the process ends.
    payloads = list(FileJournal.open(data, reactor, fsync=False).replay())
    config = build_config({"listen": [f"tcp:{port}:interface=127.0.0.1"], "data": data})
    service = build_service(config, reactor, journal=MemoryJournal(payloads))
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))  # type: ignore[attr-defined]
    service.startService()
    reactor.run()  # type: ignore[attr-defined]


def serve_profiled(port: int, log: str, data: str, out: str) -> None:
    """
    The real daemon's service tree (as twistd builds it) under cProfile,
    until SIGTERM.
    """
    import cProfile

    from twisted.internet import reactor

    from oauthd.config import build_config
    from oauthd.tap import build_service

    _start_logging(log)
    config = build_config({"listen": [f"tcp:{port}:interface=127.0.0.1"], "data": data})
    service = build_service(config, reactor)
    profile = cProfile.Profile()

    def stop(*_: object) -> None:
        reactor.callFromThread(reactor.stop)  # type: ignore[attr-defined]

    signal.signal(signal.SIGTERM, stop)
    service.startService()
    profile.enable()
    reactor.run()  # type: ignore[attr-defined]
    profile.disable()
    profile.dump_stats(out)


# -- the driver ------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """
    C{count} distinct free ports: all are held at once while chosen, so
    two servers are never handed the same one.
    """
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)


def _seed(data: Path) -> dict[str, str]:
    from oauthd.testing import seed

    async def build(server: Any) -> dict[str, str]:
        client, secret = await server.add_client("bench", scope="metrics")
        rs, rs_secret = await server.add_client("resource server", scope="metrics", introspect=True)
        token, _ = await server.issue_token(scope="metrics", lifetime=86400, client=client)
        return {"client": client.id, "secret": secret, "rs": rs.id, "rs_secret": rs_secret,
                "token": token}

    result: dict[str, str] = seed(str(data), time.time(), build)
    return result


def _lua(path: Path, client: str, secret: str, body: str) -> Path:
    basic = base64.b64encode(f"{client}:{secret}".encode()).decode()
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{body}"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Authorization"] = "Basic {basic}"\n'
    )
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _parse(output: str) -> dict[str, float]:
    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*", output)
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p50": latency("50"),
        "p99": latency("99"),
        "non2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 0.0 if errors is None else 1.0,
    }


def _median_ratio(runs: list[dict[str, float]], baseline: list[dict[str, float]]) -> float:
    ratios = sorted(run["rps"] / base["rps"] for run, base in zip(runs, baseline))
    return ratios[len(ratios) // 2]


def _wrk(args: argparse.Namespace, url: str, script: Path, duration: int) -> dict[str, float]:
    command = ["taskset", "-c", str(args.load_cpu), "wrk", "-t1", f"-c{args.connections}",
               f"-d{duration}s", "--latency", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return _parse(output)


def _run_server(
    args: argparse.Namespace, argv: list[str], port: int, log: Path, tree: Path = REPO,
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("NOTIFY_SOCKET", None)
    process = subprocess.Popen(["taskset", "-c", str(args.server_cpu), *argv],
                               stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)
    _wait_for(port, process)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _cpu_seconds(pid: int) -> float:
    """
    The CPU time (user and system, all threads) process C{pid} has used.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare_trees(args: argparse.Namespace, work: Path, data: Path, script: Path, twistd: str) -> None:
    """
    This tree's daemon against the one in C{args.compare_tree}, each on a
    copy of C{data}, in interleaved rounds.
    """
    other = args.compare_tree.resolve()
    shutil.copytree(data, work / "data-other")
    ports = _free_ports(2)
    builds = [("this tree", REPO, data, ports[0]), (str(other), other, work / "data-other", ports[1])]
    servers = [
        _run_server(args, [twistd, "--nodaemon", "--pidfile=", "oauthd", "--listen",
                           f"tcp:{port}:interface=127.0.0.1", "--data", str(directory)],
                    port, work / f"oauthd-{port}.out", tree)
        for _, tree, directory, port in builds
    ]
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in builds}
    pids = {name: process.pid for (name, *_), process in zip(builds, servers)}
    try:
        for _, _, _, port in builds:
            _wrk(args, f"http://127.0.0.1:{port}/api/v1/oauth/token", script, args.warmup)
        for number in range(args.rounds):
            # Alternate which goes first, so neither always follows the other.
            order = builds if number % 2 == 0 else builds[::-1]
            for name, _, _, port in order:
                cpu = _cpu_seconds(pids[name])
                result = _wrk(args, f"http://127.0.0.1:{port}/api/v1/oauth/token", script, args.duration)
                result["cpu_us"] = (_cpu_seconds(pids[name]) - cpu) / (result["rps"] * args.duration) * 1e6
                rounds[name].append(result)
    finally:
        for process in servers:
            _stop(process)
    mine, theirs = rounds["this tree"], rounds[str(other)]
    print(f"\nclient_credentials, {args.connections} connections, {args.rounds} interleaved rounds of "
          f"{args.duration} s; server on CPU {args.server_cpu}, wrk on CPU {args.load_cpu}; fsync on\n")
    for name, runs in rounds.items():
        every_round = " ".join(f"{r['rps']:.0f}" for r in runs)
        cpu = sorted(r["cpu_us"] for r in runs)[len(runs) // 2]
        print(f"{name:40} req/s [{every_round}]; server CPU {cpu:.0f} us per request (median)")
    every = " ".join(f"{a['rps'] / b['rps']:.3f}" for a, b in zip(mine, theirs))
    print(f"\nthis tree / {other}: median {_median_ratio(mine, theirs):.3f}   [{every}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--profile-seconds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--compare-tree", type=Path, metavar="DIR",
                        help="compare this tree's daemon with the one in another checkout")
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, port, *rest = args.serve
        servers = {"web": serve_web, "klein": serve_klein, "memory": serve_memory, "profiled": serve_profiled}
        servers[kind](int(port), *rest)
        return

    work = Path(tempfile.mkdtemp(prefix="oauthd-bench-"))
    try:
        data = work / "data"
        ids = _seed(data)
        cc = _lua(work / "cc.lua", ids["client"], ids["secret"], "grant_type=client_credentials")
        intro = _lua(work / "introspect.lua", ids["rs"], ids["rs_secret"], "token=" + ids["token"])
        python = sys.executable
        twistd = os.path.join(os.path.dirname(python), "twistd")
        if args.compare_tree:
            compare_trees(args, work, data, cc, twistd)
            return
        klein_modes = {
            "bare Klein": ["forms"],
            "no-form Klein": ["plain"],
            "no-form Klein, answered a turn later": ["later"],
            "no-form Klein, durable append": ["durable", str(work / "data-klein")],
        }
        ports = dict(zip(["web", *klein_modes, "oauthd", "memory"], _free_ports(len(klein_modes) + 3)))
        shutil.copytree(data, work / "data-memory")
        (work / "data-klein").mkdir(mode=0o700)
        servers = [
            _run_server(args, [python, __file__, "--serve", "web", str(ports["web"]), str(work / "web.log")],
                        ports["web"], work / "web.out"),
            *(_run_server(args, [python, __file__, "--serve", "klein", str(ports[name]),
                                 str(work / f"klein-{mode[0]}.log"), *mode],
                          ports[name], work / f"klein-{mode[0]}.out")
              for name, mode in klein_modes.items()),
            _run_server(args, [twistd, "--nodaemon", "--pidfile=", "oauthd", "--listen",
                               f"tcp:{ports['oauthd']}:interface=127.0.0.1", "--data", str(data)],
                        ports["oauthd"], work / "oauthd.out"),
            _run_server(args, [python, __file__, "--serve", "memory", str(ports["memory"]),
                               str(work / "memory.log"), str(work / "data-memory")],
                        ports["memory"], work / "memory.out"),
        ]
        oauth = f"http://127.0.0.1:{ports['oauthd']}/api/v1/oauth"
        targets = [
            ("bare twisted.web", f"http://127.0.0.1:{ports['web']}/api/v1/oauth/token", cc),
            *((name, f"http://127.0.0.1:{ports[name]}/api/v1/oauth/token", cc) for name in klein_modes),
            ("oauthd token (client_credentials)", oauth + "/token", cc),
            ("oauthd introspect", oauth + "/introspect", intro),
            ("oauthd token, in-memory journal", f"http://127.0.0.1:{ports['memory']}/api/v1/oauth/token", cc),
        ]
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in targets}
        try:
            for _, url, script in targets:
                _wrk(args, url, script, args.warmup)
            # Interleaved rounds, so drift in what the machine gives us hits
            # every target alike; the median round of each is reported.
            for _ in range(args.rounds):
                for name, url, script in targets:
                    rounds[name].append(_wrk(args, url, script, args.duration))
        finally:
            for process in servers:
                _stop(process)
        results = {name: sorted(runs, key=lambda r: r["rps"])[len(runs) // 2] for name, runs in rounds.items()}

        print(f"\n{args.connections} connections; {args.rounds} interleaved rounds of {args.duration} s per target "
              f"(median round shown; all rounds' req/s in brackets); server on CPU {args.server_cpu}, "
              f"wrk on CPU {args.load_cpu}; journal fsync on\n")
        print(f"{'':36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}   rounds")
        for name, r in results.items():
            every = " ".join(f"{x['rps']:.0f}" for x in rounds[name])
            print(f"{name:36} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['non2xx']:8.0f}   [{every}]")
        print("\nRatios, each round's against the baselines measured in the same round (the machine's speed"
              " drifts between rounds; within one it drifts less), median of the rounds:\n")
        for name in rounds:
            klein = _median_ratio(rounds[name], rounds["bare Klein"])
            web = _median_ratio(rounds[name], rounds["bare twisted.web"])
            every = " ".join(f"{a['rps'] / b['rps']:.2f}" for a, b in zip(rounds[name], rounds["bare Klein"]))
            print(f"{name:36} {klein:5.2f}x bare Klein   {web:5.2f}x bare twisted.web   [{every}]")
        print("\nThe durable figure taken apart, against the route it differs from in one thing only:\n")
        cc_name = "oauthd token (client_credentials)"
        for what, name, baseline in (
            ("answering later", "no-form Klein, answered a turn later", "no-form Klein"),
            ("durability", "no-form Klein, durable append", "no-form Klein"),
            ("oauthd's logic", "oauthd token, in-memory journal", "no-form Klein"),
            ("oauthd's logic, durable", cc_name, "no-form Klein, durable append"),
        ):
            every = " ".join(f"{a['rps'] / b['rps']:.2f}" for a, b in zip(rounds[name], rounds[baseline]))
            print(f"{what:24} {_median_ratio(rounds[name], rounds[baseline]):5.2f}x   "
                  f"{name} / {baseline}   [{every}]")

        if not args.profile_seconds:
            return
        # A profile of the token path, in the daemon's own service tree.
        (port,) = _free_ports(1)
        profile_out = work / "token.prof"
        process = _run_server(args, [python, __file__, "--serve", "profiled", str(port),
                                     str(work / "profiled.log"), str(data), str(profile_out)],
                              port, work / "profiled.out")
        try:
            _wrk(args, f"http://127.0.0.1:{port}/api/v1/oauth/token", cc, args.profile_seconds)
        finally:
            _stop(process)
        import pstats

        print(f"\nProfile of the token path ({args.profile_seconds} s of client_credentials under load), "
              "top functions by own time:\n")
        stats = pstats.Stats(str(profile_out))
        stats.sort_stats("tottime").print_stats(22)
        print("Cumulative, oauthd's own code:\n")
        stats.sort_stats("cumulative").print_stats(r"oauthd/(web|protocol|state|services)", 14)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
