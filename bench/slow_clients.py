"""
Benchmark normal clients of a real oauthd daemon while slow clients try to
hold its connections: requests/s and p99 latency of C{GET /healthz} and of a
client_credentials token request, without and then with 1,000 slow
connections (each sends a request line, then one header byte every few
seconds, and reconnects at once when the daemon closes it), and the ratio.
It prints figures; it asserts nothing.

Needs wrk and taskset: the daemon runs pinned to one core and wrk to
another; the slow clients run niced on the daemon's core (C{--slow-cpu}), so
they take only the time the daemon leaves (on a real attack they run
elsewhere) and wrk keeps its own core. The daemon's share of a core during
each run tells whether it, or the load, set the pace.

    python bench/slow_clients.py [--slow 1000] [--interval 2] [--duration 5] [--rounds 3]
    python bench/slow_clients.py --max-connections 1024
    python bench/slow_clients.py --tree DIR --nofile 1024

With C{--tree}, the daemon of another checkout runs instead (say the commit
before the deadlines, to see it fall over); C{--nofile} starts the daemon
with that limit on open files (the default soft limit on many systems).
Below the cap (C{max_connections}, 4096 by default) the slow clients are
closed only by their deadlines; with C{--max-connections 1024}, 1,000 slow
connections and wrk's 32 keep the daemon at its cap, so every slow client's
reconnection closes another slow connection to make room (or is refused).
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from token_endpoint import _cpu_seconds, _free_ports, _lua, _parse, _seed, _stop, _wait_for  # noqa: E402


def raise_file_limit() -> None:
    """
    Let this process hold a connection per slow client.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def slow_clients(port: int, count: int, interval: float, report: str) -> None:
    """
    Keep C{count} slow connections open to the daemon: each sends a request
    line, then one header byte every C{interval} seconds, and is replaced
    at once when the daemon closes it. On SIGTERM, write what happened to
    C{report}.
    """
    raise_file_limit()
    selector = selectors.DefaultSelector()
    stats = {"opened": 0, "failed": 0, "408": 0, "503": 0, "closed": 0, "open_samples": 0, "open_sum": 0}
    answers: dict[socket.socket, bytes] = {}
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)

    def open_one() -> None:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        selector.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        answers[s] = b""
        stats["opened"] += 1

    def close(s: socket.socket) -> None:
        answer = answers.pop(s)
        for status in ("408", "503"):
            if answer.startswith(b"HTTP/1.1 " + status.encode()):
                stats[status] += 1
        stats["closed"] += 1
        selector.unregister(s)
        s.close()

    # Ramp up in batches, so the listen backlog is not what refuses them.
    while len(answers) < count and running:
        for _ in range(min(100, count - len(answers))):
            open_one()
        time.sleep(0.05)
    next_byte = time.monotonic() + interval
    while running:
        for key, events in selector.select(timeout=0.2):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if events & selectors.EVENT_WRITE:
                selector.modify(s, selectors.EVENT_READ)
                try:
                    s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                except OSError:
                    stats["failed"] += 1
                    close(s)
                    continue
            if events & selectors.EVENT_READ:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data:
                    answers[s] += data
                else:
                    close(s)
        while len(answers) < count and running:
            open_one()
        if time.monotonic() >= next_byte:
            next_byte += interval
            for s in list(answers):
                try:
                    s.send(b"X")
                except OSError:
                    pass
            stats["open_samples"] += 1
            stats["open_sum"] += len(answers)
    Path(report).write_text(" ".join(f"{k}={v}" for k, v in stats.items()))


def _wrk(args: argparse.Namespace, url: str, script: Path | None, daemon: int) -> dict[str, float]:
    """
    wrk's figures, and the share of a core the daemon used meanwhile.
    """
    command = ["taskset", "-c", str(args.load_cpu), "wrk", "-t1", f"-c{args.connections}",
               f"-d{args.duration}s", "--latency", url]
    if script is not None:
        command[-1:-1] = ["-s", str(script)]
    cpu, start = _cpu_seconds(daemon), time.monotonic()
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = _parse(output)
    result["cpu"] = (_cpu_seconds(daemon) - cpu) / (time.monotonic() - start)
    return result


