"""
Creating, changing and removing users.
"""

from __future__ import annotations

from typing import Any

import attrs

from oauthd.protocol.browser import session_ends
from oauthd.protocol.context import Context
from oauthd.protocol.errors import Conflict, InvalidValue, NotFound
from oauthd.protocol.issuing import derived_label
from oauthd.protocol.rules import ROLES, check_label, check_new_password, check_username
from oauthd.protocol.subjects import new_uid
from oauthd.state.decision import Decision
from oauthd.state.entities import APP_PASSWORD, SESSION, Client, User
from oauthd.state.records import (
    ClientRemoved,
    GrantRevoked,
    Record,
    TokenRevoked,
    UserPut,
    UserRemoved,
)


def user(ctx: Context, name: str) -> User:
    try:
        return ctx.state.users[name]
    except KeyError:
        raise NotFound(f"no such user: {name[:64]}") from None


def _checked(candidate: User) -> User:
    if candidate.role not in ROLES:
        raise InvalidValue("user role is admin or user")
    if candidate.full_name:
        check_label("full name", candidate.full_name)
    if candidate.address:
        check_label("address", candidate.address)
    email = candidate.email
    if email and ("@" not in email or len(email) > 254 or any(c.isspace() for c in email)):
        raise InvalidValue("the email address is not valid")
    return candidate


async def add_user(ctx: Context, name: str, password: str | None, **fields: Any) -> Decision[User]:
    """
    Create a user; the password, if any, is hashed in the hasher's pool.
    """
    name = check_username(name)
    if name in ctx.state.users:
        raise Conflict(f"user {name} already exists")
    if password is not None:
        check_new_password(password)
    new = _checked(User(name=name, created_at=ctx.now(), uid=new_uid(ctx.state, ctx.random_bytes),
                        **fields))
    if password is not None:
        new = attrs.evolve(new, password_hash=await ctx.hasher.hash(password))
        if name in ctx.state.users:
            # Created by someone else while the password was being hashed.
            raise Conflict(f"user {name} already exists")
    # Created first on another node sharing the log: the record is dropped.
    return Decision(new, [UserPut(new)], lost=lambda: Decision(new, refusal=Conflict(f"user {name} already exists")))


async def set_password(
    ctx: Context, name: str, password: str, revoke_app_passwords: bool = False,
) -> Decision[User]:
    """
    Give a user a new password, hashed in the hasher's pool, and revoke what
    the old one gave (L{login_revocations}).
    """
    user(ctx, name)
    hashed = await ctx.hasher.hash(check_new_password(password))
    changed = attrs.evolve(user(ctx, name), password_hash=hashed)
    # Decided after the hash, so a login finished meanwhile is revoked too
    # (one still being checked fails: the hash it checks is no longer the
    # user's). The revocations go first: a crash between the records leaves
    # the old password with nothing issued, not the new one with all of it.
    return Decision(changed, [*login_revocations(ctx, name, revoke_app_passwords), UserPut(changed)])


def login_revocations(ctx: Context, name: str, app_passwords: bool = False) -> list[Record]:
    """
    What a change of the user's credentials revokes (RFC 9700 section
    4.14.2): every login session and every grant (token family) the user
    holds, but those obtained with an app password, which is a credential of
    its own and stays; with C{app_passwords}, the app passwords too and all
    obtained with them. Tokens a client the user owns holds of its own
    (client_credentials) are the client's credentials, and stay.

    Every grant is revoked, whatever its type, so families of grants still
    to come (authorization code, device code) are covered; a new kind of
    session must be added here. The user's browser sessions at the
    authorization endpoint end too.
    """
    held = ctx.state.user_tokens(name, ctx.now())
    kept = set() if app_passwords else {derived_label(t) for t in held if t.kind == APP_PASSWORD}
    records: list[Record] = []
    grants: set[str] = set()
    for token in held:
        if token.kind == APP_PASSWORD:
            if app_passwords:
                records.append(TokenRevoked(token.key))
        elif token.label in kept:
            continue
        elif token.grant:
            if token.grant not in grants:
                grants.add(token.grant)
                records.append(GrantRevoked(token.grant))
        elif token.kind == SESSION:
            records.append(TokenRevoked(token.key))
    return records + session_ends(ctx, name)


def update_user(ctx: Context, name: str, **changes: Any) -> Decision[User]:
    """
    Change a user's role, profile or disabled flag; disabling revokes the
    user's tokens.
    """
    before = user(ctx, name)
    changed = _checked(attrs.evolve(before, **changes))
    if _profile(changed) != _profile(before):
        changed = attrs.evolve(changed, updated_at=ctx.now())
    return Decision(changed, [UserPut(changed)])


def _profile(person: User) -> tuple[object, ...]:
    """
    What the C{updated_at} claim dates: the profile relying parties see.
    """
    return (person.full_name, person.email, person.email_verified, person.address)


def remove_user(ctx: Context, name: str) -> Decision[tuple[User, list[Client]]]:
    """
    Delete a user and the clients the user owns, revoking all their tokens;
    the answer is the user and those clients.

    A client's own tokens act for its owner, so once the owner is gone the
    client is too, rather than left acting for no one. The clients go first:
    a crash between the records leaves fewer clients, never one whose owner
    is missing.
    """
    gone = user(ctx, name)
    owned = [client for client in ctx.state.clients.values() if client.user == name]
    records: list[Record] = [ClientRemoved(client.id) for client in owned]
    records.append(UserRemoved(name))
    return Decision((gone, owned), records)
