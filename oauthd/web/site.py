"""
The HTTP site: what every response carries, bodies capped while they
arrive, no tracebacks, and requests that let go of what they hold once
answered.

Every response carries C{X-Content-Type-Options: nosniff}; OAuth responses
also carry C{Cache-Control: no-store}. Nothing, however malformed, is
answered with an HTML page or a traceback.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger
from twisted.web import http as web_http
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from oauthd.protocol.errors import OAuthError
from oauthd.protocol.grants.answer import TokenAnswer
from oauthd.web.accesslog import access_log_line
from oauthd.web.connection import Channel, Refused

log = Logger()

_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""
Encodes response bodies (one encoder for all: C{json.dumps} with options
builds a new one every call).
"""


def json_body(
    request: IRequest,
    body: object,
    status: int = 200,
    headers: dict[str, str] | None = None,
    no_store: bool = True,
) -> bytes:
    """
    Set the status and headers of a JSON response and return its body.

    @param no_store: mark the response uncacheable (RFC 6749 section 5.1), as
        every response carrying or describing a credential must be.
    """
    if getattr(request, "code", None) != status:
        # (Else it is set already, with its reason: nothing sets another.)
        request.setResponseCode(status)
    text = _token_json(body) if type(body) is TokenAnswer else None
    data = (text if text is not None else _COMPACT.encode(body)).encode("utf-8")
    # Set in one go: these names and values are constants, already in the
    # form (canonical case, no line breaks) setHeader would bring them to.
    raw = request.responseHeaders._rawHeaders
    raw[b"Content-Type"] = [b"application/json"]
    if no_store:
        raw[b"Cache-Control"] = [b"no-store"]
        raw[b"Pragma"] = [b"no-cache"]
    if headers:
        for name, value in headers.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
    raw[b"Content-Length"] = [b"%d" % len(data)]
    return data


def _token_json(body: TokenAnswer) -> str | None:
    """
    What C{_COMPACT} makes of a token answer that has just the keys
    L{oauthd.protocol.grants.answer.issued} gives it, in that order, written
    by template (a few times less work); C{None} for one of any other shape.
    """
    text = _text
    try:
        optional = ""
        keys = 7
        if "refresh_token" in body:
            optional += ',"refresh_token":' + text(body["refresh_token"])
            keys += 1
        if "id_token" in body:
            optional += ',"id_token":' + text(body["id_token"])
            keys += 1
        if len(body) != keys or type(body["expires_in"]) is not int:
            return None
        return _TOKEN % (
            text(body["access_token"]), text(body["token_type"]), body["expires_in"], text(body["scope"]),
            optional, text(body["status"]), text(body["session_id"]), text(body["client_name"]),
        )
    except (KeyError, TypeError):
        return None


_text: Callable[[Any], str] = encode_basestring_ascii
"""A string as C{_COMPACT} encodes it (a C{TypeError} for anything else)."""

_TOKEN = ('{"access_token":%s,"token_type":%s,"expires_in":%d,"scope":%s%s,"status":%s,'
          '"session_id":%s,"client_name":%s}')


class CappedBody(io.BytesIO):
    """
    A request body that stops storing once it passes C{limit} bytes, so an
    oversized upload costs no memory; it is then answered 413.

    @ivar overflow: whether the body was (or announced itself as) too large.
    """

    def __init__(self, limit: int, length: int | None) -> None:
        super().__init__()
        self.limit = limit
        self.overflow = length is not None and length > limit

    def write(self, data: Any) -> int:
        if not self.overflow:
            if self.tell() + len(data) <= self.limit:
                return super().write(data)
            self.overflow = True
            self.seek(0)
            self.truncate()
        return len(data)


class _Request(Request):
    """
    A request that lets go of what it holds once it is answered.

    Klein renders each request in closures that refer to themselves, so a
    finished request is freed only by the cyclic garbage collector, and with
    it everything it still holds. Dropped here, its headers, addresses,
    arguments and Klein's adapters are freed by reference counting at once:
    a request then leaves about half as many objects for the collector (22
    instead of 45), which matters most for token requests, held across a
    journal fsync (C{python bench/token_path.py} prints the count).
    """

    _HELD = (
        "requestHeaders", "responseHeaders", "args", "client", "host", "transport",
        "prepath", "postpath", "received_cookies", "cookies", "_adapterCache",
    )

    arrived = 0.0
    """
    When the request was whole and handed over to be answered, on the
    site's clock (for the metrics' latency).
    """

    def process(self) -> None:
        # twisted.web gives every channel its site (not in its types).
        site: OAuthSite = self.channel.site  # type: ignore[attr-defined]
        self.arrived = site.reactor.seconds()
        super().process()

    def getRequestHostname(self) -> bytes:
        if self.requestHeaders._rawHeaders.get(b"Host") or hasattr(self.getHost(), "host"):
            name: bytes = super().getRequestHostname()
            return name
        # No Host header (HTTP/1.0 needs none) over a UNIX socket, whose
        # address names no host: twisted.web would raise AttributeError,
        # Klein's render (every refusal) a 500.
        return b"localhost"

    def finish(self) -> None:
        super().finish()
        held = self.__dict__
        for name in self._HELD:
            held.pop(name, None)


SLOW_AFTER = 1.0
"""
Seconds a connection may wait for a request's headers before it gives way
to a new connection when the cap is reached.
"""


