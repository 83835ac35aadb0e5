"""
C{GET /api/v1/metrics}: the daemon's metrics for Prometheus, to a bearer
token with the scope C{metrics} (or C{*}); and the count of every HTTP
request by the route that answered it.

The text exposition format, or OpenMetrics when the scraper asks for it in
C{Accept} (Prometheus does); prometheus-client writes both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client import exposition as text
from prometheus_client.openmetrics import exposition as openmetrics

from twisted.internet.interfaces import IReactorTime
from twisted.web.http import Request
from twisted.web.iweb import IRequest

from oauthd.protocol.bearer import bearer_with_scope
from oauthd.protocol.context import Context
from oauthd.web import parsing

SCOPE = "metrics"

TEXT = b"text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = b"application/openmetrics-text; version=1.0.0; charset=utf-8"

OTHER = "other"
"""
The C{endpoint} of a request no route answers (a 404), so that scanning
for paths cannot make up label values; and of an answer given outside any
request (a 408, a 503 at the connection cap).
"""


class Tally(Protocol):
    def done(self, status: int, seconds: float) -> None: ...

    def count(self, status: int) -> None: ...


class Recorder(Protocol):
    """
    What the HTTP edge needs of the daemon's metrics
    (L{oauthd.services.metrics.Metrics}).
    """

    @property
    def registry(self) -> CollectorRegistry: ...

    def route(self, endpoint: str) -> Tally: ...


class Exposition:
    """
    The metrics endpoint's answer.
    """

    def __init__(self, ctx: Context, registry: CollectorRegistry) -> None:
        self._ctx = ctx
        self._registry = registry

    def render(self, request: IRequest, ip: str) -> bytes:
        """
        The metrics, in the format C{Accept} asks for.

        @raise OAuthError: RFC 6750's refusals: 401 without a token or with
            a bad one, 403 C{insufficient_scope} for a token without the
            C{metrics} scope.
        """
        bearer_with_scope(self._ctx, parsing.bearer_of(request), ip, SCOPE)
        body: bytes
        if wants_openmetrics(request.getHeader(b"accept") or b""):
            body, content_type = openmetrics.generate_latest(self._registry), OPENMETRICS
        else:
            body, content_type = text.generate_latest(self._registry), TEXT
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return body


def wants_openmetrics(accept: bytes) -> bool:
    """
    Whether C{accept} takes OpenMetrics (at any version but with C{q=0}).
    prometheus-client's own negotiation is not used: some headers make it
    raise.
    """
    for offer in accept.split(b","):
        media, *parameters = (part.strip().lower() for part in offer.split(b";"))
        if media == b"application/openmetrics-text" and not any(
            p.replace(b" ", b"") in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000") for p in parameters
        ):
            return True
    return False


class RequestMetrics:
    """
    Counts each answered request, and times it, under its route's template
    (C{/api/v1/oauth/register/<string:client_id>}), never its raw path.
    Called by the site as each request finishes.
    """

    def __init__(self, rules: Iterable[str], recorder: Recorder, clock: IReactorTime) -> None:
        self._seconds = clock.seconds
        self._exact: dict[bytes, Tally] = {}
        # (the template's fixed start, its tally) for templates that end in
        # one variable path segment, the only kind oauthd's routes have.
        self._prefixes: list[tuple[bytes, Tally]] = []
        self._other = recorder.route(OTHER)
        for rule in rules:
            head, variable, _ = rule.partition("<")
            if variable:
                self._prefixes.append((head.encode("utf-8"), recorder.route(rule)))
            else:
                self._exact[rule.encode("utf-8")] = recorder.route(rule)

    def __call__(self, request: Request) -> None:
        path = request.path
        tally = self._exact.get(path) or self._templated(path or b"")
        # The site's clock is the wall clock, which may be stepped back.
        tally.done(request.code, max(0.0, self._seconds() - getattr(request, "arrived", 0.0)))

    def outside(self, status: int) -> None:
        """
        Count an answer given outside any request (a 408, a 503 at the
        cap) under L{OTHER}, untimed: no request arrived.
        """
        self._other.count(status)

    def _templated(self, path: bytes) -> Tally:
        for head, tally in self._prefixes:
            if path.startswith(head) and len(path) > len(head) and b"/" not in path[len(head):]:
                return tally
        return self._other
