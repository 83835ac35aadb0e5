"""
Pieces the in-process benchmarks share (C{bench/token_path.py},
C{bench/instructions.py}): raw HTTP requests fed into a site's protocol
over a C{StringTransport} (no sockets), and oauthd's site with its audit
trail as the daemon writes it, over an in-memory or a file journal.
"""

from __future__ import annotations

import base64
from typing import Any


def raw_request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """
    The bytes of one HTTP/1.1 request, as a client sends them.
    """
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def token_request(client_id: str, secret: str) -> bytes:
    """
    A client_credentials token request.
    """
    return raw_request("POST", "/api/v1/oauth/token", basic(client_id, secret),
                       b"grant_type=client_credentials")


def channel(site: Any) -> tuple[Any, Any]:
    """
    A connection to C{site}: its protocol and the C{StringTransport} that
    holds what it answers.
    """
    from twisted.internet.testing import StringTransport

    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def no_sync(fd: int) -> None:
    pass


def oauthd_server(work: str, journal: Any = None, reactor: Any = None, metrics: bool = True) -> tuple[Any, Any]:
    """
    oauthd's store and protocol layer (a L{oauthd.testing.MemoryServer})
    with the daemon's audit trail in C{work}, and its HTTP site, keeping
    its metrics as the daemon does (unless not C{metrics}).

    Without a C{reactor}: an in-memory journal (unless C{journal} is
    given), a test clock, and the trail written inline (no fdatasync),
    as the daemon writes it but on the reactor's thread. With one: the
    trail on its writer thread, paired with a file journal's as in the
    daemon, C{reactor} its clock.
    """
    from oauthd.services.audit import AuditTrail
    from oauthd.services.metrics import Metrics, watch
    from oauthd.testing import InlinePool, InlineReactor, MemoryServer
    from oauthd.web.api import OAuthHTTP

    if reactor is None:
        server = MemoryServer.build(log=journal)
        trail = AuditTrail(work, server.ctx.clock, InlineReactor(), pool=InlinePool(), sync=no_sync)
    else:
        server = MemoryServer.build(clock=reactor, log=journal)
        # Its writer the journal's partner, as the daemon runs it.
        trail = AuditTrail(work, reactor, reactor, partner=getattr(journal, "writer", None))
        trail.startService()
    server.store.audit_sink = trail
    kept = None
    if metrics:
        kept = Metrics()
        watch(kept, server.store, server.ctx, trail, server.ctx.hasher)
    return server, OAuthHTTP(server.ctx, server.store, kept).site()


def done(d: Any) -> Any:
    """
    What the Deferred C{d}, already fired, gave.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "did not finish at once"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def bench_client(server: Any, **fields: Any) -> tuple[str, str]:
    """
    Add the client the benchmarks request tokens for: its id and secret.
    """
    fields.setdefault("scope", "metrics")
    client, secret = done(server.add_client(fields.pop("name", "bench"), **fields))
    return client.id, secret
