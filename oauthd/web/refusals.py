"""
How the HTTP API words a refusal: RFC 6749's shape (section 5.2), or
PhotoPrism's on its session endpoints, with the challenge a 401 (and a
resource's 400) carries.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from oauthd.protocol import errors
from oauthd.protocol.context import Body
from oauthd.protocol.errors import OAuthError
from oauthd.web.site import json_body

_PHOTOPRISM_MESSAGES = {
    401: "Invalid credentials",
    403: "Permission denied",
    404: "Not found",
    405: "Method not allowed",
    413: "Request too large",
    429: "Rate limit exceeded",
    503: "Service unavailable",
}
"""
What PhotoPrism's session endpoints say in C{error} for each status (its web
UI shows that string); anything else is its generic 400 message.
"""


def refusal(request: IRequest, error: OAuthError) -> bytes:
    """
    The response refusing C{request}: RFC 6749's shape, or PhotoPrism's on
    its session endpoints; a request with no credentials at all gets the
    bare challenge and an empty body everywhere (RFC 6750 section 3.1).
    """
    photoprism = is_session_path(request) and not isinstance(error, errors.Unauthenticated)
    body = _photoprism_refusal(error) if photoprism else error.body()
    return json_body(request, body, error.status, _challenged(request, error))


def is_session_path(request: IRequest) -> bool:
    path = request.path or b""
    return path in (b"/api/v1/session", b"/api/v1/sessions") or path.startswith(
        (b"/api/v1/session/", b"/api/v1/sessions/"))


def _photoprism_refusal(error: OAuthError) -> Body:
    """
    A refusal in the shape of PhotoPrism's session endpoints: the status as
    C{code}, its message as C{error}, and the precise reason as C{details}
    (RFC 6749's C{error} code kept as C{reason}).
    """
    return {
        "code": error.status,
        "error": _PHOTOPRISM_MESSAGES.get(error.status, "Unable to do that"),
        "details": error.description,
        "reason": error.error,
    }


def _challenged(request: IRequest, error: OAuthError) -> dict[str, str]:
    """
    The headers of a refusal, with the challenge every 401 carries (RFC 9110
    section 15.5.2), as does a resource's 400 (RFC 6750 section 3), where
    the refusal brings none of its own: Bearer at the resources (userinfo,
    ending a session), Basic where clients authenticate.
    """
    if "WWW-Authenticate" in error.headers:
        return error.headers
    resource = request.path == b"/api/v1/oauth/userinfo" or request.method == b"DELETE"
    if error.status == 401:
        challenge = errors.bearer_challenge(errors.REALM) if resource else errors.BASIC_CHALLENGE
    elif error.status == 400 and resource:
        challenge = errors.bearer_challenge(errors.REALM, error.error, error.description)
    else:
        return error.headers
    return {**error.headers, "WWW-Authenticate": challenge}
