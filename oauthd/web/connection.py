"""
HTTP connections that slow clients cannot hold open: deadlines for a
request's headers and body that arriving bytes do not push back, and a cap
on the connections open at once.

Twisted's own idle timeout restarts on every byte, so a client sending a
header byte every few seconds would keep its connection (and a file
descriptor) for as long as it likes; with enough of them the daemon runs
out of descriptors and refuses everyone.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

if TYPE_CHECKING:
    from oauthd.web.site import OAuthSite


def raw_response(status: bytes, error: str, description: str, *headers: bytes) -> bytes:
    """
    A whole JSON error response, for answers given outside any request
    (the connection then closes).
    """
    body = json.dumps({"error": error, "error_description": description},
                      separators=(",", ":")).encode("ascii")
    head = [
        b"HTTP/1.1 " + status,
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
        b"Cache-Control: no-store",
        b"X-Content-Type-Options: nosniff",
        b"Connection: close",
        *headers,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


TOO_SLOW = raw_response(
    b"408 Request Timeout", "invalid_request", "the request took too long to arrive",
)

BUSY = raw_response(
    b"503 Service Unavailable", "temporarily_unavailable", "too many connections; try again",
    b"Retry-After: 1",
)


class Refused(Protocol):
    """
    A connection over the cap: told so, and closed at once.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(BUSY)
        self.transport.loseConnection()


class Channel(HTTPChannel):
    """
    One HTTP/1.1 connection of an L{OAuthSite}.

    A request's line and headers must arrive within the site's
    C{header_timeout} of its first byte (or of the connection, for its first
    request), and its body within C{body_timeout} of its headers; otherwise
    it is answered 408 and the connection closes. The idle timeout (the
    site's C{timeOut}) closes a kept-alive connection silent between two
    requests, on the same timer (not twisted.web's own, which it would
    move twice a request). A body announced larger than the site's
    C{max_body} is answered 413 as soon as the headers are in, and the
    connection closes rather than read it. The site counts its connections,
    and knows which are waiting for a request's headers (and since when),
    to close the slowest at its cap.
    """

    site: OAuthSite
    # One timer for all the deadlines of the connection (the armed one is
    # due at _due; the timer, while there is one, at _timer_due). It is
    # moved only to come sooner: a timer that fires before _due sets itself
    # again for the rest, and does nothing with no deadline armed, so a
    # request that arrives at once moves no timer.
    _deadline: IDelayedCall | None = None
    _timer_due = 0.0
    _armed = False
    _due = 0.0
    # The armed deadline is the idle timeout (not a request's).
    _idle = False

    def connectionMade(self) -> None:
        self.timeOut = None
        super().connectionMade()
        self.site.connections += 1
        self._await_headers()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_deadline()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.site.connections -= 1
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        if (self._idle or not self._armed) and not self._handlingRequest:
            # The first bytes of the next request on a kept-alive connection.
            self._await_headers()
        # Not HTTPChannel's: it only restarts twisted.web's idle timeout,
        # which this channel leaves off (timeOut is None) for its deadlines.
        LineReceiver.dataReceived(self, data)

    def allHeadersReceived(self) -> None:
        self._stop_deadline()
        request = self.requests[-1]
        too_large = self.length is not None and self.length > self.site.max_body
        if too_large:
            # Refused unseen: no "100 Continue" inviting the client to send it.
            request.requestHeaders.removeHeader(b"expect")
        super().allHeadersReceived()
        if too_large:
            # The request is complete as far as this channel goes: it is
            # answered now (its content knows it overflowed), and the
            # connection closes after the answer instead of reading the body.
            self.length = 0
            self.persistent = False
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        elif self.length != 0 and (self.length is None or self.paused or len(self._buffer) < self.length):
            # Not for a body that came with its headers: it is read before
            # this call to dataReceived returns, so no deadline could pass.
            self._start_deadline(self.site.body_timeout)

    def allContentReceived(self) -> None:
        if self._armed:
            self._stop_deadline()
        super().allContentReceived()

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Headers) -> None:
        # twisted.web names itself and its version in every response (by
        # this canonical name: no need to bring the name to it first).
        headers._rawHeaders.pop(b"Server", None)
        super().writeHeaders(version, code, reason, headers)

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.persistent and not self._armed and not self._handlingRequest:
            if self._buffer:
                # The next request's first bytes came with this one (still
                # in the line parser's buffer, not passed to dataReceived).
                self._await_headers()
            elif idle := self.site.timeOut:
                self._start_deadline(idle)
                self._idle = True

    def _await_headers(self) -> None:
        self.site.awaiting_headers[self] = self._start_deadline(self.site.header_timeout)

    def _start_deadline(self, seconds: float) -> float:
        """
        Arm the deadline C{seconds} from now; return now.
        """
        now = self.site.reactor.seconds()
        self._armed = True
        self._idle = False
        due = self._due = now + seconds
        if self._deadline is None:
            self._deadline = self.callLater(seconds, self._deadline_passed)
            self._timer_due = due
        elif self._timer_due > due:
            self._deadline.reset(seconds)
            self._timer_due = due
        return now

    def _stop_deadline(self) -> None:
        self.site.awaiting_headers.pop(self, None)
        self._armed = False

    def _deadline_passed(self) -> None:
        self._deadline = None
        if not self._armed:
            return
        now = self.site.reactor.seconds()
        left = self._due - now
        if left > 0:
            self._deadline = self.callLater(left, self._deadline_passed)
            self._timer_due = self._due
        elif self._idle:
            self._armed = False
            self.timeoutConnection()
        else:
            self.too_slow()

    def too_slow(self) -> None:
        """
        Answer 408 and close: the request is taking too long to arrive.
        """
        self._stop_deadline()
        assert self.transport is not None
        self.transport.write(TOO_SLOW)
        self.site.answered_outside(408)
        # As Twisted's idle timeout does: a client that does not read its
        # answer is cut off a little later.
        self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()
