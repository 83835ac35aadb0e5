"""
The rules every client, user and token obeys, whichever edge changes them:
names, lifetimes, roles, grant types, redirect URIs, password lengths.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

from oauthd.protocol.errors import InvalidValue

GRANT_TYPES = frozenset({
    "client_credentials",
    "password",
    "refresh_token",
    "authorization_code",
    "urn:ietf:params:oauth:grant-type:device_code",
})
"""
Every grant type a client may be allowed (the token endpoint serves those in
L{oauthd.protocol.grants.SERVED}).
"""

ROLES = frozenset({"admin", "user"})
CLIENT_ROLES = frozenset({"client", "admin"})
MAX_NAME = 200
MAX_LIFETIME = 10 * 365 * 86400
MAX_REDIRECT_URIS = 16
MIN_PASSWORD = 8
_URI_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%")


def check_label(what: str, value: str) -> str:
    """
    A human-chosen name (client name, token label): printable text, trimmed,
    at most L{MAX_NAME} characters.
    """
    value = value.strip()
    if not value:
        raise InvalidValue(f"{what} must not be empty")
    if len(value) > MAX_NAME:
        raise InvalidValue(f"{what} is longer than {MAX_NAME} characters")
    if any(unicodedata.category(c).startswith("C") for c in value):
        raise InvalidValue(f"{what} must not contain control characters")
    return value


def valid_username(name: str) -> bool:
    """
    Whether C{name} is a user name: 1-64 characters of a-z, 0-9 and . _ @ -.
    """
    return 1 <= len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "._@-") for c in name)


def check_username(value: str) -> str:
    """
    C{value} trimmed and lower-cased, if it is a valid user name.
    """
    name = value.strip().lower()
    if not valid_username(name):
        raise InvalidValue("user names are 1-64 characters of a-z, 0-9 and . _ @ -")
    return name


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidValue(f"passwords have at least {MIN_PASSWORD} characters")
    return password


def check_lifetime(what: str, seconds: int, allow_never: bool = False) -> int:
    if seconds == 0 and allow_never:
        return 0
    if not 1 <= seconds <= MAX_LIFETIME:
        raise InvalidValue(f"{what} must be between 1 and {MAX_LIFETIME} seconds")
    return seconds


def check_redirect_uri_count(uris: tuple[str, ...]) -> None:
    """
    A client has at most L{MAX_REDIRECT_URIS}: checked before anything else,
    so an oversized list costs no more work.
    """
    if len(uris) > MAX_REDIRECT_URIS:
        raise InvalidValue(f"a client has at most {MAX_REDIRECT_URIS} redirect URIs")


def check_redirect_uris(uris: tuple[str, ...], what: str = "redirect URI") -> None:
    """
    RFC 6749 section 3.1.2 and RFC 8252 sections 7 and 8.4: each absolute,
    of plain URI characters, without user information or a fragment; https
    with a host, plain http only for loopback, or a private-use scheme in
    reverse domain name form (C{com.example.app:}, so never C{javascript:},
    C{data:} or C{file:}); no wildcard host; at most L{MAX_REDIRECT_URIS}.
    """
    check_redirect_uri_count(uris)
    for uri in uris:
        shown = repr(uri[:80])
        try:
            parts = urlsplit(uri)
            host = parts.hostname
        except ValueError:
            raise InvalidValue(f"{what} {shown} is not a valid URI") from None
        if len(uri) > 2000 or not set(uri) <= _URI_CHARACTERS:
            raise InvalidValue(f"{what} {shown} must be a URI of at most 2000 plain characters")
        if not parts.scheme or "#" in uri or "@" in parts.netloc:
            raise InvalidValue(f"{what} {shown} must be absolute, without a fragment or user")
        if parts.scheme == "https" and not host:
            raise InvalidValue(f"{what} {shown} names no host")
        if host and "*" in host:
            raise InvalidValue(f"{what} {shown} must name its host, without a wildcard")
        if parts.scheme == "http" and host not in ("127.0.0.1", "::1", "localhost"):
            raise InvalidValue(f"{what} {shown} must use https (http only for loopback)")
        if parts.scheme not in ("http", "https") and "." not in parts.scheme:
            raise InvalidValue(f"{what} {shown}: a private-use scheme is a reverse domain "
                               "name, such as com.example.app")
