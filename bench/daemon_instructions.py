"""
The real daemon's targets of C{bench/instructions.py}: instructions per
request counted by callgrind in a real C{twistd oauthd} (its durable file
journal, its audit trail on its own writer thread, real sockets), and in a
plain process serving the bare Klein route without form parsing, the
baseline (and the same route answering once a record appended to a file
journal is durable: what durability alone costs a route).

Each target starts one server under callgrind with counting off
(C{--instr-atstart=no}), so starting, importing and replaying cost nothing.
A client in this process sends one request at a time over one keep-alive
connection, each once the last is answered: a warm-up, then counting is
switched on (C{callgrind_control -i on}), N requests, a dump, 2N requests,
a dump. Each dump holds what was counted since the one before, so the
figure is the difference of the two dumps divided by N: what switching and
dumping cost, and what the daemon does on its own while it waits (timers),
cancel out but for what they cost per unit of time. Everything the process
does is counted, on every thread: the journal's and the audit trail's
writers too.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from inprocess import basic, raw_request, token_request

BENCH = os.path.dirname(os.path.abspath(__file__))

WARMUP = 100

TARGETS = {
    "daemon-klein": "daemon: bare Klein, no form parsing",
    "daemon-klein-durable": "daemon: bare Klein, durable append",
    "daemon-cc": "daemon: oauthd client_credentials",
    "daemon-introspect": "daemon: oauthd introspection",
    "daemon-userinfo": "daemon: oauthd userinfo (bearer check)",
    "daemon-refresh": "daemon: oauthd refresh",
    "daemon-revoke": "daemon: oauthd revoke",
}
BASELINE = "daemon-klein"


class Connection:
    """
    One keep-alive HTTP/1.1 connection, one request at a time.
    """

    def __init__(self, port: int) -> None:
        self._socket = socket.create_connection(("127.0.0.1", port))
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pending = b""
        self.last = b""

    def send(self, request: bytes) -> bytes:
        """
        Send C{request}, and return the whole answer once it is in.
        """
        self._socket.sendall(request)
        data = self._pending
        while b"\r\n\r\n" not in data:
            data += self._receive()
        head, _, body = data.partition(b"\r\n\r\n")
        length = -1
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length < 0:
            # Chunked (the bare Klein route sets no length): one request at
            # a time, so the answer ends with the last chunk.
            while not body.endswith(b"\r\n0\r\n\r\n"):
                body += self._receive()
            length = len(body)
        while len(body) < length:
            body += self._receive()
        self._pending = body[length:]
        self.last = head + b"\r\n\r\n" + body[:length]
        if not self.last.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"not answered 200: {self.last[:300]!r}")
        return self.last

    def _receive(self) -> bytes:
        chunk = self._socket.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self._socket.close()


def _seed(data: str, name: str, total: int) -> Callable[[Connection], bytes]:
    """
    Prepare C{data} for target C{name} and return what makes each request
    (given the connection, whose last answer it may read).
    """
    from oauthd.testing import seed

    async def build(server: Any) -> Any:
        if name == "daemon-cc":
            client, secret = await server.add_client("bench", scope="metrics", max_tokens=10)
            request = token_request(client.id, secret)
            return lambda _: request
        if name == "daemon-introspect":
            client, _ = await server.add_client("bench", scope="metrics")
            rs, rs_secret = await server.add_client("resource server", scope="metrics", introspect=True)
            token, _ = await server.issue_token(scope="metrics", lifetime=86400, client=client)
            request = raw_request("POST", "/api/v1/oauth/introspect", basic(rs.id, rs_secret),
                                  b"token=" + token.encode())
            return lambda _: request
        if name == "daemon-userinfo":
            client, _ = await server.add_client("bench", scope="openid profile email")
            await server.add_user("alice", "password", full_name="Alice Liddell", email="alice@example.com")
            token, _ = await server.issue_token(scope="openid profile email", lifetime=86400,
                                                client=client, user="alice")
            request = raw_request("GET", "/api/v1/oauth/userinfo", {"Authorization": "Bearer " + token})
            return lambda _: request
        if name == "daemon-refresh":
            client, secret = await server.add_client("bench", scope="metrics",
                                                     grant_types=("password", "refresh_token"))
            await server.add_user("alice", "password")
            return _refreshing(client.id, secret)
        if name == "daemon-revoke":
            # A token limit above them all: evicted ones would be revoked already.
            client, secret = await server.add_client("bench", scope="metrics", max_tokens=total)
            auth = basic(client.id, secret)
            requests = []
            for _ in range(total):
                token, _ = await server.issue_token(scope="metrics", lifetime=86400, client=client)
                requests.append(raw_request("POST", "/api/v1/oauth/revoke", auth, b"token=" + token.encode()))
            requests.reverse()
            return lambda _: requests.pop()
        raise SystemExit(f"unknown target {name!r}")

    made: Callable[[Connection], bytes] = seed(data, time.time(), build)
    return made


def _refreshing(client_id: str, secret: str) -> Callable[[Connection], bytes]:
    """
    A password grant first, then refreshes, each with the refresh token
    the last answer gave.
    """
    auth = basic(client_id, secret)
    first = raw_request("POST", "/api/v1/oauth/token", auth,
                        b"grant_type=password&username=alice&password=password&scope=metrics")
    form = b"grant_type=refresh_token&refresh_token="
    field = b'"refresh_token":"'

    def request(connection: Connection) -> bytes:
        if not connection.last:
            return first
        start = connection.last.index(field) + len(field)
        token = connection.last[start:connection.last.index(b'"', start)]
        return raw_request("POST", "/api/v1/oauth/token", auth, form + token)

    return request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int, process: subprocess.Popen[bytes], log: str) -> None:
    deadline = time.monotonic() + 600
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            with open(log, errors="replace") as f:
                raise RuntimeError(f"the server did not start:\n{f.read()[-3000:]}")
        time.sleep(0.2)


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def _dumped(out: str, number: int) -> int:
    with open(f"{out}.{number}") as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def per_request(name: str, requests: int, tree: str) -> float:
    """
    Instructions per request of daemon target C{name}, the daemon running
    the code of the checkout C{tree}.
    """
    work = tempfile.mkdtemp(prefix="oauthd-daemon-instructions-")
    try:
        port = _free_port()
        out = os.path.join(work, "callgrind.out")
        log = os.path.join(work, "server.log")
        if name in (BASELINE, "daemon-klein-durable"):
            # The durable one answers once a record appended to a file
            # journal is durable: what durability alone costs a route.
            make: Callable[[Connection], bytes] = lambda _: token_request("client", "secret")
            server = [sys.executable, os.path.join(BENCH, "token_endpoint.py"), "--serve", "klein",
                      str(port), os.path.join(work, "klein.log")]
            if name == BASELINE:
                server.append("plain")
            else:
                os.mkdir(os.path.join(work, "journal"), 0o700)
                server += ["durable", os.path.join(work, "journal")]
        else:
            data = os.path.join(work, "data")
            os.mkdir(data, 0o700)
            make = _seed(data, name, WARMUP + 3 * requests + 10)
            twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
            server = [twistd, "--nodaemon", "--pidfile=", "oauthd", "--listen",
                      f"tcp:{port}:interface=127.0.0.1", "--data", data]
        env = dict(os.environ, PYTHONPATH=tree, PYTHONHASHSEED="0")
        env.pop("NOTIFY_SOCKET", None)
        with open(log, "wb") as output:
            process = subprocess.Popen(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *server],
                stdout=output, stderr=subprocess.STDOUT, env=env, cwd=work)
        try:
            _wait_for(port, process, log)
            connection = Connection(port)
            for _ in range(WARMUP):
                connection.send(make(connection))
            pid = str(process.pid)
            _control("-i", "on", pid)
            for count in (requests, 2 * requests):
                for _ in range(count):
                    connection.send(make(connection))
                _control("-d", pid)
            connection.close()
        finally:
            process.terminate()
            process.wait(120)
        dumps = sorted(glob.glob(out + ".*"), key=lambda path: int(path.rsplit(".", 1)[1]))
        first, second = (int(path.rsplit(".", 1)[1]) for path in dumps[:2])
        return (_dumped(out, second) - _dumped(out, first)) / requests
    finally:
        shutil.rmtree(work, ignore_errors=True)
