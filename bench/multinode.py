"""
Several daemons on one PostgreSQL event log: prints figures, asserts nothing.

    python bench/multinode.py [--uri postgresql://...] [--duration 5] [--events 1000000]
                              [--connections 16] [--tokens 300] [--skip PART]

With C{--uri}, it makes a database per part from it (CREATE DATABASE);
without, it starts a throwaway cluster as the tests do
(L{tests.postgres}: UNIX socket, fsync=off, synchronous_commit=on).  The
records are sealed with a key (C{eventlog_secret_key_file}), as in
production.

 1. issuance throughput (client_credentials, wrk against each daemon at
    once) with 1, 2 and 3 real daemons on the one PostgreSQL log, and with
    one daemon on its file journal (fsync on), in the same run;
 2. follow latency on another node, p50/p99 (L{bench.eventlog_postgres});
 3. a start's replay of C{--events} token records from PostgreSQL, sealed
    and not: the read (chain checked, unsealed), then the replay into the
    state model;
 4. instructions per issued token (callgrind, oauthd's process only: the
    PostgreSQL server's work is not counted), on the PostgreSQL log against
    the file journal: the difference of two runs issuing C{--tokens} and
    four times as many, through the protocol layer and the store.

On a 2-core machine shared with PostgreSQL, no scaling can show: read the
ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from token_endpoint import _free_ports, _lua, _parse, _seed, _stop, _wait_for  # noqa: E402

KEY = "7" * 64
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def _daemon(work: Path, name: str, port: int, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("NOTIFY_SOCKET", None)
    process = subprocess.Popen(
        [TWISTD, "--nodaemon", "--pidfile=", "oauthd", "--listen", f"tcp:{port}:interface=127.0.0.1",
         "--data", str(work / name), *args],
        stdout=open(work / f"{name}.log", "ab"), stderr=subprocess.STDOUT, env=env, cwd=work)
    _wait_for(port, process)
    return process


# wrk counts non-2xx answers but does not say which: print the first of each.
_FIRST_OF_EACH_STATUS = """
seen = {}
response = function(status, headers, body)
  if status >= 300 and not seen[status] then
    seen[status] = true
    io.write("answered " .. status .. " " .. string.sub(body, 1, 200) .. "\\n")
  end
