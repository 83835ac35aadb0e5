"""
The errors the protocol layer refuses with: L{OAuthError} for the HTTP edge
(RFC 6749 section 5.2 / RFC 6750 section 3: the error code, a description,
the HTTP status and the headers the RFCs require, C{WWW-Authenticate} on 401
and C{Retry-After} on 429), and L{AdminError} for administration (the control
edge turns each kind into its wire code).
"""

from __future__ import annotations

from collections.abc import Mapping


class OAuthError(Exception):
    """
    A refusal the client is told about precisely; never a server fault.

    @ivar error: the standard error code, e.g. C{invalid_client}.
    @ivar description: one line for C{error_description}; never contains a
        secret or a token.
    @ivar status: the HTTP status code.
    @ivar headers: extra response headers.
    @ivar context: audit fields for the refusal (client, user, token
        handle, limit, ...); never a secret.
    """

    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = dict(headers or {})
        self.context: dict[str, object] = {}

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bearer_challenge(realm: str, error: str = "", description: str = "", scope: str = "") -> str:
    """
    The C{WWW-Authenticate: Bearer} value of RFC 6750 section 3.
    """
    params = [f"realm={_quoted(realm)}"]
    if error:
        params.append(f"error={_quoted(error)}")
    if description:
        params.append(f"error_description={_quoted(description)}")
    if scope:
        params.append(f"scope={_quoted(scope)}")
    return "Bearer " + ", ".join(params)


REALM = "oauthd"

BASIC_CHALLENGE = f'Basic realm="{REALM}"'
"""
The challenge where clients authenticate (RFC 6749 section 2.3.1).
"""


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_client(description: str, basic_attempted: bool) -> OAuthError:
    """
    RFC 6749 section 5.2: 401, with a Basic challenge when the client tried
    Basic authentication.
    """
    headers = {"WWW-Authenticate": BASIC_CHALLENGE} if basic_attempted else {}
    return OAuthError("invalid_client", description, 401, headers)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def unauthorized_client(description: str) -> OAuthError:
    return OAuthError("unauthorized_client", description)


def unsupported_grant_type(description: str) -> OAuthError:
    return OAuthError("unsupported_grant_type", description)


def invalid_scope(description: str) -> OAuthError:
    return OAuthError("invalid_scope", description)


def invalid_token(description: str) -> OAuthError:
    """
    RFC 6750 section 3.1: a missing, malformed, expired or revoked token.
    """
    return OAuthError(
        "invalid_token",
        description,
        401,
        {"WWW-Authenticate": bearer_challenge(REALM, "invalid_token", description)},
    )


class Unauthenticated(OAuthError):
    """
    A refusal of a request that presented no credentials at all: RFC 6750
    section 3.1 tells it only the challenge, with no error code or other
    error information (its description is for the audit).
    """

    def body(self) -> dict[str, str]:
        return {}


def missing_token() -> OAuthError:
    """
    RFC 6750 section 3.1: a request with no credentials gets a bare challenge.
    """
    return Unauthenticated(
        "invalid_token",
        "no access token was presented",
        401,
        {"WWW-Authenticate": bearer_challenge(REALM)},
    )


def insufficient_scope(scope: str) -> OAuthError:
    description = f"the token lacks the {scope!r} scope"
    return OAuthError(
        "insufficient_scope",
        description,
        403,
        {"WWW-Authenticate": bearer_challenge(REALM, "insufficient_scope", description, scope)},
    )


def too_many_requests(retry_after: int) -> OAuthError:
    return OAuthError(
        "too_many_requests",
        "too many failed attempts; try again later",
        429,
        {"Retry-After": str(max(1, retry_after))},
    )


def temporarily_unavailable(description: str) -> OAuthError:
    return OAuthError("temporarily_unavailable", description, 503, {"Retry-After": "1"})


def deny(error: OAuthError, **context: object) -> OAuthError:
    """
    C{error}, with audit fields for the refusal (empty ones left out).
    """
    error.context.update((k, v) for k, v in context.items() if v not in (None, ""))
    return error


def safe_text(value: str, limit: int = 40) -> str:
    """
    C{value} cut short and reduced to the characters RFC 6749 allows in an
    C{error_description} (printable ASCII but C{"} and C{\\}), so user input
    echoed in an error can break neither JSON nor a header.
    """
    out = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in value[:limit])
    return out + ("..." if len(value) > limit else "")


class AdminError(Exception):
    """
    An administrative request the caller must correct; the message is one
    line for the user.
    """


class NotFound(AdminError):
    """
    No such client, user or token.
    """


class Conflict(AdminError):
    """
    The name is taken.
    """


class InvalidValue(AdminError):
    """
    A value is malformed or out of range.
    """
