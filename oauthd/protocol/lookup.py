"""
Finding a token: by its secret (every request that presents one), or for
admins and revocation also by its session id or its handle.
"""

from __future__ import annotations

from oauthd.protocol import id_tokens, tokens
from oauthd.protocol.context import Context
from oauthd.state.entities import HANDLE_SHIFT, Token, handle_prefix


def authenticate_token(ctx: Context, secret: str) -> Token | None:
    """
    The live token whose secret is C{secret}, or which is the JWT access
    token C{secret} (L{id_tokens.presented_jwt}). A string in no token
    format is refused without a lookup.
    """
    if not (tokens.is_access_token(secret) or tokens.is_app_password(secret)):
        key = id_tokens.presented_jwt(ctx, secret)
        return None if key is None else ctx.state.token(key, ctx.now())
    return ctx.state.token(tokens.token_key(secret), ctx.now())


def find_token(ctx: Context, reference: str) -> Token | None:
    """
    The live token named by its secret, its PhotoPrism session id (SHA-256
    hex) or its handle; for admins and revocation.

    A handle lookup scans every key (handles are not indexed, to keep memory
    per token small), comparing the 51 bits a handle spells.
    """
    now = ctx.now()
    key = tokens.key_from_session_id(reference)
    if key is not None:
        return ctx.state.token(key, now)
    prefix = handle_prefix(reference)
    if prefix is not None:
        for key in ctx.state.tokens:
            if key >> HANDLE_SHIFT == prefix:
                return ctx.state.token(key, now)
        return None
    return authenticate_token(ctx, reference)
