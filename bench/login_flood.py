"""
Correct password logins under a flood of failing ones, against a real
daemon. It prints figures; it asserts nothing.

A daemon (bcrypt at --cost, --threads hashing threads) serves a user,
alice, among a few others, all hashed at that cost. --flood clients, each
from its own loopback address (127.0.0.2 and up: Linux routes all of
127/8 to lo, and the daemon sees distinct sources), send password grants
with wrong passwords as fast as they are answered, for random usernames
and, one in five, for alice. Meanwhile one client logs in as alice with
her right password in a loop (waiting as Retry-After says after a 429 or
503). It prints the right logins' success rate, their p50/p99/max latency
and their answers, and the flood's answers. The flood runs in a process of
its own at the lowest CPU priority.

Two rounds, each on a fresh daemon: alice logging in from the address she
always uses (it has logged in before the flood starts), and alice logging
in from a new address every time (one that has never failed).

    python bench/login_flood.py [--duration 30] [--flood 120] [--cost 12] [--threads 2]
    python bench/login_flood.py --tree DIR    # another checkout's daemon
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from token_endpoint import _stop  # noqa: E402

PASSWORD = "correct horse battery staple"
TARGET = "alice"


def _seed(data: Path, cost: int) -> tuple[str, str]:
    from oauthd.testing import seed

    async def build(server: Any) -> tuple[str, str]:
        server.ctx.hasher.cost = cost
        client, secret = await server.add_client("bench", grant_types=("password",))
        for name in (TARGET, "bob", "carol", "dave", "erin"):
            await server.add_user(name, PASSWORD)
        return client.id, secret

    result: tuple[str, str] = seed(str(data), time.time(), build)
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(tree: Path, data: Path, port: int, config: Path, log: Path) -> subprocess.Popen[bytes]:
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("NOTIFY_SOCKET", None)
    process = subprocess.Popen(
        [twistd, "--nodaemon", "--pidfile=", "oauthd", "--config", str(config),
         "--listen", f"tcp:{port}:interface=127.0.0.1", "--data", str(data)],
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env, cwd=data.parent,
    )
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"oauthd did not start; see {log}")
        time.sleep(0.05)


class Client:
    """
    Password grants over one keep-alive connection from one source address.
    """

    def __init__(self, port: int, source: str, client: str, secret: str) -> None:
        self.port = port
        self.source = source
        self.auth = "Basic " + base64.b64encode(f"{client}:{secret}".encode()).decode()
        self.connection: http.client.HTTPConnection | None = None
        self.retry_after = 0.0

    def login(self, username: str, password: str) -> int:
        """
        The answer's status (0 if the connection failed twice); after a 429
        or 503, L{retry_after} is its Retry-After.
        """
        body = urllib.parse.urlencode(
            {"grant_type": "password", "username": username, "password": password})
        headers = {"Authorization": self.auth, "Content-Type": "application/x-www-form-urlencoded"}
        for _ in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=60, source_address=(self.source, 0))
            try:
                self.connection.request("POST", "/api/v1/oauth/token", body, headers)
                response = self.connection.getresponse()
                response.read()
                self.retry_after = float(response.getheader("Retry-After") or 0)
                return response.status
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
        return 0


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _round(args: argparse.Namespace, tree: Path, fresh_sources: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="oauthd-flood-"))
    try:
        data = work / "data"
        client, secret = _seed(data, args.cost)
        config = work / "oauthd.toml"
        config.write_text(f"bcrypt_cost = {args.cost}\nhash_threads = {args.threads}\n")
        port = _free_port()
        daemon = _start(tree, data, port, config, work / "twistd.log")
        try:
            _measure(args, port, client, secret, fresh_sources)
        finally:
            _stop(daemon)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _flood(port: int, client: str, secret: str, count: int, seconds: float) -> None:
    """
    The flood, in a process of its own: C{count} clients, one address each,
    for C{seconds}; prints its answers as JSON.
    """
    stop = threading.Event()
    answers: Counter[int] = Counter()
    lock = threading.Lock()

    def run(index: int) -> None:
        me = Client(port, f"127.0.{index // 250}.{2 + index % 250}", client, secret)
        chooser = random.Random(index)
        while not stop.is_set():
            name = TARGET if chooser.random() < 0.2 else f"user{chooser.randrange(10**9)}"
            status = me.login(name, "wrong password")
            with lock:
                answers[status] += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(65)
    print(json.dumps(answers))


def _measure(args: argparse.Namespace, port: int, client: str, secret: str, fresh_sources: bool) -> None:
    owner = Client(port, "127.0.0.1", client, secret)
    if not fresh_sources:
        owner.login(TARGET, PASSWORD)
    # The flood runs at the lowest CPU priority: on a small machine its own
    # work would otherwise take the CPU the daemon's bcrypt threads need (an
    # attacker's load is not generated on the server).
    flood = subprocess.Popen(
        [sys.executable, __file__, "--flood-worker", str(port), client, secret, str(args.flood),
         str(args.duration + 1)],
        stdout=subprocess.PIPE, preexec_fn=lambda: os.nice(19))
    time.sleep(1)
    latencies: list[float] = []
    answers: Counter[int] = Counter()
    deadline = time.monotonic() + args.duration
    n = 0
    while time.monotonic() < deadline:
        if fresh_sources:
            owner = Client(port, f"127.1.{n // 250}.{2 + n % 250}", client, secret)
        n += 1
        began = time.monotonic()
        status = owner.login(TARGET, PASSWORD)
        latencies.append(time.monotonic() - began)
        answers[status] += 1
        if status in (429, 503):
            # As a client should (the flood does not).
            time.sleep(owner.retry_after)
    out, _ = flood.communicate()
    flood_answers = {int(k): v for k, v in json.loads(out).items()}
    ok = answers[200]
    where = "a new address each time" if fresh_sources else "her usual address"
    print(f"alice from {where}, {args.flood} failing clients from {args.flood} addresses, "
          f"{args.duration:g} s:")
    print(f"  right logins: {ok}/{sum(answers.values())} succeeded "
          f"({100 * ok / max(1, sum(answers.values())):.1f}%), answers {dict(sorted(answers.items()))}")
    print(f"  latency p50 {_percentile(latencies, 50):.3f} s, p99 {_percentile(latencies, 99):.3f} s, "
          f"max {max(latencies, default=float('nan')):.3f} s")
    print(f"  flood answers ({sum(flood_answers.values())}): {dict(sorted(flood_answers.items()))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--flood", type=int, default=120, help="failing clients, one address each")
    parser.add_argument("--cost", type=int, default=12, help="bcrypt cost")
    parser.add_argument("--threads", type=int, default=2, help="hashing threads")
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout whose daemon runs")
    parser.add_argument("--flood-worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood_worker:
        port, client, secret, count, seconds = args.flood_worker
        _flood(int(port), client, secret, int(count), float(seconds))
        return
    print(f"daemon from {args.tree}, bcrypt cost {args.cost}, {args.threads} hashing threads")
    for fresh in (False, True):
        _round(args, args.tree, fresh)


if __name__ == "__main__":
    main()
