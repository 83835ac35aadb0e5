"""
The access log's line for a request: twisted.web's combined log format,
with the values of credentials carried in a URL (the request's own, or the
page it was referred from) replaced by C{REDACTED}.

oauthd reads no credential from a query string, but clients put them there
anyway (C{?access_token=}, a mistaken C{?password=}, a referring page's
C{?code=}); the log must not keep them.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.web.http import combinedLogFormatter
from twisted.web.iweb import IRequest

CREDENTIALS = frozenset({
    b"access_token", b"refresh_token", b"id_token", b"token", b"code", b"device_code",
    b"user_code", b"password", b"passcode", b"client_secret", b"client_assertion",
    b"assertion", b"code_verifier", b"secret", b"session_id", b"otp",
    b"id_token_hint", b"logout_hint", b"login_hint", b"registration_access_token",
})
"""
Query parameters whose values are credentials or name a person (an ID
token as a logout's hint carries its user's claims; a login hint is a
username), by name (compared case-insensitively, after percent-decoding).
"""


def redacted(url: bytes) -> bytes:
    """
    C{url} with the value of each credential parameter in its query (or its
    fragment, where the implicit grant put tokens) replaced by C{REDACTED}.
    """
    start = min((i for i in (url.find(b"?"), url.find(b"#")) if i >= 0), default=len(url))
    return url[:start] + _PARAMETER.sub(_redact, url[start:])


_PARAMETER = re.compile(rb"([?&#;])([^=&#;]*)=([^&#;]*)")


def _redact(match: re.Match[bytes]) -> bytes:
    separator, name, value = match.groups()
    if unquote_to_bytes(name.replace(b"+", b" ")).strip().lower() in CREDENTIALS:
        value = b"REDACTED"
    return separator + name + b"=" + value


class _Logged:
    """
    What the access log formatter reads of a request, its URL and referrer
    redacted.
    """

    def __init__(self, request: IRequest) -> None:
        self._request = request
        self.uri = redacted(request.uri)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)

    def getHeader(self, name: bytes) -> bytes | None:
        value: bytes | None = self._request.getHeader(name)
        if value is not None and name.lower() == b"referer":
            return redacted(value)
        return value


def access_log_line(timestamp: str, request: IRequest) -> str:
    """
    An L{IAccessLogFormatter}: the combined log format, credentials redacted.
    """
    return combinedLogFormatter(timestamp, _Logged(request))  # type: ignore[no-any-return]
