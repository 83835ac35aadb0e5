"""
The HTTP edge against slow and greedy clients, over real HTTP framing
(L{StringTransport}) on an injected clock: deadlines for a request's headers
and body that trickled bytes do not push back, idle keep-alive connections
closed, a cap on open connections, an oversized body refused before it
arrives, no C{Server} header, and an access log without credentials.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from resource import RLIM_INFINITY
from typing import Any

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from oauthd import tap
from oauthd.config import build_config
from oauthd.services.fdlimit import RESERVED, make_room
from oauthd.testing import InlinePool
from oauthd.web.site import OAuthSite
from tests.helpers import InlineMemoryReactor, make_config, make_http

_PORTS = itertools.count(40000)

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


class Connection:
    """
    One client connection to a site, over a string transport.
    """

    def __init__(self, site: OAuthSite) -> None:
        address = IPv4Address("TCP", "127.0.0.1", next(_PORTS))
        protocol = site.buildProtocol(address)
        assert protocol is not None
        self.protocol: IProtocol = protocol
        self.transport = StringTransport(peerAddress=address)
        protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def received(self) -> bytes:
        return self.transport.value()

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    def lost(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))


class SiteCase(SynchronousTestCase):
    """
    A site over the whole server in memory, on its injected clock.
    """

    config_values: dict[str, Any] = {}

    def setUp(self) -> None:
        self.site = make_http(make_config(**self.config_values)).site()
        clock = self.site.reactor
        assert isinstance(clock, Clock)
        self.clock = clock
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)

    def connect(self) -> Connection:
        return Connection(self.site)


class ConnectionTests(SiteCase):
    def test_trickled_headers_are_cut_off_at_the_header_deadline(self) -> None:
        """
        A client that sends its request line, then one header byte at a time
        (well inside the idle timeout), is answered 408 and disconnected
        header_timeout seconds after it connected.
        """
        conn = self.connect()
        conn.send(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(4):
            self.clock.advance(2)
            conn.send(b"X")
        self.clock.advance(1.9)
        assert not conn.closing and conn.received() == b""
        self.clock.advance(0.1)
        assert conn.closing
        assert conn.received().startswith(b"HTTP/1.1 408 "), conn.received()
        assert b'"error":"invalid_request"' in conn.received()

    def test_a_kept_alive_request_has_its_own_header_deadline(self) -> None:
        """
        On a kept-alive connection the next request's header deadline starts
        with its first byte, not with the connection.
        """
        conn = self.connect()
        self.clock.advance(9)
        conn.send(HEALTHZ)
        assert conn.received().startswith(b"HTTP/1.1 200 ")
        conn.transport.clear()
        self.clock.advance(14)
        conn.send(b"G")
        self.clock.advance(9.9)
        conn.send(b"ET")
        assert not conn.closing
        self.clock.advance(0.1)
        assert conn.closing and conn.received().startswith(b"HTTP/1.1 408 ")

    def test_a_request_begun_with_the_one_before_has_its_header_deadline_from_then(self) -> None:
        """
        The first bytes of the next request, sent with the one before it,
        start its header deadline there (not the idle timeout, which would
        let it trickle its headers for that long first), and it waits for
        its headers as any other does (the slowest gives way at the cap).
        """
        conn = self.connect()
        conn.send(HEALTHZ + b"GET /hea")
        assert conn.received().startswith(b"HTTP/1.1 200 ")
        assert conn.protocol in self.site.awaiting_headers
        conn.transport.clear()
        self.clock.advance(5)
        conn.send(b"l")
        self.clock.advance(4.9)
        assert not conn.closing
        self.clock.advance(0.1)
        assert conn.closing and conn.received().startswith(b"HTTP/1.1 408 "), conn.received()

    def test_a_prompt_request_is_answered_and_kept_alive(self) -> None:
        conn = self.connect()
        for _ in range(3):
            conn.send(HEALTHZ)
            self.clock.advance(5)
        assert conn.received().count(b"HTTP/1.1 200 ") == 3
        assert not conn.closing

    def test_an_idle_kept_alive_connection_is_closed(self) -> None:
        conn = self.connect()
        conn.send(HEALTHZ)
        self.clock.advance(14.9)
        assert not conn.closing
        self.clock.advance(0.1)
        assert conn.closing

    def test_an_idle_timeout_changed_since_the_connection_opened_applies_at_its_next_wait(self) -> None:
        """
        The idle timeout is read each time a connection waits for its next
        request (a reload changes it for connections open already).
        """
        conn = self.connect()
        self.site.timeOut = 5
        conn.send(HEALTHZ)
        assert conn.received().startswith(b"HTTP/1.1 200 ")
        self.clock.advance(4.9)
        assert not conn.closing
        self.clock.advance(0.1)
        assert conn.closing

    def test_a_silent_connection_is_closed(self) -> None:
        conn = self.connect()
        self.clock.advance(10)
        assert conn.closing

    def test_a_trickled_body_is_cut_off_at_the_body_deadline(self) -> None:
        conn = self.connect()
        conn.send(b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
        for _ in range(14):
            self.clock.advance(2)
            conn.send(b"a")
        assert not conn.closing
        self.clock.advance(2)
        assert conn.closing and conn.received().startswith(b"HTTP/1.1 408 "), conn.received()

    def test_a_body_begun_with_its_headers_then_trickled_is_cut_off_at_the_body_deadline(self) -> None:
        conn = self.connect()
        conn.send(b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\n" + b"a" * 99)
        self.clock.advance(29)
        assert not conn.closing
        self.clock.advance(2)
        assert conn.closing and conn.received().startswith(b"HTTP/1.1 408 "), conn.received()

    def test_a_body_sent_with_its_headers_is_answered_and_the_idle_timeout_then_holds(self) -> None:
        conn = self.connect()
        conn.send(b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 29\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\ngrant_type=client_credentials")
        assert conn.received().startswith(b"HTTP/1.1 401 "), conn.received()
        self.clock.advance(14.9)
        assert not conn.closing
        self.clock.advance(0.2)
        assert conn.closing

    def test_each_deadline_counts_from_its_own_start(self) -> None:
        """
        Headers in just before their deadline: the body has its whole
        deadline from then (the headers' passes unnoticed). The next
        request's header deadline, sooner than the body's was, holds.
        """
        conn = self.connect()
        self.clock.advance(9)
        conn.send(b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 29\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
        for _ in range(14):
            self.clock.advance(2)
            conn.send(b"a")
        self.clock.advance(1.9)
        assert not conn.closing
        conn.send(b"a" * 15)
        assert conn.received().startswith(b"HTTP/1.1 "), conn.received()
        conn.transport.clear()
        conn.send(b"G")
        self.clock.advance(9.9)
        assert not conn.closing
        self.clock.advance(0.1)
        assert conn.closing and conn.received().startswith(b"HTTP/1.1 408 "), conn.received()

    def test_a_body_announced_too_large_is_refused_before_it_arrives(self) -> None:
        """
        A Content-Length over max_body is answered 413 as soon as the headers
        are in, without inviting the body (no 100 Continue), and the
        connection closes instead of reading it.
        """
        conn = self.connect()
        conn.send(b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n"
                  b"Content-Length: 65537\r\n\r\n")
        response = conn.received()
        assert response.startswith(b"HTTP/1.1 413 "), response
        assert b"100 Continue" not in response
        assert b"connection: close" in response.lower()
        assert b'"error":"invalid_request"' in response
        assert conn.closing

    def test_no_response_names_the_server_software(self) -> None:
        conn = self.connect()
        conn.send(HEALTHZ + b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        response = conn.received()
        assert response.count(b"HTTP/1.1 ") == 3, response
        assert b"server:" not in response.lower() and b"TwistedWeb" not in response

    def test_a_request_without_a_host_over_a_unix_socket_is_answered_never_500(self) -> None:
        """
        Over a UNIX socket the server's address names no host, and HTTP/1.0
        needs no Host header: a refusal or an unknown path is still answered
        in JSON (Klein's render reads a host name for every one it renders).
        """
        for request, status in ((b"GET /nowhere HTTP/1.0\r\n\r\n", b"404"),
                                (b"GET /healthz HTTP/1.0\r\n\r\n", b"200"),
                                (b"POST /api/v1/oauth/token HTTP/1.0\r\nContent-Length: 0\r\n\r\n", b"401"),
                                (b"GET /%ff HTTP/1.0\r\n\r\n", b"400")):
            protocol = self.site.buildProtocol(UNIXAddress("/run/oauthd.sock"))
            transport = StringTransport(hostAddress=UNIXAddress("/run/oauthd.sock"), peerAddress=UNIXAddress(None))
            protocol.makeConnection(transport)
            protocol.dataReceived(request)
            response = transport.value()
            assert response.split(b" ", 2)[1] == status, response
            assert b"content-type: application/json" in response.lower(), response

    def test_closed_connections_are_counted_out(self) -> None:
        conns = [self.connect() for _ in range(3)]
        assert self.site.connections == 3
        for conn in conns:
            conn.lost()
        assert self.site.connections == 0


class CapTests(SiteCase):
    config_values = {"max_connections": 3}

    def test_connections_over_the_cap_are_refused(self) -> None:
        """
        With max_connections open, none of them slow, the next connection is
        answered 503 and closed at once; once one closes, a new one is
        served.
        """
        conns = [self.connect() for _ in range(3)]
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        over = self.connect()
        assert over.closing
        assert over.received().startswith(b"HTTP/1.1 503 "), over.received()
        assert b"retry-after: 1" in over.received().lower()
        assert self.site.connections == 3
        assert any("max_connections" in formatEvent(e) for e in observer)
        conns[0].lost()
        again = self.connect()
        again.send(HEALTHZ)
        assert again.received().startswith(b"HTTP/1.1 200 ")

    def test_kept_alive_connections_are_not_closed_for_new_ones(self) -> None:
        conns = [self.connect() for _ in range(3)]
        for conn in conns:
            conn.send(HEALTHZ)
        self.clock.advance(5)
        assert self.connect().received().startswith(b"HTTP/1.1 503 ")
        assert not any(conn.closing for conn in conns)

    def test_at_the_cap_the_slowest_connection_gives_way(self) -> None:
        """
        At the cap, a new connection is served and the connection that has
        waited longest (over a second) for its request's headers is
        answered 408 and closed: slow clients cannot fill the cap to keep
        others out.
        """
        slow = [self.connect() for _ in range(2)]
        slow[0].send(b"GET /healthz HTTP/1.1\r\n")
        self.clock.advance(0.5)
        prompt = self.connect()
        prompt.send(HEALTHZ)
        self.clock.advance(0.6)
        new = self.connect()
        assert slow[0].closing and slow[0].received().startswith(b"HTTP/1.1 408 ")
        assert not slow[1].closing and not prompt.closing
        slow[0].lost()
        new.send(HEALTHZ)
        assert new.received().startswith(b"HTTP/1.1 200 ")
        assert self.site.connections == 3


class AccessLogTests(SynchronousTestCase):
    def test_credentials_in_urls_are_not_logged(self) -> None:
        """
        The access log keeps the path and harmless parameters, but not the
        values of credentials in the query string or the referrer.
        """
        site = make_http(make_config(access_log=True)).site()
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        site.startFactory()
        self.addCleanup(site.stopFactory)
        conn = Connection(site)
        conn.send(b"GET /healthz?x=1&access_token=SECRET1&Password=SECRET2&to%6Ben=SECRET3 HTTP/1.1\r\n"
                  b"Host: x\r\nReferer: https://app.example/cb?state=s&code=SECRET4#id_token=SECRET5\r\n\r\n")
        assert conn.received().startswith(b"HTTP/1.1 200 ")
        (line,) = [formatEvent(e) for e in observer if "/healthz" in formatEvent(e)]
        assert "SECRET" not in line, line
        assert "/healthz?x=1&access_token=REDACTED&Password=REDACTED&to%6Ben=REDACTED" in line
        assert "https://app.example/cb?state=s&code=REDACTED#id_token=REDACTED" in line

    def test_a_logout_hint_is_not_logged(self) -> None:
        """
        An ID token given as a logout's hint (PhotoPrism builds a GET URL)
        carries its user's claims and would let a log reader log them out.
        """
        from oauthd.web.accesslog import redacted

        url = b"/api/v1/oauth/logout?id_token_hint=eyJSECRET&state=x&login_hint=alice"
        assert redacted(url) == b"/api/v1/oauth/logout?id_token_hint=REDACTED&state=x&login_hint=REDACTED"


class FileLimitTests(SynchronousTestCase):
    """
    The daemon raises its soft limit on open files to fit max_connections
    beside its own files, as far as the hard limit allows.
    """

    def room(self, connections: int, soft: int, hard: int) -> tuple[int, list[tuple[int, int]]]:
        set_to: list[tuple[int, int]] = []
        fitted = make_room(connections, lambda which: (soft, hard),
                           lambda which, limits: set_to.append(limits))
        return fitted, set_to

    def test_the_soft_limit_is_raised_to_fit(self) -> None:
        assert self.room(1024, 1024, 524288) == (1024, [(1024 + RESERVED, 524288)])

    def test_a_high_enough_limit_is_left_alone(self) -> None:
        assert self.room(1024, 65536, 65536) == (1024, [])
        assert self.room(1024, RLIM_INFINITY, RLIM_INFINITY) == (1024, [])

    def test_a_low_hard_limit_admits_fewer_connections(self) -> None:
        assert self.room(1024, 512, 1024) == (1024 - RESERVED, [(1024, 1024)])
        assert self.room(1024, 100, 100) == (50, [])


def test_the_daemon_listens_with_the_configured_limits(tmp_path: Path) -> None:
    """
    twistd's service tree listens with a site on the daemon's reactor that
    has the configured deadlines and cap.
    """
    config = build_config({"data": str(tmp_path / "data"), "header_timeout": 5, "body_timeout": 7,
                           "idle_timeout": 9, "max_connections": 100}, {})
    reactor = InlineMemoryReactor()
    service = tap.build_service(config, reactor, journal_pool=InlinePool())
    service.privilegedStartService()
    service.startService()
    try:
        site = reactor.tcpServers[0][1]
        assert isinstance(site, OAuthSite)
        assert site.reactor is reactor
        assert (site.header_timeout, site.body_timeout, site.timeOut, site.max_connections) == (5, 7, 9, 100)
    finally:
        service.stopService()