end
"""


def _wrk_all(ports: list[int], script: Path, duration: float, connections: int) -> float:
    runs = [subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "--latency", "-s", str(script),
                              f"http://127.0.0.1:{port}/api/v1/oauth/token"],
                             stdout=subprocess.PIPE, text=True) for port in ports]
    total = 0.0
    for run in runs:
        output, _ = run.communicate()
        figures = _parse(output)
        if figures["non2xx"]:
            print(f"  (!) {figures['non2xx']:.0f} non-2xx answers, the first of each status:")
            for line in re.findall(r"^answered .*$", output, re.M):
                print(f"      {line}")
        total += figures["rps"]
    return total


def throughput(work: Path, uri: str, args: argparse.Namespace) -> None:
    seeded = _seed(work / "seed")
    script = _lua(work / "cc.lua", seeded["client"], seeded["secret"], "grant_type=client_credentials")
    with script.open("a") as lua:
        lua.write(_FIRST_OF_EACH_STATUS)
    subprocess.run([sys.executable, "-m", "oauthd.state.migration", "--data", str(work / "seed"), "--to", uri,
                    f"--secret-key-file={work / 'key'}"], check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=str(REPO)))
    (work / "node.toml").write_text(f'eventlog = "{uri}"\neventlog_secret_key_file = "{work / "key"}"\n')
    print(f"issuance, client_credentials, wrk -c{args.connections} per daemon, {args.duration} s:")
    ports = _free_ports(4)
    os.rename(work / "seed", work / "file")
    file_daemon = _daemon(work, "file", ports[3])
    try:
        _wrk_all([ports[3]], script, 1, args.connections)
        base = _wrk_all([ports[3]], script, args.duration, args.connections)
    finally:
        _stop(file_daemon)
    print(f"  file journal, 1 daemon: {base:8.0f} tokens/s")
    for count in (1, 2, 3):
        daemons = [_daemon(work, f"pg{count}-{i}", ports[i], "--config", str(work / "node.toml"))
                   for i in range(count)]
        try:
            _wrk_all(ports[:count], script, 1, args.connections)
            rate = _wrk_all(ports[:count], script, args.duration, args.connections)
        finally:
            for daemon in daemons:
                _stop(daemon)
        print(f"  PostgreSQL, {count} daemon{'s' if count > 1 else ' '}: {rate:8.0f} tokens/s"
              f" ({rate / base:.2f} x the file journal)")


def replay(fresh: Any, events: int) -> None:
    for sealed in ("sealed", "unsealed"):
        uri = fresh()
        subprocess.run([sys.executable, __file__, "--fill-child", uri, str(events), sealed], check=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
        child = subprocess.run([sys.executable, __file__, "--replay-child", uri, sealed], check=True,
                               capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
        read, replayed, count = child.stdout.split()
        print(f"start from PostgreSQL, {sealed}: {count} records read (chain checked) in {float(read):.2f} s,"
              f" replayed into the state in {float(replayed):.2f} s")


def _key(sealed: str) -> bytes | None:
    return bytes.fromhex(KEY) if sealed == "sealed" else None


def fill_child(uri: str, events: int, sealed: str) -> None:
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    from oauthd.eventlog.postgresql import open_postgres_log
    from oauthd.protocol import tokens
    from oauthd.state.entities import ACCESS, Client, Token
    from oauthd.state.records import ClientPut, TokenIssued, encode

    async def fill(reactor: Any) -> None:
        log = open_postgres_log(uri, reactor, node="bench-fill", listen=False, secret_key=_key(sealed))
        list(log.replay())
        await log.append([encode(ClientPut(Client(id="c0", name="bench", max_tokens=-1)))])
        now = int(time.time())
        for start in range(0, events, 10_000):
            await log.append([encode(TokenIssued(Token(tokens.token_key(os.urandom(24).hex()), ACCESS, "c0", "",
                                                       "metrics", now, 86400, "", "")))
                              for _ in range(start, min(events, start + 10_000))])
        await log.close()

    task.react(lambda reactor: Deferred.fromCoroutine(fill(reactor)))


def replay_child(uri: str, sealed: str) -> None:
    from twisted.internet import reactor

    from oauthd.eventlog.postgresql import open_postgres_log
    from oauthd.state.model import State, replay as replay_state

    began = time.perf_counter()
    log = open_postgres_log(uri, reactor, node="bench-replay", listen=False, secret_key=_key(sealed))
    payloads = list(log.replay())
    read = time.perf_counter() - began
    began = time.perf_counter()
    replay_state(State(), payloads, time.time())
    print(read, time.perf_counter() - began, len(payloads))
    os._exit(0)


def issue_child(kind: str, target: str, count: int) -> None:
    """
    Issue C{count} tokens through the protocol layer and the store, over
    the file journal in C{target} or the PostgreSQL log at C{target}.
    """
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    from oauthd.eventlog import FileJournal
    from oauthd.eventlog.postgresql import open_postgres_log
    from oauthd.testing import MemoryServer

    async def issue(reactor: Any) -> None:
        if kind == "file":
            log: Any = FileJournal.open(target, reactor)
        else:
            log = open_postgres_log(target, reactor, listen=False, secret_key=bytes.fromhex(KEY))
        server = MemoryServer.build(clock=reactor, log=log)
        client, _ = await server.add_client("bench", scope="metrics", max_tokens=-1)
        for _ in range(count):
            await server.issue_token(scope="metrics", lifetime=3600, client=client)
        await log.close()

    task.react(lambda reactor: Deferred.fromCoroutine(issue(reactor)))


def _instructions(work: Path, kind: str, target: str, count: int) -> int:
    out = work / f"callgrind-{kind}-{count}.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                    "--issue-child", kind, target, str(count)], check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=str(REPO)))
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    assert match is not None
    return int(match.group(1))


def instructions(work: Path, fresh: Any, count: int) -> None:
    per = {}
    for kind in ("file", "postgresql"):
        def target(n: int) -> str:
            return str(work / f"ir-{kind}-{n}") if kind == "file" else fresh()

        small, big = _instructions(work, kind, target(count), count), _instructions(work, kind, target(4 * count),
                                                                                   4 * count)
        per[kind] = (big - small) / (3 * count)
    print(f"instructions per issued token (callgrind, oauthd only): file journal {per['file']:,.0f},"
          f" PostgreSQL log {per['postgresql']:,.0f} ({per['postgresql'] / per['file']:.2f} x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", help="postgresql://.../DATABASE of a role that may create databases: the"
                        " bench makes one per part beside it (default: a throwaway cluster)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--skip", action="append", default=[],
                        choices=["throughput", "follow", "replay", "instructions"])
    args = parser.parse_args()
    if args.uri:
        made = itertools.count(1)

        def fresh() -> str:
            # A new database for each part, made from the one given.
            import psycopg

            name = f"oauthd_bench_{os.getpid()}_{next(made)}"
            with psycopg.connect(args.uri, autocommit=True) as connection:
                connection.execute(f"CREATE DATABASE {name}")
            base, mark, query = args.uri.partition("?")
            return f"{base.rsplit('/', 1)[0]}/{name}{mark}{query}"
    else:
        from tests.postgres import fresh_database as fresh
    with tempfile.TemporaryDirectory(prefix="oauthd-multinode-") as directory:
        work = Path(directory)
        (work / "key").write_text(KEY + "\n")
        (work / "key").chmod(0o600)
        if "throughput" not in args.skip:
            throughput(work, fresh(), args)
        if "follow" not in args.skip:
            from twisted.internet import task
            from twisted.internet.defer import Deferred

            from eventlog_postgres import follow_latency

            uri = fresh()
            subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2]);"
                            "from twisted.internet import task; from twisted.internet.defer import Deferred;"
                            "from eventlog_postgres import follow_latency;"
                            "task.react(lambda r: Deferred.fromCoroutine(follow_latency(r, sys.argv[3], 3.0)))",
                            str(REPO), str(REPO / "bench"), uri], check=True)
            del task, Deferred, follow_latency
        if "replay" not in args.skip:
            replay(fresh, args.events)
        if "instructions" not in args.skip:
            instructions(work, fresh, args.tokens)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fill-child"]:
        fill_child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1:2] == ["--replay-child"]:
        replay_child(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["--issue-child"]:
        issue_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
