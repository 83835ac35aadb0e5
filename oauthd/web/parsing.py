"""
Reading a request: its body's parameters (form or JSON, strictly), its
client credentials, the bearer token it presents, and the address it came
from. Anything malformed is refused with C{invalid_request} (or
C{invalid_client}) before any work.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Collection
from typing import Any
from urllib.parse import unquote_plus

from twisted.web.iweb import IRequest

from oauthd.protocol import errors
from oauthd.protocol.clientauth import ClientAuth
from oauthd.protocol.limits import client_address
from oauthd.web.site import CappedBody, too_large

MAX_HEADER = 4096
"""
The longest credential header read (PhotoPrism's limit); longer ones are
refused without a lookup.
"""

MAX_FIELDS = 64
"""
The most parameters one request body may carry.
"""

MAX_PARAMETER = 4096
"""
The longest parameter value read; longer ones are refused before any work.
"""

NUMERIC_PARAMETERS = frozenset({"expires_in"})
"""
Parameters PhotoPrism's clients send as JSON numbers (its C{ExpiresIn
int64}); a non-negative whole number is read as its decimal text.
"""


KNOWN_PARAMETERS = frozenset({
    "access_token", "client_id", "client_name", "client_secret", "code", "code_challenge",
    "code_challenge_method", "code_verifier", "consent", "csrf", "expires_in", "grant_type",
    "id_token_hint", "login", "login_hint", "max_age", "nonce", "otp", "password", "prompt",
    "redirect_uri", "refresh_token", "request", "request_uri", "response_mode", "response_type",
    "scope", "state", "token", "token_type_hint", "ui_locales", "username",
})
"""
Parameter names an endpoint reads: a refusal names one of these, any other
name is only "a parameter", so that no caller-chosen text (a pasted secret,
say) reaches the answer or the audit trail.
"""


def _named(name: str) -> str:
    return f"the parameter {name}" if name in KNOWN_PARAMETERS else "a parameter"


def client_ip(request: IRequest, trusted: Collection[str]) -> str:
    """
    The address a request came from: its peer, or with trusted proxies what
    they say (L{client_address}).
    """
    peer = getattr(request.getClientAddress(), "host", "") or "-"
    if not trusted:
        return str(peer)
    forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for") or []
    return client_address(
        str(peer), [v.decode("latin-1") for v in forwarded], trusted,
    )


def params(request: IRequest, max_body: int, untyped_json: bool = False) -> dict[str, str]:
    """
    The request body's parameters: C{application/x-www-form-urlencoded}
    (the standard) or a JSON object of strings (PhotoPrism's clients; the
    L{NUMERIC_PARAMETERS} may be numbers), UTF-8 either way. The query
    string is never read: credentials do not belong in URLs.

    @param untyped_json: read a body without a C{Content-Type} as JSON if it
        is a JSON object, as PhotoPrism's session endpoints do.

    @raise OAuthError: C{invalid_request} for anything else: a repeated
        parameter, another content type, bytes that are not UTF-8, a
        value that is not a string or is too long; 413 for a body over
        C{max_body}.
    """
    body = _body(request, max_body)
    types = request.requestHeaders._rawHeaders.get(b"Content-Type")
    # The two types as clients send them, read without a closer look.
    media = types[0] if types is not None and len(types) == 1 and types[0] in _PLAIN else _media(request)
    if media == b"application/x-www-form-urlencoded":
        pairs = _form_pairs(body)
    elif media == b"application/json":
        pairs = _json_pairs(body) if body.strip() else []
    elif not body:
        return {}
    elif not media and untyped_json and body.lstrip().startswith(b"{"):
        pairs = _json_pairs(body)
    elif not media:
        raise errors.invalid_request("a body needs a Content-Type")
    else:
        raise errors.invalid_request(
            "the body must be application/x-www-form-urlencoded or application/json"
        )
    return _unique(pairs)


def json_object(request: IRequest, max_body: int) -> dict[str, object]:
    """
    The request body as a JSON object of any JSON values (RFC 7591's
    metadata has arrays), UTF-8, with no key repeated at any depth.

    @raise OAuthError: C{invalid_request} for any other body; 413 for one
        over C{max_body}.
    """
    body = _body(request, max_body)
    if _media(request) != b"application/json":
        raise errors.invalid_request("the body must be application/json")
    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=_object,
                           parse_constant=_no_constant)
        # JSON escapes can spell a lone surrogate, which is no text at all.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeError:
        raise errors.invalid_request("the JSON body is not valid UTF-8 text") from None
    except _Repeated as e:
        raise errors.invalid_request(f"{_named(str(e))} is repeated") from None
    except (ValueError, RecursionError):
        raise errors.invalid_request("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise errors.invalid_request("the JSON body must be an object")
    return value


class _Repeated(Exception):
    pass


def _object(items: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in items:
        if name in found:
            raise _Repeated(name)
        found[name] = value
    return found


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _body(request: IRequest, max_body: int) -> bytes:
    content = request.content
    if isinstance(content, CappedBody) and content.overflow:
        raise too_large(max_body)
    body = b""
    if content is not None:
        content.seek(0)
        body = content.read(max_body + 1)
    if len(body) > max_body:
        raise too_large(max_body)
    return body


_PLAIN = frozenset({b"application/x-www-form-urlencoded", b"application/json"})


def _media(request: IRequest) -> bytes:
    """
    The body's media type, lower-cased, if its charset (if any) is UTF-8.
    """
    types = request.requestHeaders._rawHeaders.get(b"Content-Type") or []
    if len(types) > 1:
        raise errors.invalid_request("the Content-Type header is repeated")
    media, _, rest = (types[0] if types else b"").partition(b";")
    media = media.strip().lower()
    charset = b""
    for parameter in rest.split(b";"):
        name, _, value = parameter.partition(b"=")
        if name.strip().lower() == b"charset":
            charset = value.strip().strip(b'"').lower()
    if charset not in (b"", b"utf-8", b"utf8"):
        raise errors.invalid_request("only UTF-8 bodies are accepted")
    return media


def query(request: IRequest) -> dict[str, str]:
    """
    The query string's parameters, read as strictly as a form body (UTF-8,
    none repeated, none too long). Only the authorization and logout endpoints read
    them (RFC 6749 section 3.1).

    @raise OAuthError: C{invalid_request} for a query that is not so.
    """
    return _unique(_form_pairs(request.uri.partition(b"?")[2], "query string"))


def _unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
    params: dict[str, str] = {}
    blank = False
    for name, value in pairs:
        if name in params:
            raise errors.invalid_request(f"{_named(name)} is repeated")
        if len(value) > MAX_PARAMETER:
            raise errors.invalid_request(f"{_named(name)} is too long")
        params[name] = value
        blank = blank or not value
    # RFC 6749 section 3.1: a parameter without a value is omitted.
    return {k: v for k, v in params.items() if v} if blank else params


def authorization(
    request: IRequest, basic: bool = True,
) -> tuple[tuple[str, str] | None, str | None, bool]:
    """
    The C{Authorization} header: Basic credentials (read only if
    C{basic}), a Bearer token, and whether another scheme was used.
    """
    values = request.requestHeaders._rawHeaders.get(b"Authorization")
    if not values:
        return None, None, False
    if len(values) > 1:
        raise errors.invalid_request("the Authorization header is repeated")
    raw = values[0].strip()
    scheme, _, credentials = raw.partition(b" ")
    scheme = scheme.lower()
    if scheme == b"basic":
        return (_basic(credentials.strip()) if basic else None), None, False
    if scheme == b"bearer":
        return None, credentials.strip()[:MAX_HEADER + 1].decode("latin-1"), False
    return None, None, True


def client_auth(request: IRequest, params: dict[str, str]) -> tuple[ClientAuth, str | None]:
    """
    The client credentials offered (Basic or body) and the bearer token
    presented, for endpoints that take either. Another C{Authorization}
    scheme is an authentication failure there.
    """
    basic, bearer, other = authorization(request)
    if other:
        raise errors.invalid_client("unsupported authentication scheme: use Basic", True)
    auth = ClientAuth(basic, params.get("client_id", ""), params.get("client_secret", ""))
    headers = request.requestHeaders._rawHeaders
    if _AUTH_TOKEN not in headers and _SESSION_ID not in headers:
        # (What presented gives then, without its call.)
        return auth, bearer
    return auth, presented(request, bearer)


_AUTH_TOKEN, _SESSION_ID = b"X-Auth-Token", b"X-Session-Id"


def presented(request: IRequest, bearer: str | None) -> str | None:
    """
    The token presented as a bearer credential, in PhotoPrism's order:
    C{X-Auth-Token}, then C{X-Session-ID}, then C{Authorization: Bearer}.
    """
    # By the names as twisted.web keeps them (canonical case): read for
    # every request, without bringing the name to that case first.
    for name in (_AUTH_TOKEN, _SESSION_ID):
        values = request.requestHeaders._rawHeaders.get(name)
        if values:
            if len(values) > 1:
                raise errors.invalid_request(f"the {name.decode().lower()} header is repeated")
            value: bytes = values[0].strip()
            if value:
                return value[:MAX_HEADER + 1].decode("latin-1")
    return bearer


def bearer_of(request: IRequest) -> str | None:
    """
    The bearer token of a resource request; another C{Authorization}
    scheme presents none.

    @raise OAuthError: C{invalid_request} with RFC 6750's challenge (section
        3: a resource refusing a request names the scheme it wants).
    """
    try:
        _, bearer, _ = authorization(request, basic=False)
        return presented(request, bearer)
    except errors.OAuthError as e:
        e.headers["WWW-Authenticate"] = errors.bearer_challenge(errors.REALM, e.error, e.description)
        raise


def _basic(credentials: bytes) -> tuple[str, str]:
    """
    The client id and secret in Basic credentials: base64 of
    C{id:secret}, each form-encoded first (RFC 6749 section 2.3.1).
    """
    try:
        # What b64decode(credentials, validate=True) does, without its two calls.
        text = binascii.a2b_base64(credentials, strict_mode=True).decode("utf-8")
        client_id, colon, secret = text.partition(":")
        client_id = _unquoted(client_id)
        secret = _unquoted(secret)
    except (binascii.Error, ValueError):
        colon = ""
    if not colon or not client_id:
        raise errors.invalid_client("malformed Basic credentials", True)
    return client_id, secret


def _form_pairs(body: bytes, what: str = "form body") -> list[tuple[str, str]]:
    """
    The pairs of a form body (or query string) as C{urllib.parse.parse_qsl}
    reads them (blank values kept, strict UTF-8), with less work per field.
    """
    try:
        fields = body.decode("ascii").split("&") if body else []
        if len(fields) > MAX_FIELDS:
            raise errors.invalid_request(f"the {what} has more than {MAX_FIELDS} parameters")
        pairs = []
        # A loop rather than comprehensions, and _unquoted's test inline:
        # each of their calls costs more than the field's text.
        for field in fields:
            if field:
                name, _, value = field.partition("=")
                if "%" in name or "+" in name:
                    name = _unquoted(name)
                if "%" in value or "+" in value:
                    value = _unquoted(value)
                pairs.append((name, value))
        return pairs
    except UnicodeDecodeError:
        raise errors.invalid_request(f"the {what} is not valid UTF-8") from None


def _unquoted(text: str) -> str:
    """
    A form-encoded name or value, decoded (strict UTF-8).
    """
    if "%" not in text and "+" not in text:
        return text
    return unquote_plus(text, errors="strict")


def _json_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=_pairs)
    except UnicodeDecodeError:
        raise errors.invalid_request("the JSON body is not valid UTF-8") from None
    except (ValueError, RecursionError):
        raise errors.invalid_request("the body is not valid JSON") from None
    if not isinstance(value, _Pairs):
        raise errors.invalid_request("the JSON body must be an object")
    if len(value) > MAX_FIELDS:
        raise errors.invalid_request(f"the body has more than {MAX_FIELDS} parameters")
    pairs = []
    for name, item in value:
        if item is None:
            continue
        if name in NUMERIC_PARAMETERS and type(item) is int:
            if item < 0:
                raise errors.invalid_request(f"the parameter {name} must not be negative")
            # Read as the text a form would carry; the endpoint that uses it
            # checks its range.
            item = str(item)
        if not isinstance(item, str):
            kind = "a whole number of seconds" if name in NUMERIC_PARAMETERS else "a string"
            raise errors.invalid_request(f"{_named(name)} must be {kind}")
        try:
            # JSON escapes can spell a lone surrogate, which is no text at all.
            item.encode("utf-8")
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise errors.invalid_request(f"{_named(name)} is not valid text") from None
        pairs.append((name, item))
    return pairs


class _Pairs(list[tuple[str, Any]]):
    """
    A JSON object as its list of pairs, so a repeated key is seen.
    """


def _pairs(items: list[tuple[str, Any]]) -> _Pairs:
    return _Pairs(items)