class OAuthSite(Site):
    """
    The HTTP site: no tracebacks, bodies capped at C{max_body} while they
    arrive, no form parsing by twisted.web (the edge parses bodies itself,
    strictly, and only where a route reads one), requests that let go of
    what they hold once answered, deadlines slow clients cannot push back
    and at most C{max_connections} connections open at once (L{Channel}), no
    C{Server} header, and an access log (if on) without credentials.

    @ivar connections: the connections open now.
    @ivar awaiting_headers: the connections waiting for a request's headers,
        oldest first, with the time each began to wait.
    @ivar metrics: shown each request as it finishes, if set.
    @ivar outside: shown the status of each answer given outside any
        request (a 408, a 503 at the cap), if set.
    """

    metrics: Callable[[web_http.Request], None] | None = None
    outside: Callable[[int], None] | None = None

    displayTracebacks = False
    requestFactory = _Request
    # The channel itself, not twisted.web's wrapper that would switch to
    # HTTP/2 after TLS negotiation (oauthd serves HTTP/1.1 only).
    protocol = Channel  # type: ignore[assignment]

    def __init__(
        self,
        resource: IResource,
        max_body: int,
        access_log: bool = False,
        *,
        reactor: IReactorTime | None = None,
        header_timeout: float = 10,
        body_timeout: float = 30,
        idle_timeout: float = 15,
        max_connections: int = 4096,
    ) -> None:
        super().__init__(resource, parsePOSTFormSubmission=False, timeout=idle_timeout,
                         logFormatter=access_log_line, reactor=reactor)
        self.max_body = max_body
        self.access_log = access_log
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.connections = 0
        self.awaiting_headers: dict[Channel, float] = {}
        self._next_warning = 0.0

    def buildProtocol(self, addr: IAddress | None) -> Any:
        if self.connections >= self.max_connections and not self._made_room():
            self.answered_outside(503)
            return Refused()
        return super().buildProtocol(addr)

    def _made_room(self) -> bool:
        """
        At the cap, make room for a new connection by closing the one that
        has waited longest for a request's headers, if it has waited over
        L{SLOW_AFTER} seconds: a client sends its headers at once, so only
        slow ones give way, and they cannot keep others out by filling the
        cap.
        """
        now = self.reactor.seconds()
        if now >= self._next_warning:
            self._next_warning = now + 60
            log.warn("{count} HTTP connections open, the most allowed (max_connections): "
                     "closing the slowest or refusing new ones", count=self.connections)
        oldest = next(iter(self.awaiting_headers.items()), None)
        if oldest is None or now - oldest[1] < SLOW_AFTER:
            return False
        oldest[0].too_slow()
        return True

    def answered_outside(self, status: int) -> None:
        """
        Count an answer given outside any request (L{outside}).
        """
        if self.outside is not None:
            self.outside(status)

    def log(self, request: web_http.Request) -> None:
        if self.metrics is not None:
            self.metrics(request)
        if self.access_log:
            super().log(request)

    def getContentFile(self, length: int | None) -> CappedBody:
        return CappedBody(self.max_body, length)


PAGE_PATHS = frozenset({b"/api/v1/oauth/authorize"})
"""
Routes that answer with HTML pages: they refuse an oversized body
themselves, with a page (L{oauthd.web.parsing.params} sees the overflow).
"""


def too_large(limit: int) -> OAuthError:
    return OAuthError("invalid_request", f"the request body is larger than {limit} bytes", 413)


def _plain_host(host: bytes) -> bool:
    """
    Whether a C{Host} header is one L{_unroutable} would let by, for certain
    and at a glance: ASCII (so UTF-8), and its name has no empty label or
    one over 63 characters (all that IDNA refuses of an ASCII name).
    """
    return host.isascii() and len(host) < 64 and b".." not in host and host[:1] not in (b".", b"[")


def _unroutable(request: Request) -> str | None:
    """
    Why Klein cannot route C{request}, if it cannot: its path or host is
    not UTF-8, or its host name is not one werkzeug's C{Map.bind} (which
    Klein's render calls for every refusal) takes: it raises C{BadHost}
    then, a 500 in HTML, or nothing at all for a refusal given later.
    """
    try:
        b"/".join((request.prepath or []) + (request.postpath or [])).decode("utf-8")
        name = request.getRequestHostname().decode("utf-8")
    except UnicodeDecodeError:
        return "the URL is not UTF-8"
    try:
        # As Map.bind reads it (Klein adds a port after a colon).
        name.lower().partition(":")[0].encode("idna")
    except UnicodeError:
        return "the Host header is not a host name"
    return None


class Edge(Resource):
    """
    Wraps the Klein resource to add the headers every response must carry,
    including on routing errors, and to refuse URLs Klein cannot route
    (L{_unroutable}) with a JSON error rather than its plain-text one, a
    logged traceback or a 500.
    """

    isLeaf = True

    def __init__(self, inner: IResource) -> None:
        super().__init__()
        self._inner = inner

    def render(self, request: Request) -> Any:
        request.responseHeaders._rawHeaders[b"X-Content-Type-Options"] = [b"nosniff"]
        path = request.path
        hosts = request.requestHeaders._rawHeaders.get(b"Host")
        # A path of ASCII without escapes, and a plain host (or none: the
        # server's address stands for it), are fine without a closer look.
        if not (path.isascii() and b"%" not in path and (not hosts or _plain_host(hosts[-1]))):
            refused = _unroutable(request)
            if refused is not None:
                return json_body(request, {"error": "invalid_request", "error_description": refused}, 400)
        content = request.content
        if isinstance(content, CappedBody) and content.overflow and request.path not in PAGE_PATHS:
            error = too_large(content.limit)
            return json_body(request, error.body(), error.status)
        return self._inner.render(request)
