"""
Minting tokens and what issuing or revoking one takes with it: the token
limits of a client, the family of a refresh token, the tokens obtained with
an app password.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen

from oauthd.protocol import tokens
from oauthd.protocol.context import Context
from oauthd.state.entities import ACCESS, APP_PASSWORD, REFRESH, USED_REFRESH, Client, Token
from oauthd.state.records import GrantRevoked, Record, TokenIssued, TokenRevoked


@frozen
class Minted:
    """
    A new token: its secret (shown once, never stored), the token as the
    state will hold it, and PhotoPrism's session id of the secret.
    """

    secret: str
    token: Token
    session_id: str

    @property
    def record(self) -> TokenIssued:
        return TokenIssued(self.token)


def mint(
    ctx: Context, kind: str, *, scope: str, lifetime: int, client_id: str = "",
    user: str = "", grant: str = "", label: str = "",
) -> Minted:
    """
    A new token of C{kind} (not yet committed). App passwords have
    PhotoPrism's checksummed format, everything else is 48 hex characters.
    The secret is hashed once, for its key and its session id.
    """
    if kind == APP_PASSWORD:
        secret = tokens.new_app_password(ctx.random_bytes)
    else:
        secret = tokens.new_access_token(ctx.random_bytes)
    key, session_id = tokens.key_and_session_id(secret)
    token = Token(key, kind, client_id, user, scope, ctx.now(), lifetime, grant, label)
    return Minted(secret, token, session_id)


def beside(ctx: Context, token: Token, kind: str, scope: str, lifetime: int) -> tuple[str, Token]:
    """
    A new token of C{kind} (not an app password) for C{token}'s client,
    user, grant and label, issued when it was: its secret and the token.
    (L{mint}'s, without the session id nobody is shown.)
    """
    secret = tokens.new_access_token(ctx.random_bytes)
    return secret, Token(tokens.token_key(secret), kind, token.client_id, token.user, scope, token.issued_at,
                         lifetime, token.grant, token.label)


def pair(
    ctx: Context, client_id: str, of: Token, scope: str, lifetimes: tuple[int, int], now: int,
) -> tuple[Minted, str, Token]:
    """
    A refresh's new opaque access token (of C{scope}) and refresh token (of
    C{of}'s scope), both for C{client_id} and C{of}'s user, grant and label,
    issued at C{now}: the access token as L{mint} gives it, the refresh
    token as L{beside} does, both secrets from one draw of randomness.
    """
    drawn = ctx.random_bytes(48)
    secret, refresh = drawn[:24].hex(), drawn[24:].hex()
    key, session_id = tokens.key_and_session_id(secret)
    user, grant, label = of.user, of.grant, of.label
    return (
        Minted(secret, Token(key, ACCESS, client_id, user, scope, now, lifetimes[0], grant, label), session_id),
        refresh,
        Token(tokens.token_key(refresh), REFRESH, client_id, user, of.scope, now, lifetimes[1], grant, label),
    )


def derived_label(app_password: Token) -> str:
    """
    The label of every token obtained by logging in with C{app_password}
    (password grant or session), which links them to it: revoking the app
    password revokes them too.
    """
    return "from " + app_password.handle


def from_app_password_label(label: str) -> bool:
    """
    Whether C{label} is one L{derived_label} gives: a token named so by a
    person would be linked to an app password it was not obtained with.
    """
    return label.startswith("from ")


def from_app_password(token: Token) -> bool:
    """
    Whether C{token} was obtained by logging in with an app password.
    """
    return from_app_password_label(token.label)


def app_password_of(ctx: Context, token: Token) -> Token | None:
    """
    The live app password a token was obtained with, if its label links it
    to one.
    """
    if not from_app_password(token) or not token.user:
        return None
    for other in ctx.state.user_tokens(token.user, ctx.now()):
        if other.kind == APP_PASSWORD and derived_label(other) == token.label:
            return other
    return None


def capped(ctx: Context, lifetime: int, app: Token | None) -> int:
    """
    C{lifetime}, shortened so a token obtained with an app password ends no
    later than the app password.
    """
    if app is None or not app.lifetime:
        return lifetime
    return max(1, min(lifetime, app.expires_at - ctx.now()))


def token_limit_records(ctx: Context, client: Client, adding: int = 1) -> list[Record]:
    """
    Revocations of the client's oldest live access tokens, so that after
    C{adding} more it holds at most C{client.max_tokens}.

    Only the client's own tokens count (client_credentials, or issued by an
    admin for the client): tokens issued to users through a grant carry a
    grant id and are limited per user and client instead
    (L{family_limit_records}), so one busy user cannot revoke another's.
    """
    if client.max_tokens < 0:
        return []
    return [TokenRevoked(t.key) for t in ctx.state.own_beyond(client.id, client.max_tokens, ctx.now(), adding)]


def family_limit_records(ctx: Context, client: Client, user: str) -> list[Record]:
    """
    Revocations of the user's least recently used grants at C{client}, so
    that one more leaves at most C{client.max_tokens}.
    """
    if client.max_tokens < 0:
        return []
    recent: dict[str, None] = {}
    for t in ctx.state.user_tokens(user, ctx.now()):
        if t.client_id == client.id and t.grant:
            recent.pop(t.grant, None)
            recent[t.grant] = None
    excess = len(recent) + 1 - client.max_tokens
    return [GrantRevoked(g) for g in list(recent)[:max(0, excess)]]


def revocation_records(ctx: Context, token: Token) -> list[Record]:
    """
    What revoking C{token} takes: a refresh token takes its whole grant with
    it (RFC 7009 section 2.1), an app password what was obtained with it,
    anything else only itself.
    """
    if token.kind in (REFRESH, USED_REFRESH) and token.grant:
        return [GrantRevoked(token.grant)]
    records: list[Record] = [TokenRevoked(token.key)]
    if token.kind == APP_PASSWORD and token.user:
        link = derived_label(token)
        for other in ctx.state.user_tokens(token.user, ctx.now()):
            if other.label == link:
                records.append(GrantRevoked(other.grant) if other.grant else TokenRevoked(other.key))
    return records


def revocation_count(ctx: Context, token: Token) -> int:
    """
    How many live tokens revoking C{token} takes, itself included.
    """
    return max(revoked_count(ctx, revocation_records(ctx, token)), 1)


def revoked_count(ctx: Context, records: Sequence[Record]) -> int:
    """
    How many live tokens the revocations among C{records} take (each
    L{TokenRevoked} names one), counted before they are committed.
    """
    now = ctx.now()
    count = 0
    for record in records:
        if isinstance(record, GrantRevoked):
            count += len(ctx.state.grant_tokens(record.grant, now))
        elif isinstance(record, TokenRevoked):
            count += 1
    return count

