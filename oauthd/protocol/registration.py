"""
Dynamic client registration (RFC 7591) and its management (RFC 7592): a
client registers itself with JSON metadata and gets a registration access
token, with which it reads, replaces or deletes its registration.

Registered clients are ordinary clients (C{oauthctl clients} manages them);
their registration access token is kept as a digest on the client.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from oauthd.protocol import errors, scopes, tokens
from oauthd.protocol.admin.clients import checked, client
from oauthd.protocol.bearer import bearer
from oauthd.protocol.clientauth import METHODS
from oauthd.protocol.context import Body, Context
from oauthd.protocol.errors import AdminError, NotFound, OAuthError, deny
from oauthd.protocol.issuing import revocation_records
from oauthd.protocol.limits import TOKEN_IP, Rule, guard, ip_key, refuse
from oauthd.protocol.rules import GRANT_TYPES, MAX_REDIRECT_URIS, check_label, check_redirect_uris
from oauthd.protocol.signing import ALGORITHMS
from oauthd.state.decision import Decision, audit
from oauthd.state.follower import new_client_claim
from oauthd.state.entities import CONFIDENTIAL, PUBLIC, Client, Token
from oauthd.state.records import ClientPut, ClientRemoved, Record, TokenUses

PATH = "/api/v1/oauth/register"

REGISTER_IP = Rule("register-ip", 5, 720.0)
"""
Registrations one source may make under the open policy: 5 at once, then 5
an hour.
"""

REGISTERABLE_GRANTS = GRANT_TYPES - {"password"}
"""
The grants a client may give itself: the password grant hands a client the
user's password, which only an administrator may allow.
"""

_TEXTS = ("client_name", "scope", "token_endpoint_auth_method", "id_token_signed_response_alg",
          "client_uri", "logo_uri", "policy_uri", "tos_uri", "software_id", "software_version")
_LISTS = ("redirect_uris", "post_logout_redirect_uris", "grant_types", "response_types", "contacts")
_WEB_PAGES = ("client_uri", "logo_uri", "policy_uri", "tos_uri")
_LABELS = ("software_id", "software_version")
_KEPT = ("token_endpoint_auth_method", "contacts", *_WEB_PAGES, *_LABELS)
"""
Metadata kept only for the registration endpoint (as the client's
C{registration_metadata}).
"""


def invalid_metadata(field: str, why: str) -> OAuthError:
    return OAuthError("invalid_client_metadata", f"{field}: {why}")


def _typed(body: Mapping[str, object]) -> dict[str, Any]:
    """
    The metadata fields this server knows, each of its type; others ignored.
    """
    known: dict[str, Any] = {}
    for name in _TEXTS:
        if name in body:
            if not isinstance(body[name], str):
                raise invalid_metadata(name, "must be a string")
            known[name] = body[name]
    for name in _LISTS:
        if name in body:
            value = body[name]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise invalid_metadata(name, "must be an array of strings")
            if len(value) > MAX_REDIRECT_URIS:
                raise invalid_metadata(name, f"has more than {MAX_REDIRECT_URIS} entries")
            known[name] = tuple(dict.fromkeys(value))
    return known


def _check_web_page(name: str, uri: str) -> None:
    try:
        check_redirect_uris((uri,), name)
    except AdminError as e:
        raise invalid_metadata(name, str(e)) from None
    if not uri.startswith(("https://", "http://")):
        raise invalid_metadata(name, "must be an http(s) URI")


def client_fields(ctx: Context, body: Mapping[str, object]) -> dict[str, Any]:
    """
    The fields of the client C{body} describes (RFC 7591 section 2, OpenID
    Connect Dynamic Client Registration 1.0 section 2).

    @raise OAuthError: C{invalid_redirect_uri} or C{invalid_client_metadata}
        naming the field at fault.
    """
    known = _typed(body)
    method = known.setdefault("token_endpoint_auth_method", "client_secret_basic")
    if method not in METHODS:
        raise invalid_metadata("token_endpoint_auth_method", f"is one of {', '.join(sorted(METHODS))}")
    grant_types = known.get("grant_types", ("authorization_code",))
    unknown = set(grant_types) - REGISTERABLE_GRANTS
    if unknown or not grant_types:
        raise invalid_metadata("grant_types", f"are among {', '.join(sorted(REGISTERABLE_GRANTS))}")
    by_code = "authorization_code" in grant_types
    response_types = known.get("response_types", ("code",) if by_code else ())
    if set(response_types) - {"code"}:
        raise invalid_metadata("response_types", "only code is supported")
    if by_code != ("code" in response_types):
        raise invalid_metadata("response_types", "code goes with the authorization_code grant")
    if method == "none" and "client_credentials" in grant_types:
        raise invalid_metadata("grant_types", "a public client (auth method none) cannot use client_credentials")
    redirect_uris = known.get("redirect_uris", ())
    if by_code and not redirect_uris:
        raise OAuthError("invalid_redirect_uri", "redirect_uris: the authorization_code grant needs one")
    try:
        check_redirect_uris(redirect_uris)
    except AdminError as e:
        raise OAuthError("invalid_redirect_uri", f"redirect_uris: {e}") from None
    try:
        check_redirect_uris(known.get("post_logout_redirect_uris", ()), "post-logout redirect URI")
    except AdminError as e:
        raise invalid_metadata("post_logout_redirect_uris", str(e)) from None
    for name in _WEB_PAGES:
        if name in known:
            _check_web_page(name, known[name])
    known.setdefault("client_name", "registered client")
    for name in ("client_name", *_LABELS):
        try:
            if name in known:
                known[name] = check_label(name, known[name])
        except AdminError as e:
            raise invalid_metadata(name, str(e)) from None
    for contact in known.get("contacts", ()):
        try:
            check_label("a contact", contact)
        except AdminError as e:
            raise invalid_metadata("contacts", str(e)) from None
    alg = known.get("id_token_signed_response_alg", "")
    if alg not in ("", *ALGORITHMS):
        raise invalid_metadata("id_token_signed_response_alg", f"is one of {', '.join(ALGORITHMS)}")
    return {
        "name": known["client_name"],
        "type": PUBLIC if method == "none" else CONFIDENTIAL,
        "grant_types": tuple(grant_types),
        "scope": _scope(ctx, known.get("scope")),
        "redirect_uris": redirect_uris,
        "post_logout_redirect_uris": known.get("post_logout_redirect_uris", ()),
        "id_token_signed_response_alg": alg,
        "registration_metadata": json.dumps(
            {name: known[name] for name in _KEPT if name in known}, sort_keys=True),
    }


def _scope(ctx: Context, requested: str | None) -> str:
    allowed = " ".join(ctx.config.registration_scopes)
    try:
        scope = ctx.scope(allowed if requested is None else requested)
    except scopes.ScopeError as e:
        raise invalid_metadata("scope", str(e)) from None
    if not scope or scopes.ALL in scopes.names(scope) or not scopes.names(scope) <= set(
            ctx.config.registration_scopes):
        raise invalid_metadata("scope", f"is among {allowed}")
    return scope


def _checked(ctx: Context, candidate: Client) -> Client:
    try:
        return checked(ctx, candidate)
    except AdminError as e:
        raise invalid_metadata("metadata", str(e)) from None


def described(ctx: Context, registered: Client, access_token: str) -> Body:
    """
    A registered client's metadata as accepted, with its management URI and
    its registration access token (RFC 7592 section 3 requires it in every
    answer: the one the request presented, or a new one's).
    """
    kept: dict[str, object] = json.loads(registered.registration_metadata or "{}")
    body: Body = {
        "client_id": registered.id,
        "client_id_issued_at": registered.created_at,
        "client_name": registered.name,
        "grant_types": list(registered.grant_types),
        "response_types": ["code"] if "authorization_code" in registered.grant_types else [],
        "redirect_uris": list(registered.redirect_uris),
        "scope": registered.scope,
        **kept,
        "registration_client_uri": f"{ctx.config.issuer}{PATH}/{registered.id}",
        "registration_access_token": access_token,
    }
    if registered.post_logout_redirect_uris:
        body["post_logout_redirect_uris"] = list(registered.post_logout_redirect_uris)
    if registered.id_token_signed_response_alg:
        body["id_token_signed_response_alg"] = registered.id_token_signed_response_alg
    return body


def _admitted(ctx: Context, presented: str | None, ip: str) -> Token | None:
    """
    Refuse a registration the policy does not admit: without an initial
    access token under C{closed}, too often from C{ip} under C{open}, or
    beyond the cap on registered clients.

    @return: the initial access token, under C{closed}.
    """
    token = None
    if ctx.config.registration == "closed":
        token = bearer(ctx, presented, ip)
        if token.client_id or token.user or "register" not in scopes.names(token.scope):
            description = "registration needs an initial access token (scope register)"
            raise deny(OAuthError("insufficient_scope", description, 403, {
                "WWW-Authenticate": errors.bearer_challenge(
                    errors.REALM, "insufficient_scope", description, "register"),
            }), ip=ip, token=token.handle)
    else:
        guard(ctx.limiter, [(REGISTER_IP, ip_key(ip))], ip)
    registered = sum(1 for c in ctx.state.clients.values() if c.registration_digest)
    if registered >= ctx.config.registration_max_clients:
        raise deny(OAuthError("access_denied", "no more clients may register; ask the operator", 403),
                   ip=ip, limit="registration_max_clients")
    return token


def _use(ctx: Context, token: Token | None) -> tuple[list[Record], Callable[[], None] | None]:
    """
    The records that spend one use of a limited initial access token (the
    last revokes it), and the check that no other registration spent it
    since.
    """
    left = ctx.state.uses.left(token.key) if token is not None else None
    if token is None or left is None:
        return [], None
    records: list[Record] = [TokenUses(token.key, left - 1)]
    if left == 1:
        records += revocation_records(ctx, token)

    def still() -> None:
        if ctx.state.uses.left(token.key) != left:
            raise errors.invalid_token("the access token is invalid, expired or revoked")

    return records, still


def register(ctx: Context, body: Mapping[str, object], presented: str | None, ip: str) -> Decision[Body]:
    """
    Register the client C{body} describes: 201 with its credentials, once.
    """
    token = _admitted(ctx, presented, ip)
    fields = client_fields(ctx, body)
    now = ctx.now()
    access_token = tokens.new_client_secret(ctx.random_bytes)
    new = _checked(ctx, Client(
        id=tokens.new_client_id(now, ctx.random_bytes), created_at=now,
        registration_digest=tokens.secret_digest(access_token), **fields,
    ))
    answer = described(ctx, new, access_token)
    if not new.public:
        secret = tokens.new_client_secret(ctx.random_bytes)
        new = attrs.evolve(new, secret_digest=tokens.secret_digest(secret))
        answer.update(client_secret=secret, client_secret_expires_at=0)
    if ctx.config.registration == "open":
        ctx.limiter.charge(REGISTER_IP, ip_key(ip))
    used, still = _use(ctx, token)
    return Decision(answer, [ClientPut(new), *used],
                    [audit("register.add", "ok", client=new.id, ip=ip, name=new.name)], still=still,
                    claims=[new_client_claim(new.id)])


def registered_client(ctx: Context, client_id: str, presented: str | None, ip: str) -> Client:
    """
    The registered client C{presented} is the registration access token of.

    @raise OAuthError: 401 with the Bearer challenge for any other token or
        client, alike (RFC 7592 section 3).
    """
    if presented is None:
        raise errors.missing_token()
    try:
        found: Client | None = client(ctx, client_id)
    except NotFound:
        found = None
    digest = tokens.secret_digest(presented)
    if found is None or not found.registration_digest or not hmac.compare_digest(
            digest, found.registration_digest):
        raise refuse(ctx.limiter, errors.invalid_token("the registration access token is invalid"),
                     ip, [(TOKEN_IP, ip_key(ip))])
    return found


def update(ctx: Context, client_id: str, body: Mapping[str, object], presented: str | None,
           ip: str) -> Decision[Body]:
    """
    Replace a registration's metadata (RFC 7592 section 2.2); its id and
    secret stay.
    """
    current = registered_client(ctx, client_id, presented, ip)
    # RFC 7592 section 2.2: the request MUST carry the client's id.
    if body.get("client_id") != current.id:
        raise invalid_metadata("client_id", "is required and cannot be changed")
    secret = body.get("client_secret")
    if secret is not None and (not isinstance(secret, str) or not hmac.compare_digest(
            tokens.secret_digest(secret), current.secret_digest)):
        raise invalid_metadata("client_secret", "cannot be changed here (oauthctl clients secret)")
    fields = client_fields(ctx, body)
    if fields["type"] != current.type:
        raise invalid_metadata("token_endpoint_auth_method", "cannot turn a public client confidential or back")
    changed = _checked(ctx, attrs.evolve(current, **fields))
    assert presented is not None  # registered_client refused a request without one
    return Decision(described(ctx, changed, presented), [ClientPut(changed)],
                    [audit("register.update", "ok", client=changed.id, ip=ip)])


def delete(ctx: Context, client_id: str, presented: str | None, ip: str) -> Decision[Body]:
    """
    Remove a registration and revoke its tokens (RFC 7592 section 2.3).
    """
    current = registered_client(ctx, client_id, presented, ip)
    return Decision({}, [ClientRemoved(current.id)],
                    [audit("register.delete", "ok", client=current.id, ip=ip)])
