"""
The authorization code grant at the token endpoint (RFC 6749 section 4.1.3,
RFC 7636 section 4.5): a code the authorization endpoint issued
(L{oauthd.protocol.authorize}) becomes an access token and, if the client
may have one, a refresh token, under the grant id the code carries.

A code is good once. The decision marks it redeemed, and the store applies
that to memory as soon as it commits the decision, before it is durable, so
a second request with the code, however soon, finds it redeemed: it is
refused and revokes every token the first one got (RFC 6749 section 4.1.2).
Bad requests change nothing: a wrong verifier or redirect URI leaves the
code as it was.
"""

from __future__ import annotations

import hmac

from oauthd.protocol import errors, id_tokens, scopes, signing
from oauthd.protocol.authorize import s256, valid_verifier
from oauthd.protocol.browser import digest
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import deny
from oauthd.protocol.grants.answer import issued
from oauthd.protocol.issuing import family_limit_records, mint
from oauthd.protocol.limits import TOKEN_IP, ip_key, refuse
from oauthd.state.authz_records import AuthCode, CodeRedeemed, GrantLogin
from oauthd.state.decision import Decision, audit
from oauthd.state.entities import REFRESH, Client
from oauthd.state.records import GrantRevoked, Record

_MAX_CODE = 100


def decide(ctx: Context, client: Client, params: Params, ip: str) -> Decision[Body]:
    presented = params.get("code", "")
    if not presented:
        raise errors.invalid_request("code is required")
    code = ctx.state.authz.codes.get(digest(presented[:_MAX_CODE]))
    if code is None or not code.live(ctx.now()) or code.client_id != client.id:
        raise refuse(ctx.limiter,
                     errors.invalid_grant("the code is invalid, expired or was issued to another client"),
                     ip, [(TOKEN_IP, ip_key(ip))], client=client.id)
    context: dict[str, object] = {"client": client.id, "user": code.user}
    if code.redeemed:
        return _reused(code, ip, context)
    _check_binding(code, params, context)
    user = ctx.state.users.get(code.user)
    held = ctx.state.authz.consent(code.user, client.id)
    if (user is None or user.disabled or code.browser not in ctx.state.authz.browsers
            or held is None or not scopes.within(code.scope, held.scope)):
        raise deny(errors.invalid_grant("the login or consent the code came from has ended"),
                   ip=ip, **context)
    records: list[Record] = [CodeRedeemed(code.key), *family_limit_records(ctx, client, code.user)]
    session = ctx.state.authz.browsers[code.browser]
    login = GrantLogin(code.grant, code.auth_time, session.amr, session.handle,
                       ctx.now() + ctx.config.refresh_family_lifetime)
    access = id_tokens.access_token(ctx, client, scope=code.scope, lifetime=client.access_ttl,
                                    user=code.user, grant=code.grant, login=login)
    records.append(access.record)
    refresh = None
    if "refresh_token" in client.grant_types:
        refresh = mint(ctx, REFRESH, scope=code.scope, lifetime=client.refresh_ttl,
                       client_id=client.id, user=code.user, grant=code.grant)
        records.append(refresh.record)
    id_token = ""
    if id_tokens.wants_id_token(code.scope):
        id_token = id_tokens.id_token(ctx, client, user, login, code.scope, access.secret, code.nonce)
        if refresh is not None:
            # Its refreshes get ID tokens of this login too.
            records.append(login)
    records += signing.pending(ctx)
    # Redeemed first on another node (the shared log's claim on the code).
    return issued(records, client, "authorization_code", ip, access, refresh.secret if refresh else "",
                  id_token, lost=lambda: _reused(code, ip, context))


def _check_binding(code: AuthCode, params: Params, context: dict[str, object]) -> None:
    """
    The token request matches what the code was issued for: the same
    redirect URI, if the authorization request named one (and none other
    if it did not), and the PKCE verifier of its challenge (and none if it
    had none).
    """
    sent = params.get("redirect_uri")
    if code.redirect_given and sent != code.redirect_given:
        raise deny(errors.invalid_grant("redirect_uri differs from the authorization request's"),
                   **context)
    if not code.redirect_given and sent is not None and sent != code.redirect_uri:
        raise deny(errors.invalid_grant("redirect_uri differs from the authorization request's"),
                   **context)
    verifier = params.get("code_verifier", "")
    if not code.challenge:
        if verifier:
            raise deny(errors.invalid_grant("a code_verifier was sent for a code without a challenge"),
                       **context)
        return
    if not verifier:
        raise deny(errors.invalid_grant("code_verifier is required"), **context)
    if not valid_verifier(verifier) or not hmac.compare_digest(s256(verifier), code.challenge):
        raise deny(errors.invalid_grant("the code_verifier does not match the code_challenge"),
                   **context)


def _reused(code: AuthCode, ip: str, context: dict[str, object]) -> Decision[Body]:
    """
    A redeemed code came back: whoever holds it, the grant is compromised,
    so every token issued from it is revoked before the refusal is sent.
    """
    error = deny(errors.invalid_grant("the code was already used; its tokens are revoked"),
                 ip=ip, reason="code reuse", **context)
    revoked = audit("token.revoke", "ok", ip=ip, grant=code.grant, reason="code reuse", **context)
    return Decision({}, [GrantRevoked(code.grant)], (revoked,), refusal=error,
                    context={"grant": code.grant, **context})