def _healthz_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200 ")
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=1000, help="slow connections")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between a slow client's bytes")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32, help="wrk's connections")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--slow-cpu", type=int, default=None,
                        help="the slow clients' CPU [default: the daemon's]")
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout whose daemon runs")
    parser.add_argument("--nofile", type=int, default=0, help="the daemon's limit on open files")
    parser.add_argument("--max-connections", type=int, default=0,
                        help="the daemon's max_connections [default: its default]")
    parser.add_argument("--slow-clients", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.slow_cpu is None:
        args.slow_cpu = args.server_cpu
    if args.slow_clients:
        port, count, interval, report = args.slow_clients
        slow_clients(int(port), int(count), float(interval), report)
        return

    raise_file_limit()
    work = Path(tempfile.mkdtemp(prefix="oauthd-slow-"))
    daemon = None
    try:
        data = work / "data"
        ids = _seed(data)
        token_script = _lua(work / "cc.lua", ids["client"], ids["secret"], "grant_type=client_credentials")
        (port,) = _free_ports(1)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        limit = ["prlimit", f"--nofile={args.nofile}"] if args.nofile else []
        config = []
        if args.max_connections:
            (work / "oauthd.toml").write_text(f"max_connections = {args.max_connections}\n")
            config = ["--config", str(work / "oauthd.toml")]
        env = dict(os.environ, PYTHONPATH=str(args.tree))
        env.pop("NOTIFY_SOCKET", None)
        daemon = subprocess.Popen(
            ["taskset", "-c", str(args.server_cpu), *limit, twistd, "--nodaemon", "--pidfile=",
             "oauthd", *config, "--listen", f"tcp:{port}:interface=127.0.0.1", "--data", str(data)],
            stdout=open(work / "oauthd.out", "ab"), stderr=subprocess.STDOUT, env=env, cwd=work,
        )
        _wait_for(port, daemon)
        base = f"http://127.0.0.1:{port}"
        targets = [("GET /healthz", base + "/healthz", None),
                   ("POST token", base + "/api/v1/oauth/token", token_script)]
        for _, url, script in targets:
            _wrk(args, url, script, daemon.pid)  # warm up
        results: dict[tuple[str, bool], list[dict[str, float]]] = {}
        reports = []
        for round_ in range(args.rounds):
            for slow in (False, True):
                attack = None
                if slow:
                    report = work / f"slow-{round_}.txt"
                    attack = subprocess.Popen(
                        ["taskset", "-c", str(args.slow_cpu), "nice", "-n", "19", sys.executable, __file__,
                         "--slow-clients", str(port), str(args.slow), str(args.interval), str(report)])
                    # Let them connect and start trickling.
                    time.sleep(2 + args.interval)
                for name, url, script in targets:
                    results.setdefault((name, slow), []).append(_wrk(args, url, script, daemon.pid))
                if attack is not None:
                    alive = _healthz_answers(port)
                    attack.send_signal(signal.SIGTERM)
                    attack.wait(30)
                    reports.append(f"{report.read_text()} healthz_during={'ok' if alive else 'REFUSED'}")
                    # The daemon closes what is left of them within its deadlines.
                    time.sleep(1)
        _print(args, results, reports)
        if daemon.poll() is not None:
            print(f"the daemon exited with status {daemon.returncode}")
        log = (work / "oauthd.out").read_text(errors="replace")
        for marker in ("EMFILE", "Too many open files", "max_connections"):
            if marker in log:
                print(f"daemon log mentions {marker!r} {log.count(marker)} times")
    finally:
        if daemon is not None and daemon.poll() is None:
            _stop(daemon)
        shutil.rmtree(work, ignore_errors=True)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _print(args: argparse.Namespace, results: dict[tuple[str, bool], list[dict[str, float]]],
           reports: list[str]) -> None:
    print(f"\noauthd ({args.tree}), {args.rounds} rounds of {args.duration} s, wrk -c{args.connections}; "
          f"slow: {args.slow} connections, a byte every {args.interval} s; daemon on CPU "
          f"{args.server_cpu}, wrk on CPU {args.load_cpu}, slow clients (niced) on CPU {args.slow_cpu}; "
          "the token request is "
          "client_credentials with Basic auth, journal fsync on"
          + (f"; daemon nofile {args.nofile}" if args.nofile else "")
          + (f"; max_connections {args.max_connections}" if args.max_connections else "") + "\n")
    print(f"  {'':34} {'req/s':>9} {'p99 ms':>8} {'non-2xx':>8} {'errors':>7} {'daemon CPU':>10}")
    for name in dict.fromkeys(n for n, _ in results):
        medians = {}
        for slow in (False, True):
            runs = results[(name, slow)]
            medians[slow] = (_median([r["rps"] for r in runs]), _median([r["p99"] for r in runs]))
            label = f"{name[:14]}, {'with' if slow else 'without'} slow"
            print(f"  {label:34} {medians[slow][0]:9.0f} {medians[slow][1]:8.2f} "
                  f"{sum(r['non2xx'] for r in runs):8.0f} {sum(r['socket_errors'] for r in runs):7.0f} "
                  f"{_median([r['cpu'] for r in runs]):10.0%}")
        print(f"  {'  with / without':34} {medians[True][0] / medians[False][0]:9.2f} "
              f"{medians[True][1] / medians[False][1]:8.2f}")
    print("\nslow clients per round (opened, connects that failed, answered 408 / 503, closed by the "
          "daemon, mean open):")
    for line in reports:
        fields = dict(f.split("=") for f in line.split())
        mean = int(fields["open_sum"]) / max(1, int(fields["open_samples"]))
        print(f"  opened {fields['opened']}, failed {fields['failed']}, 408 {fields['408']}, "
              f"503 {fields['503']}, closed {fields['closed']}, mean open {mean:.0f}, "
              f"/healthz during the attack: {fields['healthz_during']}")


if __name__ == "__main__":
    main()
