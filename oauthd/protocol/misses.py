"""
Whether a request names something this node does not hold, which another
node sharing the event log may have just created: the edge then waits for
the log to catch up (L{oauthd.state.follower.caught_up}) before it decides,
so a token issued on one node works on the next at once. Nothing here is
charged to a rate limit: the decision that follows is.
"""

from __future__ import annotations

from oauthd.protocol import tokens
from oauthd.protocol.browser import digest
from oauthd.protocol.clientauth import ClientAuth
from oauthd.protocol.context import Context, Params
from oauthd.protocol.lookup import authenticate_token

_MAX_CODE = 100
_MAX_SECRET = 100


def token_request(ctx: Context, params: Params, auth: ClientAuth) -> bool:
    """
    Whether a token request names a client, a refresh token, a code, a
    device code or a user unknown here.
    """
    client_id = auth.basic[0] if auth.basic is not None else auth.client_id
    if client_id and client_id not in ctx.state.clients:
        return True
    grant_type = params.get("grant_type", "")
    if grant_type == "refresh_token":
        presented = params.get("refresh_token", "")
        if not tokens.is_access_token(presented):
            return False
        key = tokens.token_key(presented)
        return ctx.state.token(key, ctx.now()) is None and ctx.state.families.of_used(key) is None
    if grant_type == "authorization_code":
        return digest(params.get("code", "")[:_MAX_CODE]) not in ctx.state.authz.codes
    if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
        return digest(params.get("device_code", "")[:_MAX_CODE]) not in ctx.state.authz.devices.codes
    if grant_type == "password":
        return params.get("username", "") not in ctx.state.users
    return False


def client(ctx: Context, client_id: str) -> bool:
    """
    Whether C{client_id} (a registration's management URI) is unknown here.
    """
    return client_id not in ctx.state.clients


def token(ctx: Context, presented: str) -> bool:
    """
    Whether C{presented} is no live token here.
    """
    return bool(presented) and authenticate_token(ctx, presented) is None


def browser(ctx: Context, cookie: str) -> bool:
    """
    Whether a browser's session cookie names a session unknown here.
    """
    return 0 < len(cookie) <= _MAX_SECRET and digest(cookie) not in ctx.state.authz.browsers
